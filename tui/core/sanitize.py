"""Untrusted text made safe to show in a terminal (docs/reliability.md, T1).

Model output, pod names, event messages and error bodies come from outside the cockpit. Textual
does not interpret markup in a `rich.text.Text`, but it passes escape sequences through to the
terminal (measured with Textual 8.2.8: only BEL is dropped), so a reply could move the cursor,
retitle the terminal or emit an OSC 8 link. Every control character is therefore replaced by a
visible stand-in before anything is shown: C0 controls by their Unicode "control picture"
(U+2400 + code, so ESC shows as ␛), DEL by ␡, C1 controls and the bidirectional overrides by
U+FFFD. This module has no Textual import: the widgets wrap the result in `Text`, which never
parses markup.
"""

from __future__ import annotations

import re

_BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_ONE_LINE = re.compile(r"[\x00-\x1f\x7f\x80-\x9f" + _BIDI_CONTROLS + "]")
_MULTI_LINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f" + _BIDI_CONTROLS + "]")


def _stand_in(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    return "\ufffd"


def one_line(text: object, limit: int | None = None) -> str:
    """Text for a single-line place (a table cell, a log line): every control shown visibly."""
    cleaned = _ONE_LINE.sub(_stand_in, str(text))
    if limit is not None and len(cleaned) > limit:
        return cleaned[: max(limit - 1, 0)] + "\u2026"
    return cleaned


def multi_line(text: object) -> str:
    """Text for a multi-line place (a chat reply): newlines and tabs kept, other controls shown."""
    return _MULTI_LINE.sub(_stand_in, str(text)).replace("\t", "    ")
