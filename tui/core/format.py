"""Numbers as the cockpit prints them (no Textual import: reports use these too)."""

from __future__ import annotations

import time
from collections.abc import Callable


def age(since: float | None, now: float) -> str:
    """An age as `kubectl get` prints it: `HumanDuration` of k8s.io/apimachinery's
    pkg/util/duration, about two significant figures (42s, 5m3s, 90m, 2h10m, 27h, 3d4h, 45d,
    2y30d). A moment up to 1 s ahead of `now` (clocks a little apart) is 0s; further ahead,
    `<invalid>`, as kubectl says."""
    if since is None:
        return ""
    seconds = int(now - since)  # Go's int(d.Seconds()): truncated toward zero
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 2 * 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return _two_units(minutes, "m", seconds % 60, "s")
    if minutes < 3 * 60:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return _two_units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 8 * 24:
        return _two_units(days, "d", hours % 24, "h")
    if hours < 2 * 365 * 24:
        return f"{days}d"
    if hours < 8 * 365 * 24:
        return _two_units(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def _two_units(big: int, big_unit: str, small: int, small_unit: str) -> str:
    """`3d4h`, or `3d` when the smaller part is zero."""
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


def millicores(value: float) -> str:
    """CPU as Kubernetes writes it: 250m."""
    return f"{value:.0f}m"


def mebibytes(value: float) -> str:
    """Memory in Mi."""
    return f"{value / 2**20:.0f}Mi"


def percent_of(value: float, request: float | None, absolute: Callable[[float], str] | None) -> str:
    """Usage against the request ("37%"), or the absolute value when there is no request."""
    if request:
        return f"{100 * value / request:.0f}%"
    return (absolute or mebibytes)(value)


def share(count: int, total: int) -> str:
    """A pod's share of the chats served ("42%"), empty before any."""
    if not total:
        return ""
    return f"{100 * count / total:.0f}%"


def seconds(value: float | None) -> str:
    """A latency: milliseconds below 10 s ("212 ms"), else seconds ("12.3 s"); "-" when absent."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s"


def clock_time(at: float, *, utc: bool = False) -> str:
    """A moment (seconds since the epoch) as wall-clock time, HH:MM:SS: local, or in UTC."""
    return time.strftime("%H:%M:%S", time.gmtime(at) if utc else time.localtime(at))
