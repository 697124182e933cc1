"""Markdown pieces every report shares: untrusted text made safe for a cell, and tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tui.core.sanitize import one_line


def cell(text: str) -> str:
    """Untrusted text made safe for a Markdown table cell (and for prose): on one line (line
    breaks and other whitespace runs become one space), every other control character shown as
    the cockpit shows it (ESC as a visible stand-in), and Markdown's `|`, `\\`, `` ` `` and `<`
    escaped."""
    escaped = one_line(" ".join(text.split())).replace("\\", "\\\\").replace("|", "\\|")
    # No raw HTML (a tag needs a "<") and no code spans that could swallow the row's other cells.
    return escaped.replace("<", "&lt;").replace("`", "\\`")


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
