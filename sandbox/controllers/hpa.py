"""The Kubernetes HorizontalPodAutoscaler algorithm (``autoscaling/v2``), as pure functions.

It follows kube-controller-manager's ``pkg/controller/podautoscaler`` (``horizontal.go`` and
``replica_calculator.go``): per metric, the ratio of current to target utilisation over the
pods that have metrics, with a 10 % tolerance; missing pods count as 0 % on a scale-up and as
100 % on a scale-down; pending pods, and for CPU pods not yet ready, are left out of a
scale-down and count as 0 % on a scale-up; the largest proposal over all metrics wins. Then
the stabilisation windows (scale-down: highest recommendation within the window; scale-up:
lowest), the rate policies (``Pods``/``Percent`` per ``periodSeconds``, ``selectPolicy``
Max/Min/Disabled), and ``minReplicas``/``maxReplicas``. It writes ``status.currentMetrics``
and the ``AbleToScale``/``ScalingActive``/``ScalingLimited`` conditions with upstream's
reasons and messages.

As upstream: an HPA **without** ``spec.behavior`` takes the controller's legacy path (highest
recommendation over the 300 s downscale window, scale-up capped at ``max(2 * current, 4)``
per sync, no rate history); an HPA with a ``behavior`` (even ``{}``) gets the API defaults for
what it leaves out (scale-up: window 0, ``Max`` of 4 pods and 100 % per 15 s; scale-down:
window 300 s, ``Max`` of 100 % per 15 s). ``behavior.scale{Up,Down}.tolerance`` (1.33+) is
honoured when set. Metrics of type ``Resource`` and ``ContainerResource`` with
``target.type: Utilization`` are supported, and ``Pods`` metrics with an ``AverageValue``
target (``hpa_pods_metric``, read from the custom metrics API); ``Object`` and ``External``
metrics, and any other target, fail (``ScalingActive`` False) with a message saying so.

API summary, for the sandbox core's HPA controller (every ``--hpa-sync-seconds``)::

    history = HPAHistory()                         # one per HPA, kept across syncs
    pods = [pod_state(pod_object) for pod_object in pods_matching_the_selector]
    samples = sampler.sample({...})                # sandbox.metrics.ProcessTreeSampler
    decision = decide(hpa_object, current_replicas=deployment_spec_replicas, pods=pods,
                      usage=samples, now=time.time(), history=history)
    if decision.rescale:
        scale the Deployment to decision.desired_replicas
        emit a Normal event, reason "SuccessfulRescale", message decision.event_message
    hpa_object["status"] = decision.status(hpa_object.get("status"), now=time.time())

``now`` and every time in ``PodState`` are seconds on one clock; use the wall clock
(``time.time()``), which :func:`pod_state` uses for ``startTime`` and the Ready condition.
``decide`` records the recommendation and, when it rescales, the scale event in ``history``
(the sandbox's scale update cannot fail, so it is recorded at once as upstream does after a
successful update).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kube_llm_data.hpa_policy import scaling_rules
from sandbox.controllers.hpa_behavior import (
    Conditions,
    HPAHistory,
    normalize_legacy,
    normalize_with_behavior,
    store_scale_event,
)
from sandbox.controllers.hpa_pods_metric import pods_metric, unsupported_metric
from sandbox.controllers.hpa_replicas import (
    HPAConfig,
    MetricInputs,
    MetricOutcome,
    PodsMetricSource,
    PodState,
    Tolerances,
    compute_metric,
    container_requests,
    pod_state,
)
from sandbox.controllers.metrics import PodSample
from sandbox.store.quantity import format_rfc3339, parse_quantity

__all__ = [
    "HPAConfig",
    "HPADecision",
    "HPAHistory",
    "PodState",
    "container_requests",
    "decide",
    "merge_conditions",
    "pod_state",
]


@dataclass(frozen=True)
class HPADecision:
    """The outcome of one HPA sync."""

    current_replicas: int
    desired_replicas: int
    """What the target should be scaled to (equal to ``current_replicas`` when not rescaling)."""
    rescale: bool
    metric_replicas: int | None
    """The largest proposal of the metrics, before stabilisation, rates and bounds."""
    current_metrics: tuple[dict[str, Any], ...]
    """``status.currentMetrics`` in the ``autoscaling/v2`` shape, one per spec metric."""
    conditions: tuple[dict[str, str], ...]
    """Conditions set in this sync: type, status, reason, message (no lastTransitionTime)."""
    rescale_reason: str
    """Upstream's rescale reason, e.g. "All metrics below target"."""
    event_message: str | None
    """The ``SuccessfulRescale`` event message ("New size: 4; reason: ..."), when rescaling."""
    metrics_valid: bool

    def condition(self, condition_type: str) -> dict[str, str] | None:
        """The condition of this type set in this sync, if any."""
        return next((c for c in self.conditions if c["type"] == condition_type), None)

    def status(self, previous: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
        """The HPA's new ``status``, given the previous one and the wall-clock time.

        Like upstream, a sync whose metrics all failed keeps the previous desired replicas
        and current metrics; ``lastScaleTime`` moves only on a rescale; conditions keep their
        ``lastTransitionTime`` while their status does not change.
        """
        previous = previous or {}
        status: dict[str, Any] = {"currentReplicas": self.current_replicas}
        if self.metrics_valid:
            status["desiredReplicas"] = self.desired_replicas
            metrics: list[dict[str, Any]] = list(self.current_metrics)
        else:
            status["desiredReplicas"] = previous.get("desiredReplicas", self.desired_replicas)
            metrics = list(previous.get("currentMetrics") or [])
        if metrics:
            status["currentMetrics"] = metrics
        last_scale = format_rfc3339(now) if self.rescale else previous.get("lastScaleTime")
        if last_scale is not None:
            status["lastScaleTime"] = last_scale
        status["conditions"] = merge_conditions(previous.get("conditions"), self.conditions, now)
        return status


def merge_conditions(
    previous: Iterable[Mapping[str, Any]] | None,
    updates: Iterable[Mapping[str, str]],
    now: float,
) -> list[dict[str, Any]]:
    """Apply condition updates as upstream's ``setConditionInList`` does.

    An existing condition keeps its place and its ``lastTransitionTime`` unless its status
    changes; reason and message are always replaced; new conditions are appended.
    """
    merged = [dict(c) for c in previous or []]
    for update in updates:
        existing = next((c for c in merged if c.get("type") == update["type"]), None)
        if existing is None:
            merged.append({**update, "lastTransitionTime": format_rfc3339(now)})
            continue
        if existing.get("status") != update["status"]:
            existing["lastTransitionTime"] = format_rfc3339(now)
        existing.update(update)
    return merged


# --------------------------------------------------------------------------------------------
# The sync
# --------------------------------------------------------------------------------------------


def decide(
    hpa: Mapping[str, Any],
    *,
    current_replicas: int,
    pods: Sequence[PodState],
    usage: Mapping[str, PodSample],
    now: float,
    history: HPAHistory,
    config: HPAConfig | None = None,
    pods_metrics: PodsMetricSource | None = None,
) -> HPADecision:
    """Run one HPA sync: the desired replicas, ``currentMetrics``, conditions and why.

    ``hpa`` is the HPA object (or just its ``spec``); ``current_replicas`` the target's
    ``spec.replicas``; ``pods`` the pods its selector matches; ``usage`` the latest sample of
    each pod that has one (pods without one count as missing; samples of pods not in ``pods``
    are not read). ``pods_metrics`` is the custom metrics API that ``Pods`` metrics read (None:
    no adapter installed). ``history`` is updated.
    """
    spec: Mapping[str, Any] = hpa.get("spec", hpa)
    config = config or HPAConfig()
    namespace = (hpa.get("metadata") or {}).get("namespace", "default")
    min_replicas = int(spec.get("minReplicas", 1))
    max_replicas = int(spec["maxReplicas"])
    behavior = spec.get("behavior")
    up_rules = scaling_rules((behavior or {}).get("scaleUp"), up=True)
    down_rules = scaling_rules(
        (behavior or {}).get("scaleDown"),
        up=False,
        downscale_window_seconds=config.downscale_stabilization_seconds,
    )
    conditions = Conditions()
    conditions.set(
        "AbleToScale",
        True,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
    )
    if not history.recommendations:
        history.recommendations.append((now, current_replicas))

    metric_statuses: list[dict[str, Any]] = []
    metric_replicas: int | None = None
    rescale_reason = ""
    metrics_valid = True

    if current_replicas == 0 and min_replicas != 0:
        conditions.set(
            "ScalingActive",
            False,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        )
        return _finish(
            current_replicas,
            current_replicas,
            False,
            None,
            (),
            conditions,
            "",
            True,
        )
    if current_replicas > max_replicas:
        rescale_reason = "Current number of replicas above Spec.MaxReplicas"
        desired = max_replicas
    elif current_replicas < min_replicas:
        rescale_reason = "Current number of replicas below Spec.MinReplicas"
        desired = min_replicas
    else:
        # The metrics API is asked with the target's selector: only these pods' samples count.
        known = {pod.name for pod in pods}
        inputs = MetricInputs(
            spec_replicas=current_replicas,
            pods=pods,
            usage={name: sample for name, sample in usage.items() if name in known},
            namespace=namespace,
            now=now,
            tolerances=_tolerances(behavior, config),
            config=config,
            pods_metrics=pods_metrics,
        )
        proposal = _propose(list(spec.get("metrics") or []), inputs)
        metric_statuses = list(proposal.statuses)
        if proposal.failure is not None:
            conditions.set("ScalingActive", False, *proposal.failure)
            return _finish(
                current_replicas,
                current_replicas,
                False,
                None,
                proposal.statuses,
                conditions,
                "",
                False,
            )
        best, best_name = proposal.replicas, proposal.name
        conditions.set(
            "ScalingActive",
            True,
            "ValidMetricFound",
            f"the HPA was able to successfully calculate a replica count from {best_name}",
        )
        metric_replicas = best
        desired = best
        if desired > current_replicas:
            rescale_reason = f"{best_name} above target"
        if desired < current_replicas:
            rescale_reason = "All metrics below target"
        if behavior is None:
            desired = normalize_legacy(
                current_replicas,
                desired,
                min_replicas,
                max_replicas,
                history,
                now,
                config,
                conditions,
            )
        else:
            desired = normalize_with_behavior(
                current_replicas,
                desired,
                min_replicas,
                max_replicas,
                up_rules,
                down_rules,
                history,
                now,
                conditions,
            )

    rescale = desired != current_replicas
    if rescale:
        conditions.set(
            "AbleToScale",
            True,
            "SucceededRescale",
            f"the HPA controller was able to update the target scale to {desired}",
        )
        if behavior is not None:
            store_scale_event(history, up_rules, down_rules, now, current_replicas, desired)
    return _finish(
        current_replicas,
        desired if rescale else current_replicas,
        rescale,
        metric_replicas,
        tuple(metric_statuses),
        conditions,
        rescale_reason,
        metrics_valid,
    )


@dataclass(frozen=True)
class _Proposal:
    """The largest proposal over the spec's metrics, or why there is none."""

    statuses: tuple[dict[str, Any], ...]
    replicas: int
    name: str
    failure: tuple[str, str] | None
    """(reason, message) of ScalingActive False when the metrics allow no decision."""


def _tolerances(behavior: Mapping[str, Any] | None, config: HPAConfig) -> Tolerances:
    """The down and up tolerances: the behaviour's (1.33+) where set, else the controller's."""

    def tolerance(direction: str) -> float:
        given = ((behavior or {}).get(direction) or {}).get("tolerance")
        return config.tolerance if given is None else float(parse_quantity(given))

    return Tolerances(tolerance("scaleDown"), tolerance("scaleUp"))


def _propose(metrics: Sequence[Mapping[str, Any]], inputs: MetricInputs) -> _Proposal:
    """Every metric's proposal; the largest wins. As upstream, failed metrics block a decision
    when all fail, or when the others would scale down (a scale-up still goes ahead)."""
    statuses: list[dict[str, Any]] = []
    best, best_name, invalid = 0, "", 0
    first_error: MetricOutcome | None = None
    for metric in metrics:
        if metric.get("type") == "Pods":
            outcome = pods_metric(metric, inputs)
        elif metric.get("type") in ("Object", "External"):
            outcome = unsupported_metric(metric, inputs.namespace)
        else:
            outcome = compute_metric(metric, inputs)
        statuses.append(outcome.status)
        if outcome.replicas is None:
            invalid += 1
            first_error = first_error or outcome
            continue
        if best == 0 or outcome.replicas > best:
            best, best_name = outcome.replicas, outcome.name
    failure: tuple[str, str] | None = None
    if invalid >= len(metrics) or (invalid > 0 and best < inputs.spec_replicas):
        if first_error is not None:
            failure = (
                first_error.error_reason or "FailedGetResourceMetric",
                f"the HPA was unable to compute the replica count: {first_error.error}",
            )
        else:
            failure = (
                "InvalidMetricSourceType",
                "the HPA was unable to compute the replica count: no metrics in the spec",
            )
    return _Proposal(tuple(statuses), best, best_name, failure)


def _finish(
    current: int,
    desired: int,
    rescale: bool,
    metric_replicas: int | None,
    statuses: tuple[dict[str, Any], ...],
    conditions: Conditions,
    rescale_reason: str,
    metrics_valid: bool,
) -> HPADecision:
    return HPADecision(
        current_replicas=current,
        desired_replicas=desired,
        rescale=rescale,
        metric_replicas=metric_replicas,
        current_metrics=statuses,
        conditions=conditions.as_tuple(),
        rescale_reason=rescale_reason,
        event_message=f"New size: {desired}; reason: {rescale_reason}" if rescale else None,
        metrics_valid=metrics_valid,
    )
