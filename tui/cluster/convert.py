"""Kubernetes API objects (the JSON the API server sends, as dicts) into the cockpit's values.

Every function takes one object as the API server writes it (camelCase keys, RFC 3339 times,
quantities as strings) and returns a frozen value of `tui.core.model`. Missing fields get the API's
defaults; nothing here raises for an object a real API server could send. Quantities go through
`kubernetes.utils.parse_quantity`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

from tui.core.model import (
    ClusterEvent,
    Condition,
    ContainerView,
    DeploymentView,
    HpaMetric,
    HpaView,
    PodUsage,
    PodView,
)

JSON = dict[str, Any]

# The keys under which autoscaling/v2 keeps each metric source, in the spec and the status.
_SOURCE_KEYS = {
    "ContainerResource": "containerResource",
    "Resource": "resource",
    "Pods": "pods",
    "Object": "object",
    "External": "external",
}


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[JSON]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def parse_time(value: Any) -> float | None:
    """An RFC 3339 time (`2026-01-01T10:00:00Z`, with or without fractions) as epoch seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity (`250m`, `1Gi`, `12345n`) as a number, None when absent or bad."""
    if value is None:
        return None
    try:
        parsed: Decimal = parse_quantity(value)
    except (ValueError, TypeError, ArithmeticError):
        return None
    return parsed


def _millicores(value: Any) -> float | None:
    parsed = quantity(value)
    return None if parsed is None else float(parsed * 1000)


def _bytes(value: Any) -> int | None:
    parsed = quantity(value)
    return None if parsed is None else int(parsed)


def label_selector(selector: Any) -> str:
    """A LabelSelector (`matchLabels`, `matchExpressions`) as a `labelSelector` query string."""
    spec = _dict(selector)
    terms = [f"{key}={value}" for key, value in sorted(_dict(spec.get("matchLabels")).items())]
    for expression in _list(spec.get("matchExpressions")):
        key = expression.get("key", "")
        operator = expression.get("operator", "")
        values = ",".join(sorted(str(v) for v in expression.get("values") or []))
        if operator == "In":
            terms.append(f"{key} in ({values})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({values})")
        elif operator == "Exists":
            terms.append(key)
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)


def _state(status: JSON) -> str:
    """A container's state in words: `running`, `waiting: CrashLoopBackOff`..."""
    state = _dict(status.get("state"))
    if "running" in state:
        return "running"
    if "waiting" in state:
        reason = _dict(state["waiting"]).get("reason")
        return f"waiting: {reason}" if reason else "waiting"
    if "terminated" in state:
        terminated = _dict(state["terminated"])
        reason = terminated.get("reason") or _exit_words(terminated)
        return f"terminated: {reason}"
    return "waiting"


def _exit_words(terminated: JSON) -> str:
    signal = _int(terminated.get("signal"))
    return f"Signal:{signal}" if signal else f"ExitCode:{_int(terminated.get('exitCode'))}"


def _container(spec: JSON, status: JSON | None, sidecar: bool) -> ContainerView:
    requests = _dict(_dict(spec.get("resources")).get("requests"))
    status = status or {}
    return ContainerView(
        name=str(spec.get("name", "")),
        ready=bool(status.get("ready")),
        state=_state(status) if status else "waiting",
        restarts=_int(status.get("restartCount")),
        sidecar=sidecar,
        cpu_request_millicores=_millicores(requests.get("cpu")),
        memory_request_bytes=_bytes(requests.get("memory")),
    )


def _condition_true(status: JSON, kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True" for c in _list(status.get("conditions"))
    )


