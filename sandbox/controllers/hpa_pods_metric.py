"""The HPA's ``Pods`` metrics, and the ``Object`` and ``External`` metrics the sandbox refuses.

A ``Pods`` metric follows kube-controller-manager's ``replica_calculator.go``
(``GetMetricReplicas`` and ``calcPlainMetricReplicas``) and ``horizontal.go``
(``computeStatusForPodsMetric``):

- the values come from ``custom.metrics.k8s.io`` for the pods the target's selector matches
  (here :class:`sandbox.controllers.custom_metrics.GatewayScraper`, the sandbox's Prometheus and
  prometheus-adapter); none at all fails the metric ("no metrics returned from custom metrics
  API"), and so does a metric the adapter does not serve (its 404 message);
- pods are grouped as upstream's ``groupPods`` does for a metric that is not CPU: deleting and
  Failed pods are left out, Pending pods are unready, pods without a value are missing, and
  every other pod counts, Ready or not (the CPU start-up rules do not apply);
- the usage is the integer average of the milli-values (``GetMetricUsageRatio``); within the
  tolerance nothing changes; otherwise, with no missing or unready pods, ``ceil(ratio * ready)``;
- with missing pods: on a scale-down they count as exactly the target, on a scale-up as 0; with
  unready pods on a scale-up they count as 0; then the ratio is taken again, and a result that
  falls within the tolerance, changes direction, or would move the replicas the other way keeps
  the current count.

``Object`` and ``External`` metrics are not served by the sandbox: the metric fails with
upstream's reasons (``FailedGetObjectMetric``, ``FailedGetExternalMetric``) and a message saying
why, so ``ScalingActive`` is False as it is on a cluster whose adapter lacks them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sandbox.controllers.hpa_replicas import (
    MetricInputs,
    MetricOutcome,
    PodState,
    Tolerances,
    group_pods,
)
from sandbox.store.custom_metrics import MetricNotServed
from sandbox.store.quantity import QuantityError, format_decimal_si, milli_value

NO_ADAPTER = (
    "unable to fetch metrics from custom metrics API: the server could not find the requested "
    "resource (get pods.custom.metrics.k8s.io)"
)
"""What the HPA says when no adapter serves ``custom.metrics.k8s.io`` at all."""


class PlainMetricError(Exception):
    """A Pods metric that gives no proposal; the message is upstream's error text."""


def calc_plain_metric_replicas(
    metrics: Mapping[str, int],
    *,
    current_replicas: int,
    target_milli: int,
    pods: Sequence[PodState],
    tolerances: Tolerances,
) -> tuple[int, int]:
    """upstream's ``calcPlainMetricReplicas``: (replicas, average usage in milli-units)."""
    if not pods:
        raise PlainMetricError("no pods returned by selector while calculating replica count")
    values = dict(metrics)
    ready_count, unready, missing, ignored = group_pods(pods, values)
    for name in ignored | unready:
        values.pop(name, None)
    if not values:
        raise PlainMetricError("did not receive metrics for targeted pods (pods might be unready)")

    ratio, usage = _usage_ratio(values, target_milli)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if tolerances.within(ratio):
            return current_replicas, usage
        return math.ceil(ratio * ready_count), usage

    if missing:
        fill = target_milli if ratio < 1.0 else 0
        for name in missing:
            values[name] = fill
    if scale_up_with_unready:
        for name in unready:
            values[name] = 0
    new_ratio, _ = _usage_ratio(values, target_milli)
    if (
        tolerances.within(new_ratio)
        or (ratio < 1.0 and new_ratio > 1.0)
        or (ratio > 1.0 and new_ratio < 1.0)
    ):
        return current_replicas, usage
    new_replicas = math.ceil(new_ratio * len(values))
    if (new_ratio < 1.0 and new_replicas > current_replicas) or (
        new_ratio > 1.0 and new_replicas < current_replicas
    ):
        return current_replicas, usage
    return new_replicas, usage


