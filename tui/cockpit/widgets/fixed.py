"""Updating fixed-size text without a layout pass.

`Static.update` re-lays out the whole screen by default, since new text may change the
widget's size. The cockpit's panels give their text widgets fixed heights in `app.tcss`, so a
new reading only needs a repaint; and a reading that did not change needs nothing at all.
Measured with `bench/tui_render.py`: the layout passes were most of the app's CPU under load.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

_LAST = "_kube_llm_shown"


def show_text(widget: Static, text: Text | str) -> None:
    """Show `text` in a fixed-size `widget`; nothing happens when it is already shown."""
    content = text if isinstance(text, Text) else Text(text)
    if getattr(widget, _LAST, None) == content:
        return
    setattr(widget, _LAST, content)
    widget.update(content, layout=False)
