"""What the sandbox's custom metrics API is, shared by the API server (which serves it) and the
controllers (the scraper behind it and the HPA that reads it): the group, the adapter's rules,
its "not found" answer and the ``MetricValueList`` it serves.

The shapes are prometheus-adapter's (kubernetes-sigs/prometheus-adapter,
``pkg/custom-provider/provider.go``: ``metricFor`` builds each item with custom-metrics-apiserver's
``helpers.ReferenceFor``, so a pod is ``apiVersion: /v1``, ``kind: Pod``; the value is
``resource.NewMilliQuantity(value * 1000, DecimalSI)``) and k8s.io/metrics'
``custom_metrics/v1beta2`` types (``MetricValue``: ``describedObject``, ``metric`` with ``name``
and an optional ``selector``, ``timestamp``, ``value``).
"""

from __future__ import annotations

from collections.abc import Mapping

from sandbox.store.quantity import format_decimal_si, format_rfc3339
from sandbox.store.resources import JSON

GROUP = "custom.metrics.k8s.io"
VERSION = "v1beta2"
API_VERSION = f"{GROUP}/{VERSION}"

ADAPTER_RULES: Mapping[str, tuple[str, ...]] = {
    "kube_llm_chats_active": ("kube_llm_inflight", "kube_llm_queue_depth"),
}
"""kustomize/monitoring/prometheus-adapter-values.yaml's rules: each metric served on pods and
the gateway series it sums per pod."""


class MetricNotServed(Exception):
    """The adapter serves no such metric: a 404 ``NotFound`` Status with this message."""


def metric_not_found(metric: str) -> MetricNotServed:
    """custom-metrics-apiserver's ``NewMetricNotFoundError`` for pods."""
    return MetricNotServed(f"the server could not find the metric {metric} for pods")


def metric_value_list(
    namespace: str,
    metric: str,
    values: Mapping[str, tuple[int, float]],
    metric_selector: JSON | None = None,
) -> JSON:
    """A ``MetricValueList`` of pod -> (milli-value, sample time), as the adapter answers."""
    items = []
    for pod, (milli, sampled) in values.items():
        identifier: JSON = {"name": metric}
        if metric_selector:
            identifier["selector"] = metric_selector
        items.append(
            {
                "describedObject": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": pod,
                    "apiVersion": "/v1",
                },
                "metric": identifier,
                "timestamp": format_rfc3339(sampled),
                "value": format_decimal_si(milli, -3),
            }
        )
    return {"kind": "MetricValueList", "apiVersion": API_VERSION, "metadata": {}, "items": items}
