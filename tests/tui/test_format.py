"""Numbers as the cockpit prints them."""

from __future__ import annotations

import pytest

from tui.core.format import age, percent_of, seconds, share


# kubectl's own cases (HumanDuration in k8s.io/apimachinery pkg/util/duration, and its test
# table duration_test.go), plus the examples: 90m, 27h, 3d4h.
@pytest.mark.parametrize(
    ("elapsed", "shown"),
    [
        (-2, "<invalid>"),
        (-1.999, "0s"),
        (-1, "0s"),
        (0, "0s"),
        (42, "42s"),
        (119, "119s"),
        (120, "2m"),
        (119.999, "119s"),
        (125, "2m5s"),
        (190, "3m10s"),
        (599, "9m59s"),
        (600, "10m"),
        (3660, "61m"),
        (90 * 60, "90m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (2 * 3600 + 10 * 60, "130m"),
        (3 * 3600 + 10 * 60, "3h10m"),
        (8 * 3600 - 60, "7h59m"),
        (8 * 3600, "8h"),
        (27 * 3600, "27h"),
        (48 * 3600 - 1, "47h"),
        (48 * 3600, "2d"),
        (49 * 3600, "2d1h"),
        (76 * 3600, "3d4h"),
        (8 * 86400 - 3600, "7d23h"),
        (8 * 86400, "8d"),
        (8 * 86400 + 23 * 3600, "8d"),
        (367 * 86400, "367d"),
        (2 * 365 * 86400 - 86400, "729d"),
        (2 * 365 * 86400, "2y"),
        (2 * 365 * 86400 + 30 * 86400, "2y30d"),
        (8 * 365 * 86400, "8y"),
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
