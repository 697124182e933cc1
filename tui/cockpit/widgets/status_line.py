"""The status line: the API connection, how chats reach the Service, and the load."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from tui.cockpit.widgets.fixed import show_text
from tui.core.model import Connection
from tui.core.sanitize import one_line
from tui.services.load import LoadStatus

CONNECTION_STYLE = {
    Connection.CONNECTING: "italic",
    Connection.LIVE: "bold",
    Connection.RETRYING: "bold reverse",
    Connection.FORBIDDEN: "bold reverse",
}


class StatusLine(Static):
    """One line under the header."""

    def __init__(self, *args: Any, profile: str | None = None, **kwargs: Any) -> None:
        """`profile`: the sandbox profile `kube-llm demo` runs, said at the line's end."""
        super().__init__(*args, **kwargs)
        self.profile = profile

    def show(
        self,
        connection: Connection,
        detail: str,
        target: str,
        load: LoadStatus | None,
        burst_users: int,
        read_only: bool,
    ) -> None:
        """Show the connection, the backend path, the load and the burst size."""
        parts: list[tuple[str, str] | str] = [
            (f" API {connection.value} ", CONNECTION_STYLE.get(connection, "")),
            (f" {one_line(detail, 140)}" if detail else "", "dim"),
            ("  │ chats via ", "dim"),
            one_line(target, 60),
        ]
        if load is not None:
            parts.append(("  │ load ", "dim"))
            if load.burst_running:
                parts.append((f"burst {load.burst_done}/{load.burst_total} ", "bold"))
            if load.sustained_users:
                parts.append((f"sustained {load.sustained_users} users ", "bold"))
            if not load.burst_running and not load.sustained_users:
                parts.append("idle ")
            parts.append((f"in flight {load.in_flight}", "dim"))
        parts.append(("  │ burst size ", "dim"))
        parts.append(str(burst_users))
        if read_only:
            parts.append(("  │ READ-ONLY", "bold"))
        if self.profile is not None:
            parts.append(("  │ sandbox profile ", "dim"))
            parts.append((self.profile, "bold"))
        show_text(self, Text.assemble(*parts))
