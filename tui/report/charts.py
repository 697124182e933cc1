"""The report's chart: latency percentiles and replicas over time on one time axis, with the
load phases shaded and the kills, rollout restarts and scales marked, drawn with matplotlib as
a PNG.

The series are computed here from the record's samples (`latency_series`), so a test can check
the points the chart shows against the JSON they came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

# The object API without pyplot: no global figure state and no backend choice (a Figure
# saves through the Agg canvas), so a chart never tries a display, in a terminal or in CI.
from matplotlib.figure import Figure

from tui.core.figures import CockpitRecord, deployment_actions
from tui.core.format import clock_time
from tui.core.model import Outcome
from tui.core.stats import percentile

_PHASE_COLOURS = {"burst": "tab:orange", "sustained": "tab:green", "rate": "tab:purple"}


@dataclass(frozen=True)
class LatencyPoint:
    """Percentiles of the chats that ended in one time bucket (seconds since the record began)."""

    at: float
    """The bucket's middle."""
    ttft_p50: float | None
    ttft_p95: float | None
    e2e_p50: float | None
    e2e_p95: float | None
    chats: int
    """The successful chats that ended in the bucket (end to end covers them all)."""
    no_ttft: int = 0
    """How many of them had no TTFT (whole replies, `stream: false`)."""


def bucket_seconds(record: CockpitRecord) -> float:
    """About 60 buckets over the run, each a whole number of seconds (at least 1)."""
    span = max(record.ended_at - record.started_at, 1.0)
    return float(max(1, math.ceil(span / 60)))


def latency_series(record: CockpitRecord, step: float | None = None) -> tuple[LatencyPoint, ...]:
    """TTFT and end-to-end percentiles of the successful chats, by the bucket of their end.

    End to end covers every successful chat, TTFT only those that had one: a chat asked with
    `stream: false` (`--no-stream`) has no first token, only its whole reply, so a run of them
    still draws its end-to-end line.
    """
    step = bucket_seconds(record) if step is None else step
    buckets: dict[int, list[tuple[float | None, float]]] = {}
    for chat in record.chats:
        if chat.outcome is not Outcome.OK or chat.e2e is None:
            continue
        index = math.floor((chat.ended_at - record.started_at) / step)
        buckets.setdefault(index, []).append((chat.ttft, chat.e2e))
    points = []
    for index in sorted(buckets):
        ttfts = [t for t, _ in buckets[index] if t is not None]
        e2es = [e for _, e in buckets[index]]
        points.append(
            LatencyPoint(
                at=(index + 0.5) * step,
                ttft_p50=percentile(ttfts, 50),
                ttft_p95=percentile(ttfts, 95),
                e2e_p50=percentile(e2es, 50),
                e2e_p95=percentile(e2es, 95),
                chats=len(e2es),
                no_ttft=len(e2es) - len(ttfts),
            )
        )
    return tuple(points)


def _steps(record: CockpitRecord, attribute: str) -> tuple[list[float], list[int]]:
    """A replica count as a step line from the record's start to its end."""
    points = sorted(record.replicas, key=lambda p: p.at)
    xs = [max(p.at, record.started_at) - record.started_at for p in points]
    ys = [int(getattr(p, attribute)) for p in points]
    if xs:
        xs.append(record.ended_at - record.started_at)
        ys.append(ys[-1])
    return xs, ys


def draw_timeline(record: CockpitRecord, path: Path) -> Path:
    """Draw the chart of `record` into `path` (a PNG) and return the path."""
    figure = Figure(figsize=(10, 6), layout="constrained")
    latency, replicas = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    series = latency_series(record)
    xs = [p.at for p in series]
    for name, label, style in (
        ("ttft_p50", "TTFT p50", "-"),
        ("ttft_p95", "TTFT p95", "--"),
        ("e2e_p50", "end to end p50", "-"),
        ("e2e_p95", "end to end p95", "--"),
    ):
        ys = [getattr(p, name) for p in series]
        if all(y is None for y in ys):
            continue  # no TTFT at all (whole replies): no empty line in the legend
        latency.plot(xs, [math.nan if y is None else y for y in ys], style, label=label,
                     marker=".")  # fmt: skip
    latency.set_ylabel("seconds")
    latency.set_title(
        f"chat latency per {bucket_seconds(record):g} s, replicas, load, kills and rollouts"
    )
    for attribute, style in (("current", "-"), ("desired", "--"), ("ready", ":")):
        steps_x, steps_y = _steps(record, attribute)
        if steps_x:
            replicas.step(steps_x, steps_y, style, where="post", label=attribute)
    replicas.set_ylabel("replicas")
    replicas.set_xlabel(
        f"seconds since {clock_time(record.started_at, utc=True)} UTC (the record's start)"
    )
    replicas.yaxis.get_major_locator().set_params(integer=True)
    actions = deployment_actions(record.events)
    for axes in (latency, replicas):
        for phase in record.phases:
            end = record.ended_at if phase.ended_at is None else phase.ended_at
            axes.axvspan(
                phase.started_at - record.started_at,
                end - record.started_at,
                color=_PHASE_COLOURS.get(phase.kind, "tab:gray"),
                alpha=0.12,
            )
        for kill in record.recoveries:
            axes.axvline(kill.requested_at - record.started_at, color="tab:red", lw=1)
        for at, _ in actions:
            axes.axvline(at - record.started_at, color="tab:blue", lw=1, ls="-.")
    for phase in record.phases:
        latency.annotate(
            f"{phase.kind} {phase.users}u",
            (phase.started_at - record.started_at, 1.0),
            xycoords=("data", "axes fraction"),
            va="top",
            fontsize=8,
        )
    for at, label in actions:
        replicas.annotate(
            label,
            (at - record.started_at, 1.0),
            xycoords=("data", "axes fraction"),
            va="top",
            color="tab:blue",
            fontsize=8,
        )
    for kill in record.recoveries:
        replicas.annotate(
            f"{kill.action} ✖",
            (kill.requested_at - record.started_at, 1.0),
            xycoords=("data", "axes fraction"),
            va="top",
            color="tab:red",
            fontsize=8,
        )
    if series:
        latency.legend(loc="upper right", fontsize=8)
    if record.replicas:
        replicas.legend(loc="upper right", fontsize=8)
    replicas.set_xlim(0, max(record.ended_at - record.started_at, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


__all__ = ["LatencyPoint", "bucket_seconds", "draw_timeline", "latency_series"]
