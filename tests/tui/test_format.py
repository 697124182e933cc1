"""Numbers as the cockpit prints them."""

from __future__ import annotations

import pytest

from tui.core.format import age, percent_of, seconds, share


@pytest.mark.parametrize(
    ("elapsed", "shown"),
    [
        (0, "0s"),
        (42, "42s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3660, "1h1m"),
        (7200, "2h"),
        (90000, "1d1h"),
    ],
)
def test_age_reads_like_kubectl(elapsed: float, shown: str) -> None:
    assert age(1000.0, 1000.0 + elapsed) == shown


def test_age_of_an_unknown_moment_is_empty() -> None:
    assert age(None, 5.0) == ""


def test_usage_against_the_request_or_absolute() -> None:
    assert percent_of(35.0, 350.0, None) == "10%"
    assert percent_of(150 * 2**20, None, None) == "150Mi"


def test_latency_in_ms_then_seconds() -> None:
    assert seconds(0.0034) == "3 ms"
    assert seconds(12.34) == "12.3 s"
    assert seconds(None) == "-"


def test_share_of_served_chats() -> None:
    assert share(1, 4) == "25%"
    assert share(0, 0) == ""
