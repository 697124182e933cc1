"""An HPA's scaling rules (`spec.behavior`): the API's defaults, and how far the rate policies
(or, without a behavior, the controller's legacy limit) let the replicas move.

The one definition of Kubernetes' arithmetic for both parts that apply it: the sandbox's HPA
controller scales by it (`sandbox.controllers.hpa_behavior`), and `within: auto` bounds how long
that scaling can take on any cluster (`tui.core.hpa_timing`). It follows upstream:

- `pkg/apis/autoscaling/v2/defaults.go` (`GenerateHPAScaleUpRules`, `GenerateHPAScaleDownRules`):
  a direction's rules keep what the HPA sets and take the defaults for the rest. Scale-up: no
  window, `Max` of 4 pods and 100 % per 15 s. Scale-down: `Max` of 100 % per 15 s, and the window
  left to kube-controller-manager's `--horizontal-pod-autoscaler-downscale-stabilization` (300 s).
- `pkg/controller/podautoscaler/horizontal.go` (`calculateScaleUpLimitWithScalingRules`,
  `calculateScaleDownLimitWithBehaviors`, and the clamp in
  `normalizeDesiredReplicasWithBehaviors`): each policy counts from the replicas at the start of
  its period; `Pods` adds or removes `value` pods, `Percent` scales by `value` % rounding up when
  going up and down when going down; `selectPolicy: Max` takes the policy that allows the biggest
  change, `Min` the smallest, `Disabled` allows none; a limit never points the other way.
- the same file's legacy path (`normalizeDesiredReplicas`, `calculateScaleUpLimit`), taken by
  an HPA without `spec.behavior` (the API server's defaulting leaves a missing behavior
  missing): a sync raises the replicas to at most `max(2 x current, 4)`, with no other rate
  rule either way and only the controller's downscale window.

Plain values and arithmetic: no clock, no I/O. The tolerance (`behavior.scale{Up,Down}.tolerance`)
is a metric rule, not a rate rule, and stays with the sandbox's replica calculation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_DOWNSCALE_WINDOW_SECONDS = 300.0
"""kube-controller-manager's `--horizontal-pod-autoscaler-downscale-stabilization`: the
scale-down window of an HPA whose `scaleDown` sets none."""

LEGACY_SCALE_UP_FACTOR = 2
"""Without `spec.behavior`, one sync at most multiplies the replicas by this..."""
LEGACY_SCALE_UP_MINIMUM = 4
"""... or raises them to this, whichever is more (`scaleUpLimitFactor`, `scaleUpLimitMinimum`)."""

_MAX_INT32 = 2**31 - 1
_MIN_INT32 = -(2**31)


@dataclass(frozen=True)
class ScalingPolicy:
    """One policy (`HPAScalingPolicy`): at most `value` pods or percent per `period_seconds`."""

    type: str
    """`Pods` or `Percent`."""
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    """One direction of `spec.behavior` (`HPAScalingRules`), with the defaults filled in."""

    stabilization_window_seconds: float
    select_policy: str
    """`Max`, `Min` or `Disabled`."""
    policies: tuple[ScalingPolicy, ...]


def scaling_rules(
    given: Mapping[str, Any] | None,
    *,
    up: bool,
    downscale_window_seconds: float = DEFAULT_DOWNSCALE_WINDOW_SECONDS,
) -> ScalingRules:
    """`behavior.scaleUp` (`up`) or `behavior.scaleDown` as the API server defaults it.

    `given` is the direction's rules as the API server admitted them (None: not set);
    `downscale_window_seconds` is the controller's flag, the window of a scale-down that sets none.
    """
    given = given or {}
    default_policies: tuple[ScalingPolicy, ...]
    if up:
        default_window = 0.0
        default_policies = (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15))
    else:
        default_window = downscale_window_seconds
        default_policies = (ScalingPolicy("Percent", 100, 15),)
    window = given.get("stabilizationWindowSeconds")
    policies = given.get("policies")
    return ScalingRules(
        stabilization_window_seconds=default_window if window is None else float(window),
        select_policy=str(given.get("selectPolicy") or "Max"),
        policies=default_policies
        if policies is None
        else tuple(
            ScalingPolicy(str(p["type"]), int(p["value"]), int(p["periodSeconds"]))
            for p in policies
        ),
    )


def scale_limit(
    rules: ScalingRules,
    current: int,
    *,
    up: bool,
    period_start: Callable[[int], int] | None = None,
) -> int:
    """The furthest the policies let the replicas go from `current` in one direction.

    `period_start(seconds)` gives the replicas at the start of the last `seconds` seconds:
    `current` less the changes made within them (None: `current`, no change within any period).
    The limit is never on the other side of `current`, and is `current` itself when the policies
    allow no change (`Disabled`).
    """
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        start = current if period_start is None else period_start(policy.period_seconds)
        if policy.type == "Pods":
            proposals.append(start + policy.value if up else start - policy.value)
        elif up:
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    # The smallest change is the lowest limit going up and the highest going down.
    lowest = (rules.select_policy == "Min") == up
    limit = min(proposals, default=_MAX_INT32) if lowest else max(proposals, default=_MIN_INT32)
    return max(limit, current) if up else min(limit, current)


def legacy_scale_up_limit(current: int) -> int:
    """The most replicas one sync may scale `current` up to when the HPA has no `behavior`."""
    return max(LEGACY_SCALE_UP_FACTOR * current, LEGACY_SCALE_UP_MINIMUM)


__all__ = [
    "DEFAULT_DOWNSCALE_WINDOW_SECONDS",
    "LEGACY_SCALE_UP_FACTOR",
    "LEGACY_SCALE_UP_MINIMUM",
    "ScalingPolicy",
    "ScalingRules",
    "legacy_scale_up_limit",
    "scale_limit",
    "scaling_rules",
]
