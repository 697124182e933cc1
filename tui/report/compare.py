"""Side by side: the same scenario under two autoscalers, as one report with a column each.

`compare_rows` takes each run's `CockpitRecord` and reads its numbers from `tui.core.figures`
(so each column can be checked against that run's own report): TTFT p50/p95 and end to end p95
over the successful chats, failures and shed chats, the time from the first load phase's start
to the HPA's first added replica (the moment it wanted more than it had, while any load phase
ran), from the last phase's stop to the replicas back at the minimum, and the replica-seconds.
The chart puts both runs on one time axis, seconds since each run's load began: replicas (the
pods that existed) above, TTFT of each successful chat below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tui.core.cost import replica_count
from tui.core.figures import CockpitRecord, Figures, figures
from tui.core.model import Outcome
from tui.report.markdown import cell, table

CHART_NAME = "compare.png"


@dataclass(frozen=True)
class Column:
    """One run's numbers for the side-by-side table (seconds; None when not seen)."""

    ttft_p50: float | None
    ttft_p95: float | None
    e2e_p95: float | None
    chats_ok: int
    failed: int
    shed: int
    first_added_replica: float | None
    back_to_minimum: float | None
    peak_replicas: int | None
    replica_seconds: float | None
    replica_seconds_per_chat: float | None


def load_start(record: CockpitRecord) -> float:
    """When the run's load began: its first load phase, else the record's start."""
    return min((p.started_at for p in record.phases), default=record.started_at)


def first_added_replica(record: CockpitRecord) -> float | None:
    """Seconds from the load's start to the HPA's first wanting more replicas than it had then,
    while any load phase ran (a burst may end before the HPA reacts; the next phase counts)."""
    start = load_start(record)
    end = max(
        (record.ended_at if p.ended_at is None else p.ended_at for p in record.phases),
        default=record.ended_at,
    )
    points = sorted(record.replicas, key=lambda p: p.at)
    before = [p for p in points if p.at <= start]
    base = before[-1] if before else (points[0] if points else None)
    if base is None:
        return None
    added = next((p for p in points if start <= p.at <= end and p.desired > base.desired), None)
    return None if added is None else added.at - start


def column(record: CockpitRecord, numbers: Figures | None = None) -> Column:
    """One run's column, from its figures."""
    numbers = figures(record) if numbers is None else numbers
    chats = numbers.chats
    last = numbers.phases[-1] if numbers.phases else None
    cost = numbers.cost
    return Column(
        ttft_p50=chats.ttft.p50,
        ttft_p95=chats.ttft.p95,
        e2e_p95=chats.end_to_end.p95,
        chats_ok=chats.ok,
        failed=chats.failed,
        shed=chats.shed,
        first_added_replica=first_added_replica(record),
        back_to_minimum=None if last is None else last.back_to_min_after_stop,
        peak_replicas=numbers.scaling.peak_replicas,
        replica_seconds=None if cost is None else cost.replica_seconds,
        replica_seconds_per_chat=None if cost is None else cost.per_chat,
    )


def _s(value: float | None) -> str:
    return "not seen" if value is None else f"{value:.1f} s"


def _n(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.0f}{unit}"


ROWS: tuple[tuple[str, str], ...] = (
    ("TTFT p50", "ttft_p50"),
    ("TTFT p95", "ttft_p95"),
    ("end to end p95", "e2e_p95"),
    ("chats ok", "chats_ok"),
    ("failed", "failed"),
    ("shed (429)", "shed"),
    ("load start to first added replica", "first_added_replica"),
    ("load stop to back at the minimum", "back_to_minimum"),
    ("peak replicas", "peak_replicas"),
    ("replica-seconds", "replica_seconds"),
    ("replica-seconds per successful chat", "replica_seconds_per_chat"),
)
_SECONDS = {"ttft_p50", "ttft_p95", "e2e_p95", "first_added_replica", "back_to_minimum"}


def compare_rows(columns: Mapping[str, Column]) -> list[list[str]]:
    """The table's rows: one measure each, a value per run."""
    rows = []
    for label, attribute in ROWS:
        values = [getattr(c, attribute) for c in columns.values()]
        if attribute in _SECONDS:
            shown = [_s(v) for v in values]
        elif attribute == "replica_seconds_per_chat":
            shown = ["n/a" if v is None else f"{v:.1f}" for v in values]
        else:
            shown = [_n(v) for v in values]
        rows.append([label, *shown])
    return rows


def render_compare(
    name: str,
    columns: Mapping[str, Column],
    configuration: Sequence[tuple[str, str]],
    reports: Mapping[str, Path],
) -> str:
    """The comparison's Markdown: configuration, the table, the chart and each run's report."""
    lines = [
        f"# kube-llm comparison: {cell(name)}",
        "",
        f"![replicas and TTFT of both runs]({CHART_NAME})",
        "",
        "## Configuration",
        "",
        *table(["setting", "value"], [[cell(k), cell(v)] for k, v in configuration]),
        "",
        "## Side by side",
        "",
        "Latency over the chats that succeeded; reaction times from the first load phase's "
        "start (the HPA's first decision to add a replica) and from the last phase's stop (the "
        "replicas back at the minimum); replica-seconds integrate the pods that existed.",
        "",
        *table(["measure", *(cell(k) for k in columns)], compare_rows(columns)),
        "",
        "## Each run's own report",
        "",
        *(f"- {cell(k)}: `{cell(str(path))}`" for k, path in reports.items()),
        "",
    ]
    return "\n".join(lines)


def draw_compare(records: Mapping[str, CockpitRecord], path: Path) -> Path:
    """Both runs' replicas and TTFT on one axis of seconds since each run's load began."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6), layout="constrained")
    replicas, ttft = figure.subplots(2, 1, sharex=True, height_ratios=(2, 3))
    for index, (label, record) in enumerate(records.items()):
        colour = f"C{index}"
        start = load_start(record)
        points = sorted(record.replicas, key=lambda p: p.at)
        if points:
            xs = [p.at - start for p in points] + [record.ended_at - start]
            ys = [replica_count(p) for p in points] + [replica_count(points[-1])]
            replicas.step(xs, ys, where="post", color=colour, label=label)
        ok = sorted(
            (c for c in record.chats if c.outcome is Outcome.OK and c.ttft is not None),
            key=lambda c: c.started_at,
        )
        ttft.plot(
            [c.started_at - start for c in ok],
            [c.ttft if c.ttft is not None else math.nan for c in ok],
            ".",
            color=colour,
            label=f"{label}: TTFT of each chat",
            alpha=0.6,
        )
        for phase in record.phases:
            if phase.ended_at is not None:
                ttft.axvline(phase.ended_at - start, color=colour, lw=1, ls=":")
    replicas.set_ylabel("pods")
    replicas.yaxis.get_major_locator().set_params(integer=True)
    replicas.set_title("replicas and time to first token, both runs (dotted: a load phase ends)")
    ttft.set_ylabel("TTFT (s), by chat start")
    ttft.set_xlabel("seconds since the run's load began")
    for axes in (replicas, ttft):
        axes.axvline(0, color="tab:gray", lw=1)
        if axes.lines:
            axes.legend(loc="upper right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


__all__ = ["CHART_NAME", "Column", "column", "compare_rows", "draw_compare", "render_compare"]