def _usage_ratio(values: Mapping[str, int], target_milli: int) -> tuple[float, int]:
    """``GetMetricUsageRatio``: the integer average (Go's int64 division) over the target."""
    total = sum(values.values())
    average = int(total / len(values)) if total >= 0 else -int(-total / len(values))
    return average / target_milli, average


def label_selector_text(selector: Mapping[str, Any] | None) -> str | None:
    """A ``LabelSelector`` object as selector text, as the metrics client sends it."""
    if not selector:
        return None
    clauses = [
        f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())
    ]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = ",".join(expression.get("values") or [])
        clauses.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})"}.get(
                operator, key if operator == "Exists" else f"!{key}"
            )
        )
    return ",".join(clauses) or None


def pods_metric(metric: Mapping[str, Any], inputs: MetricInputs) -> MetricOutcome:
    """One ``Pods`` metric's proposal and status (``computeStatusForPodsMetric``)."""
    spec = metric.get("pods") or {}
    identifier = spec.get("metric") or {}
    name = str(identifier.get("name", ""))
    average = (spec.get("target") or {}).get("averageValue")
    try:
        target_milli = milli_value(average) if average is not None else 0
    except QuantityError:
        target_milli = 0
    if target_milli <= 0:
        # Admission refuses this ("must specify a positive target averageValue"); an object
        # stored before that check still must not divide by zero.
        return _failed(
            f"invalid pods metric source: target averageValue of {name} must be positive",
            "FailedGetPodsMetric",
        )
    selector = label_selector_text(identifier.get("selector"))
    source, pods = inputs.pods_metrics, inputs.pods
    if source is None:
        return _failed(f"unable to get metric {name}: {NO_ADAPTER}", "FailedGetPodsMetric")
    try:
        values = source.pod_values(inputs.namespace, name, [pod.name for pod in pods], selector)
    except MetricNotServed as exc:
        return _failed(
            f"unable to get metric {name}: unable to fetch metrics from custom metrics API: {exc}",
            "FailedGetPodsMetric",
        )
    if not values:
        return _failed(
            f"unable to get metric {name}: no metrics returned from custom metrics API",
            "FailedGetPodsMetric",
        )
    try:
        replicas, usage = calc_plain_metric_replicas(
            values,
            current_replicas=inputs.spec_replicas,
            target_milli=target_milli,
            pods=pods,
            tolerances=inputs.tolerances,
        )
    except PlainMetricError as exc:
        return _failed(str(exc), "FailedGetPodsMetric")
    metric_id: dict[str, Any] = {"name": name}
    if identifier.get("selector"):
        metric_id["selector"] = identifier["selector"]
    status = {
        "type": "Pods",
        "pods": {"metric": metric_id, "current": {"averageValue": format_decimal_si(usage, -3)}},
    }
    return MetricOutcome(replicas, f"pods metric {name}", status, None, None)


def unsupported_metric(metric: Mapping[str, Any], namespace: str) -> MetricOutcome:
    """An ``Object`` or ``External`` metric: failed with upstream's reason, saying why."""
    if metric.get("type") == "Object":
        spec = metric.get("object") or {}
        name = (spec.get("metric") or {}).get("name", "")
        described = spec.get("describedObject") or {}
        return _failed(
            f"unable to get metric {name}: {described.get('kind', '')} on {namespace} "
            f"{described.get('name', '')}/the sandbox's custom metrics API serves pods only, "
            "so Object metrics are not supported",
            "FailedGetObjectMetric",
        )
    spec = metric.get("external") or {}
    name = (spec.get("metric") or {}).get("name", "")
    return _failed(
        f"unable to get external metric {namespace}/{name}: unable to fetch metrics from "
        "external metrics API: the server could not find the requested resource (the sandbox "
        "serves no external.metrics.k8s.io, so External metrics are not supported)",
        "FailedGetExternalMetric",
    )


def _failed(error: str, reason: str) -> MetricOutcome:
    return MetricOutcome(None, "", {"type": ""}, error, reason)
