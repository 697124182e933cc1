"""The HPA's behaviour rules: stabilisation windows, rate policies, bounds and conditions.

As upstream's ``horizontal.go``: without ``spec.behavior`` the legacy path (highest
recommendation over the 300 s downscale window, scale-up capped at ``max(2 * current, 4)``);
with one, the API defaults for what it leaves out, the windows (scale-down: highest
recommendation within the window; scale-up: lowest), the ``Pods``/``Percent`` policies per
``periodSeconds`` with ``selectPolicy``, then ``minReplicas``/``maxReplicas``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.controllers.hpa_replicas import HPAConfig
from sandbox.store.quantity import parse_quantity

_MAX_INT32 = 2**31 - 1
_MIN_INT32 = -(2**31)


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


@dataclass(frozen=True)
class _Policy:
    type: str
    value: int
    period_seconds: int


@dataclass(frozen=True)
class Rules:
    """One direction's behaviour: stabilisation window, policies, select policy, tolerance."""

    stabilization_window_seconds: float
    select_policy: str
    policies: tuple[_Policy, ...]
    tolerance: float | None


def behavior_rules(raw: Mapping[str, Any] | None, *, up: bool, config: HPAConfig) -> Rules:
    """Scaling rules with the API server's defaults filled in (GenerateHPAScale*Rules)."""
    raw = raw or {}
    default_policies: tuple[_Policy, ...]
    if up:
        default_window: float = 0
        default_policies = (_Policy("Pods", 4, 15), _Policy("Percent", 100, 15))
    else:
        default_window = config.downscale_stabilization_seconds
        default_policies = (_Policy("Percent", 100, 15),)
    window = raw.get("stabilizationWindowSeconds")
    policies = raw.get("policies")
    tolerance = raw.get("tolerance")
    return Rules(
        stabilization_window_seconds=default_window if window is None else float(window),
        select_policy=raw.get("selectPolicy") or "Max",
        policies=default_policies
        if policies is None
        else tuple(_Policy(p["type"], int(p["value"]), int(p["periodSeconds"])) for p in policies),
        tolerance=None if tolerance is None else float(parse_quantity(tolerance)),
    )


def _changes_in_period(period_seconds: int, events: Sequence[_ScaleEvent], now: float) -> int:
    cutoff = now - period_seconds
    return sum(e.replica_change for e in events if e.timestamp > cutoff)


def _policy_limit(current: int, history: HPAHistory, rules: Rules, now: float, *, up: bool) -> int:
    """How far the rate policies let the replicas go from ``current`` in this sync.

    Each policy counts from the replicas at the start of its period (current minus the
    changes made within it); ``selectPolicy`` Max takes the policy allowing the largest change,
    Min the smallest (upstream's ``calculateScale{Up,Down}Limitwith{ScalingRules,Behaviors}``).
    """
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        added = _changes_in_period(policy.period_seconds, history.scale_up_events, now)
        deleted = _changes_in_period(policy.period_seconds, history.scale_down_events, now)
        start = current - added + deleted
        if policy.type == "Pods":
            proposals.append(start + policy.value if up else start - policy.value)
        elif up:
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    # The smallest change is the lowest limit going up and the highest going down.
    lowest = (rules.select_policy == "Min") == up
    return min(proposals, default=_MAX_INT32) if lowest else max(proposals, default=_MIN_INT32)


def record_recommendation(history: HPAHistory, now: float, replicas: int, keep: float) -> None:
    """Store a recommendation, dropping those older than every window that reads them."""
    history.recommendations = [(t, r) for t, r in history.recommendations if t >= now - keep]
    history.recommendations.append((now, replicas))


def store_scale_event(
    history: HPAHistory, up_rules: Rules, down_rules: Rules, now: float, previous: int, new: int
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
    scale_up_limit = max(2 * current, 4)
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
    up: Rules,
    down: Rules,
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
        limit = max(_policy_limit(current, history, up, now, up=True), current)
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
        limit = min(_policy_limit(current, history, down, now, up=False), current)
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
