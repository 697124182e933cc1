"""Numbers as the cockpit prints them (no Textual import: reports use these too)."""

from __future__ import annotations

import time
from collections.abc import Callable


def age(since: float | None, now: float) -> str:
    """An age as kubectl prints it: 42s, 5m3s, 2h10m, 3d4h."""
    if since is None:
        return ""
    seconds = max(0, int(now - since))
    if seconds < 120:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds}s" if minutes < 10 and seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


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
