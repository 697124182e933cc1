"""The pods table: one row per pod of the Deployment, with what k9s cannot show."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.widgets import DataTable

from tui.format import age, millicores, percent_of, share
from tui.model import BackendMetrics, ClusterSnapshot, LatencySummary, PodView
from tui.sanitize import one_line

NEW_POD_SECONDS = 60.0
"""A pod younger than this (created while the cockpit watched) is marked new."""

COLUMNS = (
    ("name", "NAME"),
    ("ready", "READY"),
    ("status", "STATUS"),
    ("restarts", "RESTARTS"),
    ("age", "AGE"),
    ("cpu", "CPU/req"),
    ("memory", "MEM/req"),
    ("inflight", "IN-FLIGHT"),
    ("share", "SERVED"),
    ("ttft", "TTFT p50"),
)


class PodsTable(DataTable[Text]):
    """The Deployment's pods; the cursor selects the pod that `k` and `K` hit."""

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.border_title = "Pods"

    def on_mount(self) -> None:
        """Lay out the columns."""
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def selected_pod(self) -> str | None:
        """The pod under the cursor, if the table has rows."""
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # the cursor may point past a row that just left  # noqa: BLE001
            return None
        return key.value

    def show(
        self,
        snapshot: ClusterSnapshot,
        metrics: Mapping[str, BackendMetrics],
        summary: LatencySummary,
        now: float,
        watched_since: float,
    ) -> None:
        """Show the snapshot, keeping the cursor on the same pod where it is still listed."""
        selected = self.selected_pod
        served = dict(summary.served_by)
        total_served = sum(served.values())
        ttft = dict(summary.ttft_p50_by_pod)
        pods = sorted(snapshot.pods, key=lambda p: (p.created_at or 0.0, p.name))
        self.clear()
        for pod in pods:
            usage = snapshot.usage_of(pod.name)
            if usage is not None:
                cpu = percent_of(usage.cpu_millicores, pod.cpu_request_millicores, millicores)
                memory = percent_of(usage.memory_bytes, pod.memory_request_bytes, None)
            else:
                cpu = memory = "-" if snapshot.metrics_available is False else ""
            backend = metrics.get(pod.name)
            p50 = ttft.get(pod.name)
            cells = (
                self._name(pod, now, watched_since),
                Text(f"{pod.ready_containers}/{pod.total_containers}"),
                self._status(pod),
                Text(str(pod.restarts)),
                Text(age(pod.created_at, now)),
                Text(cpu),
                Text(memory),
                Text("" if backend is None else f"{backend.inflight:g}"),
                Text(share(served.get(pod.name, 0), total_served)),
                Text("" if p50 is None else f"{p50 * 1000:.0f} ms"),
            )
            self.add_row(*cells, key=pod.name)
        if selected is not None and selected in {p.name for p in pods}:
            self.move_cursor(row=self.get_row_index(selected))

    def _name(self, pod: PodView, now: float, watched_since: float) -> Text:
        name = one_line(pod.name, 63)
        if pod.terminating:
            return Text(f"✖ {name}", style="strike dim")
        created = pod.created_at or 0.0
        if created >= watched_since - 1 and now - created < NEW_POD_SECONDS:
            return Text(f"✚ {name}", style="bold")
        return Text(f"  {name}")

    def _status(self, pod: PodView) -> Text:
        status = one_line(pod.status, 30)
        variables = self.app.theme_variables
        if pod.terminating:
            return Text(status, style=variables.get("warning", "yellow"))
        if pod.ready:
            return Text(status, style=variables.get("success", "green"))
        if "BackOff" in status or "Err" in status or pod.phase == "Failed":
            return Text(status, style=variables.get("error", "red"))
        return Text(status, style=variables.get("accent", "cyan"))
