"""How long an HPA can take to scale: the bounds behind a scenario's `within: auto`.

An HPA (`autoscaling/v2`) changes replicas only on a sync (kube-controller-manager's
`--horizontal-pod-autoscaler-sync-period`, 15 s by default), from metrics that metrics-server
refreshes once per `--metric-resolution` (60 s in Minikube's addon), and never faster than its
`spec.behavior` allows: a stabilisation window (the highest recommendation of the last window
seconds wins a scale-down, the lowest a scale-up) and policies (at most so many pods, or so many
percent, per period; `selectPolicy` picks the policy that allows the most (`Max`) or the least
(`Min`)). The rules and defaults are upstream's: `pkg/controller/podautoscaler/horizontal.go`
(`calculateScaleUpLimitWithScalingRules`, `calculateScaleDownLimitWithBehaviors`) and
`pkg/apis/autoscaling/v2/defaults.go`.

`scale_bound` turns them into a window for one change of replicas (from the moment the load
starts or stops): the `lowest` time any cluster with this HPA could take (metrics already fresh,
every sync right on time) and the `highest` it may take (each wait as long as it can be), with
the sum written out term by term for the report and `--dry-run`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KUBERNETES_SYNC_SECONDS = 15.0
"""kube-controller-manager's default `--horizontal-pod-autoscaler-sync-period`."""
MINIKUBE_METRICS_RESOLUTION_SECONDS = 60.0
"""`--metric-resolution` of Minikube's metrics-server addon
(`deploy/addons/metrics-server/metrics-server-deployment.yaml.tmpl`)."""
DEFAULT_DOWNSCALE_WINDOW_SECONDS = 300.0
"""`--horizontal-pod-autoscaler-downscale-stabilization`, used when scaleDown sets no window."""


@dataclass(frozen=True)
class Policy:
    """One scaling policy: at most `value` pods (or percent) per `period` seconds."""

    kind: str
    """`Pods` or `Percent`."""
    value: int
    period: float

    def words(self) -> str:
        """The policy as the HPA's YAML would say it."""
        unit = (" pod" if self.value == 1 else " pods") if self.kind == "Pods" else " %"
        return f"{self.value}{unit} per {self.period:g} s"


@dataclass(frozen=True)
class Rules:
    """One direction of `spec.behavior`: the window, the select policy and the policies."""

    window: float
    select: str
    policies: tuple[Policy, ...]

    def limit(self, replicas: int, *, up: bool) -> int | None:
        """How far one period's policies let `replicas` go (None: scaling this way is off)."""
        if self.select == "Disabled" or not self.policies:
            return None
        proposals = []
        for policy in self.policies:
            if policy.kind == "Pods":
                proposals.append(replicas + policy.value if up else replicas - policy.value)
            elif up:
                proposals.append(math.ceil(replicas * (1 + policy.value / 100)))
            else:
                proposals.append(int(replicas * (1 - policy.value / 100)))
        # Max: the policy that allows the biggest change; Min: the smallest.
        if up:
            return max(proposals) if self.select == "Max" else min(proposals)
        return min(proposals) if self.select == "Max" else max(proposals)

    def words(self) -> str:
        """The rules in one line."""
        policies = ", ".join(policy.words() for policy in self.policies) or "none"
        return f"window {self.window:g} s, selectPolicy {self.select}, policies {policies}"


UP_DEFAULT = Rules(0.0, "Max", (Policy("Percent", 100, 15.0), Policy("Pods", 4, 15.0)))
DOWN_DEFAULT = Rules(DEFAULT_DOWNSCALE_WINDOW_SECONDS, "Max", (Policy("Percent", 100, 15.0),))


def _rules(given: Mapping[str, Any] | None, default: Rules) -> Rules:
    """One direction of `spec.behavior`, upstream's defaults for what it leaves out."""
    if not given:
        return default
    window = given.get("stabilizationWindowSeconds")
    policies = tuple(
        Policy(str(p.get("type")), int(p.get("value", 0)), float(p.get("periodSeconds", 15)))
        for p in given.get("policies") or ()
    )
    return Rules(
        default.window if window is None else float(window),
        str(given.get("selectPolicy") or "Max"),
        policies or default.policies,
    )


