"""The latency panel: health and chat percentiles, rates and errors, as numbers and charts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from tui.cockpit.widgets.fixed import show_text
from tui.core.format import seconds
from tui.core.model import LatencySummary
from tui.core.sanitize import one_line
from tui.services.windows import LATENCY_SERIES, Series

CHARTS = (
    (Series.HEALTH_P50, "health", "health p50"),
    (Series.TTFT_P50, "ttft", "TTFT p50"),
    (Series.E2E_P50, "e2e", "e2e p50"),
    (Series.REQUESTS_PER_SECOND, "rps", "req/s"),
    (Series.ERRORS_PER_SECOND, "errors", "errors/s"),
)
"""The charts: the recorder's series, the widgets' id (`chart-KEY`) and the label."""


class LatencyPanel(Vertical):
    """What the users feel, over a sliding window."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Latency"

    def compose(self) -> ComposeResult:
        """The numbers, then one labelled sparkline per series."""
        yield Static(id="latency-numbers")
        for _, key, label in CHARTS:
            with Horizontal(classes="chart"):
                yield Label(label, classes="chart-label")
                yield Sparkline([], id=f"chart-{key}")
                yield Label("", id=f"chart-{key}-last", classes="chart-last")

    def show(
        self,
        summary: LatencySummary,
        series: Mapping[Series, Sequence[float]],
        health_failures: Sequence[tuple[str, int]] = (),
    ) -> None:
        """Show the window's numbers and the charts (and health checks that failed, by kind)."""
        failed = sum(count for _, count in health_failures)
        worst = health_failures[0][0] if health_failures else ""
        rate = summary.tokens_per_second
        unit = "chunks/s" if summary.tokens_are_chunks else "tok/s"
        errors = ", ".join(f"{one_line(kind, 24)} {count}" for kind, count in summary.errors)
        lines = Text.assemble(
            ("health ", "dim"),
            f"p50 {seconds(summary.health_p50)}  p99 {seconds(summary.health_p99)}",
            (f"  {failed} failed: {one_line(worst, 40)}" if failed else "", "bold"),
            ("\nTTFT   ", "dim"),
            f"p50 {seconds(summary.ttft_p50)}  p95 {seconds(summary.ttft_p95)}",
            ("\ne2e    ", "dim"),
            f"p50 {seconds(summary.e2e_p50)}  p95 {seconds(summary.e2e_p95)}",
            ("\nrate   ", "dim"),
            f"{summary.requests_per_second:.1f} req/s  "
            + ("-" if rate is None else f"{rate:.0f} {unit}"),
            ("\nchats  ", "dim"),
            f"{summary.ok} ok  {summary.shed} shed (429)  ",
            (f"{sum(c for _, c in summary.errors)} failed", "bold" if summary.errors else ""),
            (f"  {errors}" if errors else "", "dim"),
            (f"\nlast {summary.window_seconds:.0f} s", "dim italic"),
        )
        show_text(self.query_one("#latency-numbers", Static), lines)
        for name, key, _ in CHARTS:
            values = list(series.get(name, ())) or [0.0]
            sparkline = self.query_one(f"#chart-{key}", Sparkline)
            if sparkline.data != values:
                sparkline.data = values
            last = values[-1] if values else None
            label = "" if last is None else self._last(name, last)
            show_text(self.query_one(f"#chart-{key}-last", Label), label)

    @staticmethod
    def _last(name: Series, value: float) -> str:
        if name in LATENCY_SERIES:
            return seconds(value) if value else "-"
        return f"{value:.1f}"
