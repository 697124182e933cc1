"""The HPA's behaviour rules: stabilisation windows, rate policies, bounds and conditions.

As upstream's ``horizontal.go``: without ``spec.behavior`` the legacy path (highest
recommendation over the 300 s downscale window, scale-up capped at ``max(2 * current, 4)``);
with one, the API defaults for what it leaves out, the windows (scale-down: highest
recommendation within the window; scale-up: lowest), the ``Pods``/``Percent`` policies per
``periodSeconds`` with ``selectPolicy``, then ``minReplicas``/``maxReplicas``. The defaults,
the policies' arithmetic and the legacy limit are :mod:`kube_llm_data.hpa_policy`, which
``within: auto`` shares;
this module adds what a controller keeps across syncs: the recommendations and scale events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kube_llm_data.hpa_policy import ScalingRules, legacy_scale_up_limit, scale_limit
from sandbox.controllers.hpa_replicas import HPAConfig


@dataclass(frozen=True)
class _ScaleEvent:
    timestamp: float
    replica_change: int


@dataclass
class HPAHistory:
    """Per-HPA memory across syncs: recommendations (stabilisation) and scale events (rates)."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_up_events: list[_ScaleEvent] = field(default_factory=list)
    scale_down_events: list[_ScaleEvent] = field(default_factory=list)


def _changes_in_period(period_seconds: int, events: Sequence[_ScaleEvent], now: float) -> int:
    cutoff = now - period_seconds
    return sum(e.replica_change for e in events if e.timestamp > cutoff)


def _period_start(history: HPAHistory, current: int, now: float) -> Callable[[int], int]:
    """The replicas at the start of a policy's period: current less the scale events within it
    (upstream's ``getReplicasChangePerPeriod``, up and down)."""

    def start(period_seconds: int) -> int:
        added = _changes_in_period(period_seconds, history.scale_up_events, now)
        deleted = _changes_in_period(period_seconds, history.scale_down_events, now)
        return current - added + deleted

    return start


def record_recommendation(history: HPAHistory, now: float, replicas: int, keep: float) -> None:
    """Store a recommendation, dropping those older than every window that reads them."""
    history.recommendations = [(t, r) for t, r in history.recommendations if t >= now - keep]
    history.recommendations.append((now, replicas))


def store_scale_event(
    history: HPAHistory,
    up_rules: ScalingRules,
    down_rules: ScalingRules,
    now: float,
    previous: int,
    new: int,
) -> None:
    """Remember a rescale for the rate policies, forgetting events older than any period."""
    up = new > previous
    rules = up_rules if up else down_rules
    longest = max((p.period_seconds for p in rules.policies), default=0)
    events = history.scale_up_events if up else history.scale_down_events
    kept = [e for e in events if e.timestamp >= now - longest]
    kept.append(_ScaleEvent(now, abs(new - previous)))
    if up:
        history.scale_up_events = kept
    else:
        history.scale_down_events = kept


def _condition(kind: str, status: bool, reason: str, message: str) -> dict[str, str]:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
    }


class Conditions:
    """Ordered condition updates; a later update of a type replaces the earlier one."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, str]] = {}

    def set(self, kind: str, status: bool, reason: str, message: str) -> None:
        """Set (or replace) the condition of this type."""
        self._items[kind] = _condition(kind, status, reason, message)

    def get(self, kind: str) -> dict[str, str] | None:
        """The condition of this type, if set."""
        return self._items.get(kind)

    def as_tuple(self) -> tuple[dict[str, str], ...]:
        """The conditions in upstream's order."""
        return tuple(self._items.values())


def normalize_legacy(
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    history: HPAHistory,
    now: float,
    config: HPAConfig,
    conditions: Conditions,
) -> int:
    """normalizeDesiredReplicas: the path of an HPA without ``behavior``."""
    cutoff = now - config.downscale_stabilization_seconds
    stabilized = max([desired] + [r for t, r in history.recommendations if not t < cutoff])
    record_recommendation(history, now, desired, config.downscale_stabilization_seconds)
    if stabilized != desired:
        conditions.set(
            "AbleToScale",
            True,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent "
            "recommendation",
        )
    else:
        conditions.set(
            "AbleToScale", True, "ReadyForNewScale", "recommended size matches current size"
        )
    scale_up_limit = legacy_scale_up_limit(current)
    if max_replicas > scale_up_limit:
        maximum, reason, message = (
            scale_up_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )
    else:
        maximum, reason, message = (
            max_replicas,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    if stabilized < min_replicas:
        result, reason, message = (
            min_replicas,
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        )
    elif stabilized > maximum:
        result = maximum
    else:
        result, reason, message = (
            stabilized,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        )
    conditions.set("ScalingLimited", result != stabilized, reason, message)
    return result


def normalize_with_behavior(
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    up: ScalingRules,
    down: ScalingRules,
    history: HPAHistory,
    now: float,
    conditions: Conditions,
) -> int:
    """normalizeDesiredReplicasWithBehaviors: stabilisation, then rate limits and bounds."""
    up_cutoff = now - up.stabilization_window_seconds
    down_cutoff = now - down.stabilization_window_seconds
    up_recommendation = desired
    down_recommendation = desired
    for timestamp, replicas in history.recommendations:
        if timestamp > up_cutoff:
            up_recommendation = min(replicas, up_recommendation)
        if timestamp > down_cutoff:
            down_recommendation = max(replicas, down_recommendation)
    stabilized = min(max(current, up_recommendation), down_recommendation)
    record_recommendation(
        history,
        now,
        desired,
        max(up.stabilization_window_seconds, down.stabilization_window_seconds),
    )
    if stabilized != desired:
        if desired >= current:
            conditions.set(
                "AbleToScale",
                True,
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest "
                "recent recommendation",
            )
        else:
            conditions.set(
                "AbleToScale",
                True,
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest "
                "recent recommendation",
            )
    else:
        conditions.set(
            "AbleToScale", True, "ReadyForNewScale", "recommended size matches current size"
        )

    result, reason, message = (
        stabilized,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
    if stabilized > current:
        limit = scale_limit(up, current, up=True, period_start=_period_start(history, current, now))
        if max_replicas > limit:
            maximum, why, text = (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        else:
            maximum, why, text = (
                max_replicas,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        if stabilized > maximum:
            result, reason, message = maximum, why, text
    elif stabilized < current:
        limit = scale_limit(
            down, current, up=False, period_start=_period_start(history, current, now)
        )
        if min_replicas < limit:
            minimum, why, text = (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        else:
            minimum, why, text = (
                min_replicas,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        if stabilized < minimum:
            result, reason, message = minimum, why, text
    conditions.set("ScalingLimited", result != stabilized, reason, message)
    return result