def _kubectl_status(pod: JSON) -> tuple[str, int, int, int]:
    """STATUS, ready and total containers and restarts, counted as `kubectl get pods` counts.

    Native sidecars (init containers with `restartPolicy: Always`) count among the containers,
    and as ready once started and ready; the pod is `Init:i/n` while an ordinary init container
    has not finished, and `Terminating` once deleted.
    """
    metadata, spec, status = (
        _dict(pod.get("metadata")),
        _dict(pod.get("spec")),
        _dict(pod.get("status")),
    )
    init_specs = _list(spec.get("initContainers"))
    sidecars = {c.get("name") for c in init_specs if c.get("restartPolicy") == "Always"}
    total = len(_list(spec.get("containers"))) + len(sidecars)
    ready = 0
    phase = str(status.get("phase") or "")
    reason = str(status.get("reason") or phase)
    if any(
        c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
        for c in _list(status.get("conditions"))
    ):
        reason = "SchedulingGated"

    init_restarts = sidecar_restarts = 0
    initializing = False
    for index, container in enumerate(_list(status.get("initContainerStatuses"))):
        init_restarts += _int(container.get("restartCount"))
        state = _dict(container.get("state"))
        terminated = _dict(state.get("terminated")) if "terminated" in state else None
        waiting = _dict(state.get("waiting")) if "waiting" in state else None
        is_sidecar = container.get("name") in sidecars
        if is_sidecar:
            sidecar_restarts += _int(container.get("restartCount"))
        if terminated is not None and _int(terminated.get("exitCode")) == 0:
            continue
        if is_sidecar and container.get("started"):
            ready += 1 if container.get("ready") else 0
            continue
        if terminated is not None:
            reason = "Init:" + (terminated.get("reason") or _exit_words(terminated))
        elif waiting is not None and waiting.get("reason") not in (None, "", "PodInitializing"):
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    restarts = init_restarts
    if not initializing or _condition_true(status, "Initialized"):
        restarts = sidecar_restarts
        running = False
        # kubectl walks the containers backwards, so the first container's reason wins.
        for container in reversed(_list(status.get("containerStatuses"))):
            restarts += _int(container.get("restartCount"))
            state = _dict(container.get("state"))
            waiting = _dict(state.get("waiting"))
            terminated = _dict(state.get("terminated")) if "terminated" in state else None
            if waiting.get("reason"):
                reason = str(waiting["reason"])
            elif terminated is not None:
                reason = terminated.get("reason") or _exit_words(terminated)
            elif container.get("ready") and "running" in state:
                running = True
                ready += 1
        if reason == "Completed" and running:
            reason = "Running" if _condition_true(status, "Ready") else "NotReady"

    if metadata.get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    return reason, ready, total, restarts


def pod_view(pod: JSON) -> PodView:
    """A Pod as the pods table shows it."""
    metadata, spec, status = (
        _dict(pod.get("metadata")),
        _dict(pod.get("spec")),
        _dict(pod.get("status")),
    )
    reason, ready_containers, total, restarts = _kubectl_status(pod)
    statuses = {
        s.get("name"): s
        for s in _list(status.get("initContainerStatuses")) + _list(status.get("containerStatuses"))
    }
    # The containers that run alongside each other: native sidecars, then the app containers
    # (an ordinary init container has finished before they start and holds no resources then).
    containers = tuple(
        _container(c, statuses.get(c.get("name")), sidecar=True)
        for c in _list(spec.get("initContainers"))
        if c.get("restartPolicy") == "Always"
    ) + tuple(
        _container(c, statuses.get(c.get("name")), sidecar=False)
        for c in _list(spec.get("containers"))
    )
    ready_condition = next(
        (c for c in _list(status.get("conditions")) if c.get("type") == "Ready"), {}
    )
    is_ready = ready_condition.get("status") == "True"
    return PodView(
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        phase=str(status.get("phase") or "Pending"),
        status=reason or "Unknown",
        ready=is_ready,
        ready_containers=ready_containers,
        total_containers=total,
        restarts=restarts,
        created_at=parse_time(metadata.get("creationTimestamp")),
        started_at=parse_time(status.get("startTime")),
        ready_at=parse_time(ready_condition.get("lastTransitionTime")) if is_ready else None,
        deleting_at=parse_time(metadata.get("deletionTimestamp")),
        containers=containers,
    )


def _target(target: JSON) -> tuple[int | None, str | None]:
    utilization = target.get("averageUtilization")
    value = target.get("averageValue", target.get("value"))
    return (
        _int(utilization) if utilization is not None else None,
        str(value) if value is not None else None,
    )


def _pods_averages(source: str, target: JSON, current: JSON) -> tuple[float | None, float | None]:
    """A Pods metric's AverageValue target and current average per pod, as numbers."""
    if source != "Pods":
        return None, None
    target_number = quantity(target.get("averageValue"))
    current_number = quantity(current.get("averageValue"))
    return (
        float(target_number) if target_number is not None else None,
        float(current_number) if current_number is not None else None,
    )


def _metric_key(entry: JSON) -> tuple[str, str, str | None, JSON]:
    """(source, name, container, the source's own block) of a spec or status metric."""
    source = str(entry.get("type", ""))
    block = _dict(entry.get(_SOURCE_KEYS.get(source, ""), {}))
    name = block.get("name") or _dict(block.get("metric")).get("name") or ""
    return source, str(name), block.get("container"), block


