"""The HPA's replica calculator: one metric's proposal from the pods' usage and requests.

As upstream's ``replica_calculator.go``: the ratio of current to target utilisation over the
pods that have metrics, with a tolerance; missing pods count as 0 % on a scale-up and as
100 % on a scale-down; pending pods, and for CPU pods not yet ready, are left out of a
scale-down and count as 0 % on a scale-up; Failed and terminating pods are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from kube_llm_data.hpa_policy import DEFAULT_DOWNSCALE_WINDOW_SECONDS
from sandbox.controllers.metrics import PodSample
from sandbox.store.quantity import (
    QuantityError,
    format_decimal_si,
    parse_cpu_millicores,
    parse_memory_bytes,
)


@dataclass(frozen=True)
class HPAConfig:
    """kube-controller-manager's HPA flags, with their defaults."""

    tolerance: float = 0.1
    downscale_stabilization_seconds: float = DEFAULT_DOWNSCALE_WINDOW_SECONDS
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


def group_pods(
    pods: Sequence[PodState],
    metrics: Mapping[str, object],
    unready_with_metric: Callable[[PodState], bool] | None = None,
) -> tuple[int, set[str], set[str], set[str]]:
    """upstream's ``groupPods``: (ready count, unready, missing, ignored pod names).

    Deleting and Failed pods are ignored, Pending ones unready, pods without a metric missing;
    ``unready_with_metric`` is the CPU start-up rule (None for any other metric).
    """
    ready_count = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.add(pod.name)
        elif pod.phase == "Pending":
            unready.add(pod.name)
        elif pod.name not in metrics:
            missing.add(pod.name)
        elif unready_with_metric is not None and unready_with_metric(pod):
            unready.add(pod.name)
        else:
            ready_count += 1
    return ready_count, unready, missing, ignored


class _MetricError(Exception):
    """A metric that could not be computed; the message is upstream's error text."""


@dataclass(frozen=True)
class Tolerances:
    """The tolerances around a ratio of 1.0 within which nothing scales."""

    scale_down: float
    scale_up: float

    def within(self, ratio: float) -> bool:
        """Whether `ratio` is close enough to 1.0 to leave the replicas alone."""
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)


class PodsMetricSource(Protocol):
    """Where the HPA reads a Pods metric: the custom metrics API for the target's pods."""

    def pod_values(
        self,
        namespace: str,
        metric: str,
        pods: Sequence[str],
        metric_selector: str | None = None,
    ) -> dict[str, int]:
        """Milli-values per pod that has one; raises MetricNotServed as the adapter's 404."""


@dataclass(frozen=True)
class MetricInputs:
    """What every metric of one HPA sync is computed from (the same for each metric).

    Upstream passes these around as its replica calculator's fields (the tolerance, the CPU
    start-up periods, the metrics clients) and ``computeReplicasForMetric``'s arguments.
    """

    spec_replicas: int
    """The target's ``spec.replicas``."""
    pods: Sequence[PodState]
    """The pods the target's selector matches."""
    usage: Mapping[str, PodSample]
    """The latest resource sample of each of those pods that has one, and of no other pod."""
    namespace: str
    now: float
    """The sync's time, on the clock of :class:`PodState` and the samples."""
    tolerances: Tolerances
    config: HPAConfig
    pods_metrics: PodsMetricSource | None = None
    """The custom metrics API that ``Pods`` metrics read (None: no adapter installed)."""


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
    inputs: MetricInputs, *, resource: str, container: str | None, target_utilization: int
) -> _MetricResult:
    spec_replicas, pods, usage = inputs.spec_replicas, inputs.pods, inputs.usage
    tolerances = inputs.tolerances
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
                f"{inputs.namespace}/{pod_name}"
            )
        value = _usage_milli(resource, sample, container)
        if value is not None:
            metrics[pod_name] = value

    if not pods:
        raise _MetricError("no pods returned by selector while calculating replica count")

    def cpu_unready(pod: PodState) -> bool:
        return resource == "cpu" and _cpu_unready(pod, usage[pod.name], inputs.now, inputs.config)

    ready_count, unready, missing, ignored = group_pods(pods, metrics, cpu_unready)
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


@dataclass(frozen=True)
class MetricOutcome:
    """One metric's proposal (or failure) and its `status.currentMetrics` entry."""

    replicas: int | None
    name: str
    status: dict[str, Any]
    error: str | None
    error_reason: str | None


def compute_metric(metric: Mapping[str, Any], inputs: MetricInputs) -> MetricOutcome:
    """One spec metric's replica proposal, or why it has none (upstream's computeReplicas)."""
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
        return MetricOutcome(None, "", {"type": ""}, error, "InvalidMetricSourceType")
    resource = source.get("name", "")
    target = source.get("target") or {}
    if target.get("type") != "Utilization" or target.get("averageUtilization") is None:
        error = (
            "invalid resource metric source: neither an average utilization target nor an "
            "average value (usage) target was set"
            if target.get("averageValue") is None
            else "averageValue targets are not supported by the sandbox"
        )
        return MetricOutcome(None, "", {"type": ""}, error, failure_reason)
    target_utilization = int(target["averageUtilization"])
    try:
        result = _resource_metric(
            inputs,
            resource=resource,
            container=container,
            target_utilization=target_utilization,
        )
    except _MetricError as exc:
        error = f"failed to get {resource} utilization: {exc}"
        return MetricOutcome(None, "", {"type": ""}, error, failure_reason)
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
    return MetricOutcome(result.replicas, name, {"type": kind, key: body}, None, None)
