"""What the headless commands share: the terminal sink, the progress line, Ctrl+C and signals, the
session without a screen, and `load`'s table.
"""
