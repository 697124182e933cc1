"""What a run cost, in replica-seconds: the pods it kept, integrated over time.

A replica-second is one pod kept for one second, whatever it did; the poster's "pay-per-use
scaling" claim is about exactly this, so a report gives the run's replica-seconds, the same for a
fixed Deployment at the HPA's maximum over the same span (what you would run without an
autoscaler, sized for the peak), their ratio, and the replica-seconds per successful chat.

The count integrated is the Deployment's pods as the cockpit saw them (`ReplicaPoint.pods`: every
pod that exists, starting, Ready or terminating, since each holds its node's resources), or the
HPA's `status.currentReplicas` for records that predate that count. It is a step function: each
point holds until the next, and the last until the record ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tui.core.model import ReplicaPoint


@dataclass(frozen=True)
class CostFigures:
    """A run's replica-seconds beside a fixed Deployment at the maximum."""

    span_seconds: float
    """From the first replica count seen to the end of the record."""
    replica_seconds: float
    fixed_at_max: float | None
    """The HPA's maxReplicas times the span: the fixed Deployment the autoscaler replaces."""
    ratio: float | None
    """replica_seconds over fixed_at_max (below 1: the autoscaler saved that much)."""
    chats_ok: int
    per_chat: float | None
    """Replica-seconds per chat that succeeded."""
    counted: str
    """What was integrated: "pods" or "HPA current replicas"."""


def replica_count(point: ReplicaPoint) -> int:
    """The replicas a point says were kept: its pods when known, else the HPA's current count."""
    return point.pods if point.pods is not None else point.current


def replica_seconds(points: Sequence[ReplicaPoint], started_at: float, ended_at: float) -> float:
    """The step function of replica counts integrated from `started_at` to `ended_at`
    (nothing before the first point: the count is not known there)."""
    total = 0.0
    ordered = sorted(points, key=lambda p: p.at)
    for index, point in enumerate(ordered):
        begin = max(point.at, started_at)
        end = ordered[index + 1].at if index + 1 < len(ordered) else ended_at
        end = min(end, ended_at)
        if end > begin:
            total += replica_count(point) * (end - begin)
    return total


def cost_figures(
    points: Sequence[ReplicaPoint],
    started_at: float,
    ended_at: float,
    max_replicas: int | None,
    chats_ok: int,
) -> CostFigures:
    """The cost of a run from its replica history and its successful chats."""
    first = min((p.at for p in points), default=ended_at)
    span = max(0.0, ended_at - max(first, started_at))
    used = replica_seconds(points, started_at, ended_at)
    fixed = None if max_replicas is None else max_replicas * span
    return CostFigures(
        span_seconds=span,
        replica_seconds=used,
        fixed_at_max=fixed,
        ratio=used / fixed if fixed else None,
        chats_ok=chats_ok,
        per_chat=used / chats_ok if chats_ok else None,
        counted="pods"
        if points and all(p.pods is not None for p in points)
        else ("HPA current replicas"),
    )