@dataclass(frozen=True)
class HpaTiming:
    """What bounds an HPA's pace: its behaviour, its bounds, the sync period and the metrics."""

    up: Rules
    down: Rules
    min_replicas: int
    max_replicas: int
    sync_seconds: float
    resolution_seconds: float
    sources: tuple[str, ...] = ()
    """Where each number came from, in words (the live HPA, a flag, an assumption)."""
    resolution_assumed: bool = False
    """No pod metrics told the resolution (new pods, no metrics-server): worth reading again."""

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any],
        sync_seconds: float,
        resolution_seconds: float,
        sources: tuple[str, ...] = (),
        resolution_assumed: bool = False,
    ) -> HpaTiming:
        """The timing of an HPA's `spec` (a `HorizontalPodAutoscaler` as JSON)."""
        behavior = spec.get("behavior") or {}
        return cls(
            up=_rules(behavior.get("scaleUp"), UP_DEFAULT),
            down=_rules(behavior.get("scaleDown"), DOWN_DEFAULT),
            min_replicas=int(spec.get("minReplicas") or 1),
            max_replicas=int(spec.get("maxReplicas") or 1),
            sync_seconds=sync_seconds,
            resolution_seconds=resolution_seconds,
            sources=sources,
            resolution_assumed=resolution_assumed,
        )

    def words(self) -> list[str]:
        """The timing in lines, for `--dry-run` and the report."""
        return [
            f"HPA {self.min_replicas}-{self.max_replicas} replicas; scale up: {self.up.words()}; "
            f"scale down: {self.down.words()}",
            f"HPA sync every {self.sync_seconds:g} s; metrics refreshed every "
            f"{self.resolution_seconds:g} s",
            *self.sources,
        ]


@dataclass(frozen=True)
class Bound:
    """How long one change of replicas can take, from the load's start (or stop)."""

    start: int
    goal: int
    lowest: float
    """No cluster with this HPA gets there sooner."""
    highest: float | None
    """Nor later, while the load asks for it (None: it never gets there)."""
    terms: tuple[tuple[str, float], ...]
    """The terms of `highest`, in words."""
    why_never: str = ""

    def explain(self) -> str:
        """The sum behind `highest`, in one line."""
        if self.highest is None:
            return f"{self.start} -> {self.goal} replicas: never ({self.why_never})"
        if not self.terms:
            return f"{self.start} -> {self.goal} replicas: already there"
        parts = " + ".join(f"{seconds:g} s {what}" for what, seconds in self.terms)
        return (
            f"{self.start} -> {self.goal} replicas: at most {self.highest:g} s = {parts} "
            f"(at least {self.lowest:g} s)"
        )


def _steps(timing: HpaTiming, start: int, goal: int, up: bool) -> tuple[int, str]:
    """How many policy periods `start` -> `goal` takes (0: there already), or why never."""
    rules = timing.up if up else timing.down
    if up and goal > timing.max_replicas:
        return 0, f"maxReplicas is {timing.max_replicas}"
    if not up and goal < timing.min_replicas:
        return 0, f"minReplicas is {timing.min_replicas}"
    replicas, steps = start, 0
    while (replicas < goal) if up else (replicas > goal):
        limit = rules.limit(replicas, up=up)
        if limit is None or limit == replicas:
            return 0, f"scale {'up' if up else 'down'} is disabled (selectPolicy {rules.select})"
        replicas = min(limit, goal) if up else max(limit, goal)
        steps += 1
    return steps, ""


def scale_bound(timing: HpaTiming, start: int, goal: int) -> Bound:
    """The time `start` -> `goal` replicas can take, counted from the load's start (scale up)
    or stop (scale down), as the HPA's `status.currentReplicas` shows it."""
    if start == goal:
        return Bound(start, goal, 0.0, 0.0, ())
    up = goal > start
    rules = timing.up if up else timing.down
    steps, why_never = _steps(timing, start, goal, up)
    if why_never:
        return Bound(start, goal, 0.0, None, (), why_never)
    sync, resolution = timing.sync_seconds, timing.resolution_seconds
    period = max(policy.period for policy in rules.policies)
    direction = "up" if up else "down"
    terms: list[tuple[str, float]] = [
        # A sample whose whole window saw the change comes at most two resolutions later.
        ("for metrics that show the change (2 x the metrics resolution)", 2 * resolution),
        ("for the next HPA sync", sync),
    ]
    if rules.window:
        terms.append((f"scale-{direction} stabilisation window", rules.window))
        terms.append(("for the sync after the window", sync))
    if steps > 1:
        terms.append(
            (
                f"for {steps - 1} more policy period(s) of {period:g} s, each to the next sync",
                (steps - 1) * (period + sync),
            )
        )
    terms.append(("until the HPA's next sync reports the new count", sync))
    # The soonest: fresh metrics at once, every sync on time; a scale-down window may have
    # begun up to one sync before the load stopped.
    lowest = max(0.0, rules.window - (0.0 if up else sync)) + (steps - 1) * period
    return Bound(start, goal, lowest, sum(seconds for _, seconds in terms), tuple(terms))


__all__ = [
    "KUBERNETES_SYNC_SECONDS",
    "MINIKUBE_METRICS_RESOLUTION_SECONDS",
    "Bound",
    "HpaTiming",
    "Policy",
    "Rules",
    "scale_bound",
]
