"""The plain data the rest shares: the model (frozen dataclasses), figures over a record, formatting
and sanitising. Imports nothing else of `tui`.
"""
