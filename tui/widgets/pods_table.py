"""The pods table: one row per pod of the Deployment, with what k9s cannot show."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from tui.format import age, millicores, percent_of, share
from tui.model import BackendMetrics, ClusterSnapshot, LatencySummary, PodView
from tui.sanitize import one_line

NEW_POD_SECONDS = 60.0
"""A pod younger than this is marked new."""

COLUMNS = (
    ("name", "NAME"),
    ("ready", "READY"),
    ("status", "STATUS"),
    ("restarts", "RESTARTS"),
    ("age", "AGE"),
    ("cpu", "CPU"),
    ("memory", "MEM"),
    ("inflight", "INFL"),
    ("share", "SERVED"),
    ("ttft", "TTFT50"),
)
"""CPU and MEM are percent of the pod's requests; INFL the chats in flight in its gateway;
SERVED its share of the chats the cockpit saw answered; TTFT50 their median first token."""


class PodsTable(DataTable[Text]):
    """The Deployment's pods; the highlighted row is the pod that `k` and `K` hit.

    No row is highlighted until the user moves to one (arrow keys or a click), and Escape clears
    the highlight: with none, the kill keys pick a random Ready pod.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "deselect", "Clear selection", show=False, id="pods.deselect"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, show_cursor=False)
        self.border_title = "Pods"
        self._shown: dict[str, tuple[Text, ...]] = {}

    def action_cursor_down(self) -> None:
        """Down: highlight the first row, then move down."""
        if self._reveal():
            super().action_cursor_down()

    def action_cursor_up(self) -> None:
        """Up: highlight the first row, then move up."""
        if self._reveal():
            super().action_cursor_up()

    def _reveal(self) -> bool:
        """Show the highlight; whether it was shown already (so the key should move it)."""
        if self.show_cursor:
            return True
        self.show_cursor = True
        return False

    def on_click(self) -> None:
        """A click highlights the clicked row."""
        self.show_cursor = True

    def action_deselect(self) -> None:
        """Escape: no pod selected (the kill keys then pick a random Ready pod)."""
        self.show_cursor = False

    def on_mount(self) -> None:
        """Lay out the columns."""
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def selected_pod(self) -> str | None:
        """The highlighted pod, if the user highlighted one."""
        if self.row_count == 0 or not self.show_cursor:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # the cursor may point past a row that just left
            return None
        return key.value

    def show(
        self,
        snapshot: ClusterSnapshot,
        metrics: Mapping[str, BackendMetrics],
        summary: LatencySummary,
        now: float,
    ) -> None:
        """Show the snapshot, keeping the cursor on the same pod where it is still listed.

        When the same pods are listed in the same order, only the cells that changed are
        updated: a big Deployment under load redraws a few cells a second, not the table.
        """
        selected = self.selected_pod
        row = self.cursor_row
        served = dict(summary.served_by)
        total_served = sum(served.values())
        ttft = dict(summary.ttft_p50_by_pod)
        usage = {u.pod: u for u in snapshot.usage}
        no_metrics = "-" if snapshot.metrics_available is False else ""
        pods = sorted(snapshot.pods, key=lambda p: (p.created_at or 0.0, p.name))
        rows: dict[str, tuple[Text, ...]] = {}
        for pod in pods:
            used = usage.get(pod.name)
            if used is not None:
                cpu = percent_of(used.cpu_millicores, pod.cpu_request_millicores, millicores)
                memory = percent_of(used.memory_bytes, pod.memory_request_bytes, None)
            else:
                cpu = memory = no_metrics
            backend = metrics.get(pod.name)
            p50 = ttft.get(pod.name)
            rows[pod.name] = (
                self._name_cell(pod, now),
                Text(f"{pod.ready_containers}/{pod.total_containers}"),
                self._status_cell(pod),
                Text(str(pod.restarts)),
                Text(age(pod.created_at, now)),
                Text(cpu),
                Text(memory),
                Text("" if backend is None else f"{backend.inflight:g}"),
                Text(share(served.get(pod.name, 0), total_served)),
                Text("" if p50 is None else f"{p50 * 1000:.0f} ms"),
            )
        if list(rows) == list(self._shown):
            self._update_cells(rows)
        else:
            self.clear()
            for name, cells in rows.items():
                self.add_row(*cells, key=name)
            if selected is not None and selected in rows:
                self.move_cursor(row=self.get_row_index(selected), animate=False)
            elif self.row_count:
                # The highlighted pod left: stay on the same row number, not the top.
                self.move_cursor(row=min(row, self.row_count - 1), animate=False)
        self._shown = rows

    def _update_cells(self, rows: dict[str, tuple[Text, ...]]) -> None:
        for name, cells in rows.items():
            before = self._shown[name]
            for (column, _), old, new in zip(COLUMNS, before, cells, strict=True):
                if old.plain != new.plain or old.style != new.style:
                    self.update_cell(name, column, new)

    def _name_cell(self, pod: PodView, now: float) -> Text:
        name = one_line(pod.name, 63)
        if pod.terminating:
            return Text(f"✖ {name}", style="strike dim")
        if pod.created_at is not None and now - pod.created_at < NEW_POD_SECONDS:
            return Text(f"✚ {name}", style="bold")
        return Text(f"  {name}")

    def _status_cell(self, pod: PodView) -> Text:
        status = one_line(pod.status, 30)
        variables = self.app.theme_variables
        if pod.terminating:
            return Text(status, style=variables.get("warning", "yellow"))
        if pod.ready:
            return Text(status, style=variables.get("success", "green"))
        if "BackOff" in status or "Err" in status or pod.phase == "Failed":
            return Text(status, style=variables.get("error", "red"))
        return Text(status, style=variables.get("accent", "cyan"))
