"""The Textual app: the only package that imports Textual or Rich. Its stylesheet `app.tcss`, the
key table, messages, `widgets/` and `screens/`.
"""