def hpa_view(hpa: JSON) -> HpaView:
    """A HorizontalPodAutoscaler (autoscaling/v2) with each metric's target and current value."""
    metadata, spec, status = (
        _dict(hpa.get("metadata")),
        _dict(hpa.get("spec")),
        _dict(hpa.get("status")),
    )
    current: dict[tuple[str, str, str | None], JSON] = {}
    for entry in _list(status.get("currentMetrics")):
        source, name, container, block = _metric_key(entry)
        current[(source, name, container)] = _dict(block.get("current"))
    metrics = []
    for entry in _list(spec.get("metrics")):
        source, name, container, block = _metric_key(entry)
        target_utilization, target_value = _target(_dict(block.get("target")))
        now = current.get((source, name, container), {})
        now_utilization, now_value = _target(now)
        averages = _pods_averages(source, _dict(block.get("target")), now)
        metrics.append(
            HpaMetric(
                source=source,
                name=name,
                container=container,
                target_utilization=target_utilization,
                target_value=target_value,
                current_utilization=now_utilization,
                current_value=now_value,
                target_average=averages[0],
                current_average=averages[1],
            )
        )
    conditions = _conditions(status)
    behavior = _dict(spec.get("behavior"))
    up = _dict(behavior.get("scaleUp")).get("stabilizationWindowSeconds")
    down = _dict(behavior.get("scaleDown")).get("stabilizationWindowSeconds")
    return HpaView(
        name=str(metadata.get("name", "")),
        min_replicas=_int(spec.get("minReplicas"), 1),
        max_replicas=_int(spec.get("maxReplicas")),
        current_replicas=_int(status.get("currentReplicas")),
        desired_replicas=_int(status.get("desiredReplicas")),
        metrics=tuple(metrics),
        conditions=conditions,
        last_scale_at=parse_time(status.get("lastScaleTime")),
        scale_up_window_seconds=_int(up, 0),
        scale_down_window_seconds=_int(down, 300),
    )


def _conditions(status: JSON) -> tuple[Condition, ...]:
    """A status's conditions (an HPA's, a Deployment's)."""
    return tuple(
        Condition(
            type=str(c.get("type", "")),
            status=str(c.get("status", "")),
            reason=str(c.get("reason", "")),
            message=str(c.get("message", "")),
            since=parse_time(c.get("lastTransitionTime")),
        )
        for c in _list(status.get("conditions"))
        if isinstance(c, dict)
    )


def deployment_view(deployment: JSON) -> DeploymentView:
    """A Deployment: its selector, replica counts, generations and conditions (what
    `kubectl rollout status` reads)."""
    metadata, spec, status = (
        _dict(deployment.get("metadata")),
        _dict(deployment.get("spec")),
        _dict(deployment.get("status")),
    )
    replicas = spec.get("replicas")
    annotations = _dict(metadata.get("annotations"))
    return DeploymentView(
        name=str(metadata.get("name", "")),
        selector=label_selector(spec.get("selector")),
        replicas=_int(replicas) if replicas is not None else None,
        ready_replicas=_int(status.get("readyReplicas")),
        updated_replicas=_int(status.get("updatedReplicas")),
        available_replicas=_int(status.get("availableReplicas")),
        generation=_int(metadata.get("generation")),
        observed_generation=_int(status.get("observedGeneration")),
        status_replicas=_int(status.get("replicas")),
        unavailable_replicas=_int(status.get("unavailableReplicas")),
        revision=str(annotations.get("deployment.kubernetes.io/revision") or ""),
        conditions=_conditions(status),
    )


def event_time(event: JSON) -> float:
    """When an Event (core/v1) last happened, from whichever time field its source filled."""
    series = _dict(event.get("series"))
    for value in (
        event.get("lastTimestamp"),
        series.get("lastObservedTime"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        _dict(event.get("metadata")).get("creationTimestamp"),
    ):
        moment = parse_time(value)
        if moment is not None:
            return moment
    return 0.0


def cluster_event(event: JSON) -> ClusterEvent:
    """An Event (core/v1) for the event log."""
    involved = _dict(event.get("involvedObject"))
    series = _dict(event.get("series"))
    count = _int(event.get("count")) or _int(series.get("count")) or 1
    return ClusterEvent(
        at=event_time(event),
        type=str(event.get("type") or "Normal"),
        reason=str(event.get("reason") or ""),
        kind=str(involved.get("kind") or ""),
        name=str(involved.get("name") or ""),
        message=str(event.get("message") or ""),
        count=count,
    )


def pod_usage(metrics: JSON) -> PodUsage:
    """A PodMetrics (metrics.k8s.io) summed over its containers."""
    cpu = 0.0
    memory = 0
    for container in _list(metrics.get("containers")):
        usage = _dict(container.get("usage"))
        cpu += _millicores(usage.get("cpu")) or 0.0
        memory += _bytes(usage.get("memory")) or 0
    return PodUsage(
        pod=str(_dict(metrics.get("metadata")).get("name", "")),
        cpu_millicores=cpu,
        memory_bytes=memory,
        at=parse_time(metrics.get("timestamp")) or 0.0,
    )
