"""The event log: Kubernetes events, the cockpit's own actions, and recovery timelines."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from tui.format import clock_time
from tui.model import ClusterEvent
from tui.sanitize import one_line

MAX_LINES = 1000


class EventLog(RichLog):
    """A scrolling log of what happened, newest at the bottom; untrusted text shown literally."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=MAX_LINES, wrap=True, markup=False, highlight=False)
        self.border_title = "Events"

    def cluster_event(self, event: ClusterEvent) -> None:
        """A Kubernetes event: time, type, object, reason and message."""
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
