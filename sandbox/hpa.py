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
``target.type: Utilization`` are supported; any other metric fails (``ScalingActive`` False)
with a message saying so.

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

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox.metrics import (
    PodSample,
    QuantityError,
    format_decimal_si,
    format_rfc3339,
    parse_cpu_millicores,
    parse_memory_bytes,
    parse_quantity,
)

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

_MAX_INT32 = 2**31 - 1
_MIN_INT32 = -(2**31)


@dataclass(frozen=True)
class HPAConfig:
    """kube-controller-manager's HPA flags, with their defaults."""

    tolerance: float = 0.1
    downscale_stabilization_seconds: float = 300.0
    cpu_initialization_period_seconds: float = 300.0
    initial_readiness_delay_seconds: float = 30.0


@dataclass(frozen=True)
class PodState:
    """What the HPA needs to know of one pod that its target's selector matches.

    ``requests`` maps container name to resource name ("cpu", "memory") to the request in
    millicores (cpu) or bytes (memory); it lists the regular containers and the native
    sidecars (init containers with ``restartPolicy: Always``), as upstream counts both.
    ``start_time`` is ``status.startTime`` and ``ready_since`` the Ready condition's
    ``lastTransitionTime``; when ``start_time`` is None, a pod counts as unready for CPU
    exactly when ``ready`` is false.
    """

    name: str
    requests: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    phase: str = "Running"
    ready: bool = True
    deleting: bool = False
    start_time: float | None = None
    ready_since: float | None = None


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
# Building PodState from pod objects
# --------------------------------------------------------------------------------------------


def container_requests(pod_spec: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Requests per container of a pod spec: regular containers and native sidecars.

    Values are millicores for cpu and bytes for memory; a resource without a request is left
    out (the HPA then fails that metric with upstream's "missing request" message).
    """
    containers = list(pod_spec.get("containers") or [])
    containers += [
        c for c in pod_spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
    ]
    result: dict[str, dict[str, int]] = {}
    for container in containers:
        requests = (container.get("resources") or {}).get("requests") or {}
        parsed: dict[str, int] = {}
        for resource, quantity in requests.items():
            try:
                if resource == "cpu":
                    parsed["cpu"] = parse_cpu_millicores(quantity)
                elif resource == "memory":
                    parsed["memory"] = parse_memory_bytes(quantity)
            except QuantityError:
                continue  # an invalid quantity is as good as none
        result[container["name"]] = parsed
    return result


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pod_state(pod: Mapping[str, Any]) -> PodState:
    """A :class:`PodState` from a pod object (``metadata``, ``spec``, ``status``)."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready_condition = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None
    )
    return PodState(
        name=metadata["name"],
        requests=container_requests(pod.get("spec") or {}),
        phase=status.get("phase", "Pending"),
        ready=bool(ready_condition and ready_condition.get("status") == "True"),
        deleting=metadata.get("deletionTimestamp") is not None,
        start_time=_parse_time(status.get("startTime")),
        ready_since=_parse_time(ready_condition.get("lastTransitionTime"))
        if ready_condition
        else None,
    )


# --------------------------------------------------------------------------------------------
# Metrics: replica_calculator.go
# --------------------------------------------------------------------------------------------


class _MetricError(Exception):
    """A metric that could not be computed; the message is upstream's error text."""


@dataclass(frozen=True)
class _Tolerances:
    scale_down: float
    scale_up: float

    def within(self, ratio: float) -> bool:
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)


@dataclass(frozen=True)
class _MetricResult:
    replicas: int
    utilization: int
    raw_average_milli: int


def _usage_milli(resource: str, sample: PodSample, container: str | None) -> int | None:
    """A pod's usage in milli-units (millicores, milli-bytes), None when it has none."""
    if resource not in ("cpu", "memory"):
        return None
    values = []
    for name, usage in sample.containers.items():
        if container is not None and name != container:
            continue
        values.append(usage.cpu_millicores if resource == "cpu" else usage.memory_bytes * 1000)
    if not values:
        return None
    return sum(values)


