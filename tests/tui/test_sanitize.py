"""T1: untrusted text shows every control character visibly and nothing else changes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tui.core.sanitize import multi_line, one_line


def test_escape_sequences_become_visible() -> None:
    assert one_line("\x1b]0;pwned\x07\x1b[2J") == "␛]0;pwned␇␛[2J"


def test_del_c1_and_bidi_controls_become_visible() -> None:
    assert one_line("a\x7fb\x9bc\u202ed") == "a␡b\ufffdc\ufffdd"


def test_one_line_shows_newlines_multi_line_keeps_them() -> None:
    assert one_line("a\nb\tc") == "a␊b␉c"
    assert multi_line("a\nb\tc\rd") == "a\nb    c␍d"


def test_markup_is_left_as_typed() -> None:
    text = "[bold]x[/] [@click=app.quit]y[/] [link=https://e.example]z[/link]"
    assert one_line(text) == text


def test_long_text_is_cut_with_an_ellipsis() -> None:
    assert one_line("x" * 10, limit=5) == "xxxx…"
    assert one_line("x" * 5, limit=5) == "xxxxx"


def _controls(text: str) -> set[str]:
    return {c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F}


@given(st.text())
def test_no_control_character_survives(text: str) -> None:
    assert _controls(one_line(text)) == set()
    assert _controls(multi_line(text)) <= {"\n"}


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf"))))
def test_printable_text_is_unchanged(text: str) -> None:
    assert one_line(text) == text
    assert multi_line(text) == text
