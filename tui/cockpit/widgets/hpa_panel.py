"""The HPA panel: replicas, each metric against its target, conditions, and why."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from tui.cockpit.widgets.fixed import show_text
from tui.core.model import HpaMetric, HpaView, ReplicaPoint
from tui.core.sanitize import one_line
from tui.core.stats import step_series
from tui.services.explain import metric_reading

HISTORY_SECONDS = 600.0
HISTORY_BUCKETS = 60


def metric_label(metric: HpaMetric) -> str:
    """ "engine cpu", "backend memory", or the metric's name."""
    if metric.container:
        return f"{metric.container} {metric.name}"
    return metric.name


def metric_line(metric: HpaMetric) -> str:
    """One metric's row: "engine cpu       187% / 70%", or for a per-pod average target the
    explainer's words, "in flight + waiting 3.5 per pod against 4"."""
    if metric.target_average is not None:
        return metric_reading(metric, with_target=True)
    return f"{one_line(metric_label(metric), 30):<16} {metric_value(metric)}"


def metric_value(metric: HpaMetric) -> str:
    """The metric's current value against its target: "187% / 70%"."""
    if metric.target_utilization is not None:
        current = "?" if metric.current_utilization is None else f"{metric.current_utilization}%"
        return f"{current} / {metric.target_utilization}%"
    current = metric.current_value or "?"
    return f"{current} / {metric.target_value or '?'}"


class HpaPanel(Vertical):
    """The HorizontalPodAutoscaler at a glance."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "HPA"

    def compose(self) -> ComposeResult:
        """The replica line, metrics, conditions, the explainer and the replica history."""
        yield Static(id="hpa-replicas")
        yield Static(id="hpa-metrics")
        yield Static(id="hpa-conditions")
        yield Static(id="hpa-why")
        yield Sparkline([], id="hpa-history")

    def show(
        self, hpa: HpaView | None, why: str, history: Sequence[ReplicaPoint], now: float
    ) -> None:
        """Show the HPA's state and the explainer's line."""
        replicas = self.query_one("#hpa-replicas", Static)
        metrics = self.query_one("#hpa-metrics", Static)
        conditions = self.query_one("#hpa-conditions", Static)
        if hpa is None:
            show_text(replicas, Text("no HPA seen yet"))
            show_text(metrics, "")
            show_text(conditions, "")
        else:
            self.border_title = f"HPA {one_line(hpa.name, 40)}"
            changing = hpa.desired_replicas != hpa.current_replicas
            show_text(
                replicas,
                Text.assemble(
                    ("replicas ", "dim"),
                    (str(hpa.current_replicas), "bold"),
                    (f" → {hpa.desired_replicas}" if changing else "", "bold"),
                    (f"  (min {hpa.min_replicas}, max {hpa.max_replicas})", "dim"),
                ),
            )
            show_text(
                metrics,
                Text("\n".join(metric_line(m) for m in hpa.metrics) or "no metrics in the spec"),
            )
            show_text(
                conditions,
                Text(
                    "\n".join(
                        f"{one_line(c.type, 30)}={one_line(c.status, 8)} ({one_line(c.reason, 40)})"
                        for c in hpa.conditions
                    ),
                    style="dim",
                ),
            )
        show_text(self.query_one("#hpa-why", Static), Text(one_line(why), style="bold"))
        series = step_series(
            [(p.at, float(p.current)) for p in history], now, HISTORY_SECONDS, HISTORY_BUCKETS
        )
        sparkline = self.query_one("#hpa-history", Sparkline)
        if sparkline.data != series:
            sparkline.data = series
        sparkline.tooltip = "replicas over the last 10 minutes"