def _resource_metric(
    *,
    resource: str,
    container: str | None,
    target_utilization: int,
    spec_replicas: int,
    pods: Sequence[PodState],
    usage: Mapping[str, PodSample],
    namespace: str,
    now: float,
    tolerances: _Tolerances,
    config: HPAConfig,
) -> _MetricResult:
    # metrics client: GetResourceMetric
    if not usage:
        raise _MetricError(
            f"unable to get metrics for resource {resource}: "
            "no metrics returned from resource metrics API"
        )
    metrics: dict[str, int] = {}
    # Failed and terminating pods are left out of the calculation below; upstream leaves
    # them out before reading container metrics too, so one without the container (a
    # container that already exited) does not fail the whole metric.
    ignored_pods = {pod.name for pod in pods if pod.deleting or pod.phase == "Failed"}
    for pod_name, sample in usage.items():
        if pod_name in ignored_pods:
            continue
        if container is not None and container not in sample.containers:
            raise _MetricError(
                f"unable to get metrics for resource {resource}: failed to get container "
                f"metrics: container {container} not present in metrics for pod "
                f"{namespace}/{pod_name}"
            )
        value = _usage_milli(resource, sample, container)
        if value is not None:
            metrics[pod_name] = value

    if not pods:
        raise _MetricError("no pods returned by selector while calculating replica count")

    # groupPods
    ready_count = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.add(pod.name)
            continue
        if pod.phase == "Pending":
            unready.add(pod.name)
            continue
        if pod.name not in metrics:
            missing.add(pod.name)
            continue
        if resource == "cpu" and _cpu_unready(pod, usage[pod.name], now, config):
            unready.add(pod.name)
            continue
        ready_count += 1
    for name in ignored | unready:
        metrics.pop(name, None)
    if not metrics:
        raise _MetricError("did not receive metrics for targeted pods (pods might be unready)")

    requests = _requests(pods, container, resource)
    usage_ratio, utilization, raw = _utilization_ratio(metrics, requests, target_utilization)

    scale_up_with_unready = bool(unready) and usage_ratio > 1.0
    if not scale_up_with_unready and not missing:
        if tolerances.within(usage_ratio):
            return _MetricResult(spec_replicas, utilization, raw)
        return _MetricResult(math.ceil(usage_ratio * ready_count), utilization, raw)

    if missing:
        if usage_ratio < 1.0:
            # on a scale-down, missing pods use 100 % of their request (or the target if higher)
            fallback = max(100, target_utilization)
            for name in missing:
                metrics[name] = requests[name] * fallback // 100
        elif usage_ratio > 1.0:
            for name in missing:
                metrics[name] = 0
    if scale_up_with_unready:
        for name in unready:
            metrics[name] = 0

    new_ratio, _, _ = _utilization_ratio(metrics, requests, target_utilization)
    if (
        tolerances.within(new_ratio)
        or (usage_ratio < 1.0 and new_ratio > 1.0)
        or (usage_ratio > 1.0 and new_ratio < 1.0)
    ):
        return _MetricResult(spec_replicas, utilization, raw)
    new_replicas = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and new_replicas > spec_replicas) or (
        new_ratio > 1.0 and new_replicas < spec_replicas
    ):
        return _MetricResult(spec_replicas, utilization, raw)
    return _MetricResult(new_replicas, utilization, raw)


def _cpu_unready(pod: PodState, sample: PodSample, now: float, config: HPAConfig) -> bool:
    """Upstream's rule for leaving a pod's CPU sample out (start-up CPU bursts mislead)."""
    if pod.start_time is None or pod.ready_since is None:
        return not pod.ready
    if pod.start_time + config.cpu_initialization_period_seconds > now:
        # still initialising: unready, or no full metric window since it became ready
        return (not pod.ready) or sample.timestamp < pod.ready_since + sample.window_seconds
    # never been ready since start
    return (not pod.ready) and (
        pod.start_time + config.initial_readiness_delay_seconds > pod.ready_since
    )


def _requests(pods: Sequence[PodState], container: str | None, resource: str) -> dict[str, int]:
    """Requests per pod in milli-units (calculateRequests)."""
    requests: dict[str, int] = {}
    for pod in pods:
        total = 0
        found = False
        for name, container_requests_ in pod.requests.items():
            if container is not None and name != container:
                continue
            found = True
            if resource not in container_requests_:
                raise _MetricError(
                    f"missing request for {resource} in container {name} of Pod {pod.name}"
                )
            value = container_requests_[resource]
            total += value if resource == "cpu" else value * 1000
        if container is not None and not found:
            raise _MetricError(f"container {container} not found in Pod {pod.name}")
        requests[pod.name] = total
    return requests


