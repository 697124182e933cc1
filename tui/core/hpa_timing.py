"""How long an HPA can take to scale: the bounds behind a scenario's `within: auto`.

An HPA (`autoscaling/v2`) changes replicas only on a sync (kube-controller-manager's
`--horizontal-pod-autoscaler-sync-period`, 15 s by default), from metrics that metrics-server
refreshes once per `--metric-resolution` (60 s in Minikube's addon), and never faster than its
`spec.behavior` allows: a stabilisation window (the highest recommendation of the last window
seconds wins a scale-down, the lowest a scale-up) and policies (at most so many pods, or so many
percent, per period; `selectPolicy` picks the policy that allows the most (`Max`) or the least
(`Min`)). An HPA without `spec.behavior` takes the controller's legacy path instead: each sync
may raise the replicas to `max(2 x current, 4)`, a scale-down waits only for the controller's
downscale window (`--horizontal-pod-autoscaler-downscale-stabilization`, 300 s by default) and
then goes all the way. The rules, their defaults, the policies' arithmetic and the legacy limit
are upstream's, defined once in `kube_llm_data.hpa_policy`, which the sandbox's HPA controller
scales by.

`scale_bound` turns them into a window for one change of replicas (from the moment the load
starts or stops): the `lowest` time any cluster with this HPA could take (metrics already fresh,
every sync right on time) and the `highest` it may take (each wait as long as it can be), with
the sum written out term by term for the report and `--dry-run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kube_llm_data.hpa_policy import (
    DEFAULT_DOWNSCALE_WINDOW_SECONDS,
    LEGACY_SCALE_UP_FACTOR,
    LEGACY_SCALE_UP_MINIMUM,
    ScalingPolicy,
    ScalingRules,
    legacy_scale_up_limit,
    scale_limit,
    scaling_rules,
)

KUBERNETES_SYNC_SECONDS = 15.0
"""kube-controller-manager's default `--horizontal-pod-autoscaler-sync-period`."""
MINIKUBE_METRICS_RESOLUTION_SECONDS = 60.0
"""`--metric-resolution` of Minikube's metrics-server addon
(`deploy/addons/metrics-server/metrics-server-deployment.yaml.tmpl`)."""


def _policy_words(policy: ScalingPolicy) -> str:
    """A policy as the HPA's YAML would say it."""
    unit = (" pod" if policy.value == 1 else " pods") if policy.type == "Pods" else " %"
    return f"{policy.value}{unit} per {policy.period_seconds:g} s"


def _rules_words(rules: ScalingRules) -> str:
    """One direction's rules in one line."""
    policies = ", ".join(_policy_words(policy) for policy in rules.policies) or "none"
    return (
        f"window {rules.stabilization_window_seconds:g} s, selectPolicy {rules.select_policy}, "
        f"policies {policies}"
    )


@dataclass(frozen=True)
class HpaTiming:
    """What bounds an HPA's pace: its behaviour, its bounds, the sync period and the metrics."""

    up: ScalingRules
    down: ScalingRules
    min_replicas: int
    max_replicas: int
    sync_seconds: float
    resolution_seconds: float
    sources: tuple[str, ...] = ()
    """Where each number came from, in words (the live HPA, a flag, an assumption)."""
    resolution_assumed: bool = False
    """No pod metrics told the resolution (new pods, no metrics-server): worth reading again."""
    legacy: bool = False
    """The HPA has no `spec.behavior`: the controller's legacy path. `up` and `down` then hold
    no policies (only the downscale window); the limit is `legacy_scale_up_limit` per sync."""

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
        behavior = spec.get("behavior")
        if behavior is None:
            up = ScalingRules(0.0, "Max", ())
            down = ScalingRules(DEFAULT_DOWNSCALE_WINDOW_SECONDS, "Max", ())
        else:
            up = scaling_rules(behavior.get("scaleUp"), up=True)
            down = scaling_rules(behavior.get("scaleDown"), up=False)
        return cls(
            up=up,
            down=down,
            min_replicas=int(spec.get("minReplicas") or 1),
            max_replicas=int(spec.get("maxReplicas") or 1),
            sync_seconds=sync_seconds,
            resolution_seconds=resolution_seconds,
            sources=sources,
            resolution_assumed=resolution_assumed,
            legacy=behavior is None,
        )

    def limit(self, replicas: int, up: bool) -> int:
        """The furthest one step may take `replicas` (a policy period, or a sync when legacy)."""
        if not self.legacy:
            return scale_limit(self.up if up else self.down, replicas, up=up)
        return legacy_scale_up_limit(replicas) if up else self.min_replicas

    def words(self) -> list[str]:
        """The timing in lines, for `--dry-run` and the report."""
        if self.legacy:
            rules = (
                "no spec.behavior, so the controller's legacy rules: scale up to at most "
                f"max({LEGACY_SCALE_UP_FACTOR} x current, {LEGACY_SCALE_UP_MINIMUM}) replicas per "
                "sync, no window; scale down: window "
                f"{self.down.stabilization_window_seconds:g} s (assumed: "
                "--horizontal-pod-autoscaler-downscale-stabilization's default), no rate limit"
            )
        else:
            rules = f"scale up: {_rules_words(self.up)}; scale down: {_rules_words(self.down)}"
        return [
            f"HPA {self.min_replicas}-{self.max_replicas} replicas; {rules}",
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
    """How many steps (policy periods, or syncs when legacy) `start` -> `goal` takes (0: there
    already), or why never."""
    rules = timing.up if up else timing.down
    if up and goal > timing.max_replicas:
        return 0, f"maxReplicas is {timing.max_replicas}"
    if not up and goal < timing.min_replicas:
        return 0, f"minReplicas is {timing.min_replicas}"
    replicas, steps = start, 0
    while (replicas < goal) if up else (replicas > goal):
        limit = timing.limit(replicas, up)
        if limit == replicas:
            return 0, (
                f"scale {'up' if up else 'down'} is disabled (selectPolicy {rules.select_policy})"
            )
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
    direction = "up" if up else "down"
    terms: list[tuple[str, float]] = [
        # A sample whose whole window saw the change comes at most two resolutions later.
        ("for metrics that show the change (2 x the metrics resolution)", 2 * resolution),
        ("for the next HPA sync", sync),
    ]
    window = rules.stabilization_window_seconds
    if window:
        terms.append((f"scale-{direction} stabilisation window", window))
        terms.append(("for the sync after the window", sync))
    if steps > 1 and timing.legacy:
        # Each sync may scale again, from what the last one reached.
        period = sync
        terms.append((f"for {steps - 1} more HPA sync(s) of {sync:g} s", (steps - 1) * sync))
    elif steps > 1:
        period = max(policy.period_seconds for policy in rules.policies)
        terms.append(
            (
                f"for {steps - 1} more policy period(s) of {period:g} s, each to the next sync",
                (steps - 1) * (period + sync),
            )
        )
    else:
        period = 0
    terms.append(("until the HPA's next sync reports the new count", sync))
    # The soonest: fresh metrics at once, every sync on time; a scale-down window may have
    # begun up to one sync before the load stopped.
    lowest = max(0.0, window - (0.0 if up else sync)) + (steps - 1) * period
    return Bound(start, goal, lowest, sum(seconds for _, seconds in terms), tuple(terms))


__all__ = [
    "KUBERNETES_SYNC_SECONDS",
    "MINIKUBE_METRICS_RESOLUTION_SECONDS",
    "Bound",
    "HpaTiming",
    "scale_bound",
]
