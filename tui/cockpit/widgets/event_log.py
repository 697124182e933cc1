"""The event log: Kubernetes events, the cockpit's own actions, and recovery timelines."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from tui.core.format import clock_time
from tui.core.model import ClusterEvent
from tui.core.sanitize import one_line

MAX_LINES = 1000
REPEAT_QUIET_SECONDS = 60.0
"""A repeat of the same event (a probe failing every second) is shown at most once a minute."""


class EventLog(RichLog):
    """A scrolling log of what happened, newest at the bottom; untrusted text shown literally."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=MAX_LINES, wrap=True, markup=False, highlight=False)
        self.border_title = "Events"
        self._shown: dict[tuple[str, str, str, str], float] = {}

    def cluster_event(self, event: ClusterEvent) -> bool:
        """A Kubernetes event: time, type, object, reason and message; False if held back.

        Kubernetes updates a repeating event's count in place (each update is a watch event):
        a repeat is shown again, with its count, only once `REPEAT_QUIET_SECONDS` have passed.
        """
        key = (event.kind, event.name, event.reason, event.message)
        last = self._shown.get(key)
        if last is not None and event.count > 1 and event.at - last < REPEAT_QUIET_SECONDS:
            return False
        self._shown[key] = event.at
        if len(self._shown) > MAX_LINES:
            self._shown.pop(next(iter(self._shown)))
        style = "bold" if event.type == "Warning" else ""
        count = f" (x{event.count})" if event.count > 1 else ""
        self.write(
            Text.assemble(
                (clock_time(event.at) + " ", "dim"),
                (f"{one_line(event.reason, 40)} ", style or "italic"),
                (f"{one_line(event.kind, 30)}/{one_line(event.name, 63)}: ", "dim"),
                (one_line(event.message, 400) + count, style),
            )
        )
        return True

    def note(self, at: float, text: str, severity: str = "information") -> None:
        """One of the cockpit's own lines (its actions, recoveries, connection changes)."""
        style = {"warning": "bold", "error": "bold reverse"}.get(severity, "")
        self.write(
            Text.assemble(
                (clock_time(at) + " ", "dim"),
                ("cockpit ", "italic"),
                (one_line(text, 600), style),
            )
        )