def _utilization_ratio(
    metrics: Mapping[str, int], requests: Mapping[str, int], target: int
) -> tuple[float, int, int]:
    """GetResourceUtilizationRatio: (ratio, utilisation %, average usage in milli-units)."""
    metrics_total = 0
    requests_total = 0
    entries = 0
    for name, value in metrics.items():
        if name not in requests:
            continue  # metrics of pods we do not know
        metrics_total += value
        requests_total += requests[name]
        entries += 1
    if requests_total == 0:
        raise _MetricError("no metrics returned matched known pods")
    utilization = (metrics_total * 100) // requests_total
    return utilization / target, utilization, metrics_total // entries


# --------------------------------------------------------------------------------------------
# Behaviour: horizontal.go
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Policy:
    type: str
    value: int
    period_seconds: int


@dataclass(frozen=True)
class _Rules:
    stabilization_window_seconds: float
    select_policy: str
    policies: tuple[_Policy, ...]
    tolerance: float | None


def _rules(raw: Mapping[str, Any] | None, *, up: bool, config: HPAConfig) -> _Rules:
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
    return _Rules(
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


def _policy_limit(current: int, history: HPAHistory, rules: _Rules, now: float, *, up: bool) -> int:
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


def _record_recommendation(history: HPAHistory, now: float, replicas: int, keep: float) -> None:
    """Store a recommendation, dropping those older than every window that reads them."""
    history.recommendations = [(t, r) for t, r in history.recommendations if t >= now - keep]
    history.recommendations.append((now, replicas))


def _store_scale_event(
    history: HPAHistory, up_rules: _Rules, down_rules: _Rules, now: float, previous: int, new: int
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


class _Conditions:
    """Ordered condition updates; a later update of a type replaces the earlier one."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, str]] = {}

    def set(self, kind: str, status: bool, reason: str, message: str) -> None:
        self._items[kind] = _condition(kind, status, reason, message)

    def get(self, kind: str) -> dict[str, str] | None:
        return self._items.get(kind)

    def as_tuple(self) -> tuple[dict[str, str], ...]:
        return tuple(self._items.values())


# --------------------------------------------------------------------------------------------
# The sync
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MetricOutcome:
    replicas: int | None
    name: str
    status: dict[str, Any]
    error: str | None
    error_reason: str | None


def _compute_metric(
    metric: Mapping[str, Any],
    *,
    spec_replicas: int,
    pods: Sequence[PodState],
    usage: Mapping[str, PodSample],
    namespace: str,
    now: float,
    tolerances: _Tolerances,
    config: HPAConfig,
) -> _MetricOutcome:
    kind = metric.get("type", "")
    if kind == "ContainerResource":
        source = metric.get("containerResource") or {}
        container: str | None = source.get("container")
        failure_reason = "FailedGetContainerResourceMetric"
        key = "containerResource"
    elif kind == "Resource":
        source = metric.get("resource") or {}
        container = None
        failure_reason = "FailedGetResourceMetric"
        key = "resource"
    else:
        error = f'unknown metric source type "{kind}"'
        return _MetricOutcome(None, "", {"type": ""}, error, "InvalidMetricSourceType")
    resource = source.get("name", "")
    target = source.get("target") or {}
    if target.get("type") != "Utilization" or target.get("averageUtilization") is None:
        error = (
            "invalid resource metric source: neither an average utilization target nor an "
            "average value (usage) target was set"
            if target.get("averageValue") is None
            else "averageValue targets are not supported by the sandbox"
        )
        return _MetricOutcome(None, "", {"type": ""}, error, failure_reason)
    target_utilization = int(target["averageUtilization"])
    try:
        result = _resource_metric(
            resource=resource,
            container=container,
            target_utilization=target_utilization,
            spec_replicas=spec_replicas,
            pods=pods,
            usage=usage,
            namespace=namespace,
            now=now,
            tolerances=tolerances,
            config=config,
        )
    except _MetricError as exc:
        error = f"failed to get {resource} utilization: {exc}"
        return _MetricOutcome(None, "", {"type": ""}, error, failure_reason)
    name = (
        f"{resource} container resource utilization (percentage of request)"
        if container
        else f"{resource} resource utilization (percentage of request)"
    )
    current = {
        "averageUtilization": result.utilization,
        "averageValue": format_decimal_si(result.raw_average_milli, -3),
    }
    body: dict[str, Any] = {"name": resource}
    if container:
        body["container"] = container
    body["current"] = current
    return _MetricOutcome(result.replicas, name, {"type": kind, key: body}, None, None)


def decide(
    hpa: Mapping[str, Any],
    *,
    current_replicas: int,
    pods: Sequence[PodState],
    usage: Mapping[str, PodSample],
    now: float,
    history: HPAHistory,
    config: HPAConfig | None = None,
) -> HPADecision:
    """Run one HPA sync: the desired replicas, ``currentMetrics``, conditions and why.

    ``hpa`` is the HPA object (or just its ``spec``); ``current_replicas`` the target's
    ``spec.replicas``; ``pods`` the pods its selector matches; ``usage`` the latest sample of
    each pod that has one (pods without one count as missing; samples of pods not in ``pods``
    are not read). ``history`` is updated.
    """
    spec: Mapping[str, Any] = hpa.get("spec", hpa)
    config = config or HPAConfig()
    namespace = (hpa.get("metadata") or {}).get("namespace", "default")
    min_replicas = int(spec.get("minReplicas", 1))
    max_replicas = int(spec["maxReplicas"])
    behavior = spec.get("behavior")
    up_rules = _rules((behavior or {}).get("scaleUp"), up=True, config=config)
    down_rules = _rules((behavior or {}).get("scaleDown"), up=False, config=config)
    conditions = _Conditions()
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
        tolerances = _Tolerances(
            config.tolerance
            if behavior is None or down_rules.tolerance is None
            else down_rules.tolerance,
            config.tolerance
            if behavior is None or up_rules.tolerance is None
            else up_rules.tolerance,
        )
        metrics = list(spec.get("metrics") or [])
        # The metrics API is asked with the target's selector: only these pods' samples count.
        known = {pod.name for pod in pods}
        usage = {name: sample for name, sample in usage.items() if name in known}
        best = 0
        best_name = ""
        invalid = 0
        first_error: _MetricOutcome | None = None
        for metric in metrics:
            outcome = _compute_metric(
                metric,
                spec_replicas=current_replicas,
                pods=pods,
                usage=usage,
                namespace=namespace,
                now=now,
                tolerances=tolerances,
                config=config,
            )
            metric_statuses.append(outcome.status)
            if outcome.replicas is None:
                invalid += 1
                first_error = first_error or outcome
                continue
            if best == 0 or outcome.replicas > best:
                best, best_name = outcome.replicas, outcome.name
        if invalid >= len(metrics) or (invalid > 0 and best < current_replicas):
            if first_error is not None:
                conditions.set(
                    "ScalingActive",
                    False,
                    first_error.error_reason or "FailedGetResourceMetric",
                    f"the HPA was unable to compute the replica count: {first_error.error}",
                )
            else:
                conditions.set(
                    "ScalingActive",
                    False,
                    "InvalidMetricSourceType",
                    "the HPA was unable to compute the replica count: no metrics in the spec",
                )
            return _finish(
                current_replicas,
                current_replicas,
                False,
                None,
                tuple(metric_statuses),
                conditions,
                "",
                False,
            )
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
            desired = _normalize_legacy(
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
            desired = _normalize_with_behavior(
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
            _store_scale_event(history, up_rules, down_rules, now, current_replicas, desired)
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


def _normalize_legacy(
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    history: HPAHistory,
    now: float,
    config: HPAConfig,
    conditions: _Conditions,
) -> int:
    """normalizeDesiredReplicas: the path of an HPA without ``behavior``."""
    cutoff = now - config.downscale_stabilization_seconds
    stabilized = max([desired] + [r for t, r in history.recommendations if not t < cutoff])
    _record_recommendation(history, now, desired, config.downscale_stabilization_seconds)
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


def _normalize_with_behavior(
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    up: _Rules,
    down: _Rules,
    history: HPAHistory,
    now: float,
    conditions: _Conditions,
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
    _record_recommendation(
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


def _finish(
    current: int,
    desired: int,
    rescale: bool,
    metric_replicas: int | None,
    statuses: tuple[dict[str, Any], ...],
    conditions: _Conditions,
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
