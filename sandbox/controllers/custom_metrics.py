"""The sandbox's custom metrics: Prometheus scraping the gateways, and prometheus-adapter serving
what it scraped on ``custom.metrics.k8s.io/v1beta2`` for pods.

On a cluster (kustomize/monitoring, components/autoscale-queue) Prometheus scrapes every Running
pod annotated ``prometheus.io/scrape: "true"`` at the annotated port and path (the
prometheus-community chart's ``kubernetes-pods`` job, which also copies the pod's labels onto
its series), and prometheus-adapter answers the HPA with one rule:
``kube_llm_chats_active`` = ``sum by (pod)`` of ``kube_llm_inflight`` and
``kube_llm_queue_depth``. :class:`GatewayScraper` does both in one place:

- it scrapes the same pods the same way every ``interval_seconds`` (5 s here, 15 s in
  prometheus-values.yaml); a scrape that fails drops the pod's series at once, as Prometheus'
  staleness markers end a failed target's series, so that pod is then *missing* for the HPA;
- :meth:`GatewayScraper.pod_values` is what the adapter's rule yields (milli-values, as the
  HPA reads ``Quantity.MilliValue()``), and :meth:`GatewayScraper.metric_value_list` the
  ``MetricValueList`` it serves: ``describedObject`` (``apiVersion: /v1``, ``kind: Pod``),
  ``metric.name``, ``timestamp`` and ``value`` as a DecimalSI milli-quantity, built like the
  adapter's ``metricFor`` (kubernetes-sigs/prometheus-adapter ``pkg/custom-provider/provider.go``
  with custom-metrics-apiserver's ``helpers.ReferenceFor``);
- a metric the adapter has no rule for, or whose series it has not seen within its relist
  window (30 s, ``metricsRelistInterval`` in the Helm values), is ``MetricNotServed``
  (``sandbox.store.custom_metrics``): a 404 ``NotFound`` Status worded as
  custom-metrics-apiserver's ``NewMetricNotFoundError`` ("the server could not find the metric
  NAME for pods"). With no pod reporting it yet, the adapter answers the same way.

Nothing here imports the API server or the kubelet: the wiring (``sandbox/cluster.py``) hands in
the pods' loopback ports and serves the lists through the API server's ``Runtime``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from sandbox.store.custom_metrics import ADAPTER_RULES, metric_not_found
from sandbox.store.custom_metrics import metric_value_list as value_list
from sandbox.store.selectors import labels_match, parse_label_selector
from sandbox.store.store import JSON, PODS, Store

log = logging.getLogger("sandbox.controllers")

RELIST_SECONDS = 30.0
"""The adapter's ``metricsRelistInterval``: a metric is served while a series of it is this
recent."""

SCRAPE_ANNOTATION = "prometheus.io/scrape"
PORT_ANNOTATION = "prometheus.io/port"
PATH_ANNOTATION = "prometheus.io/path"


@dataclass(frozen=True)
class Scrape:
    """One pod's last successful scrape: the summed value of every series name it exposed."""

    namespace: str
    pod: str
    timestamp: float
    series: Mapping[str, float]
    labels: Mapping[str, str] = field(default_factory=dict)
    """The labels its series carry: the pod's own labels plus ``namespace`` and ``pod``."""


def parse_series(text: str) -> dict[str, float]:
    """Each sample name in a Prometheus text exposition and the sum of its values.

    Raises ValueError on text that is not the exposition format (Prometheus fails the scrape).
    """
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals


def scrape_target(pod: JSON) -> tuple[str, str] | None:
    """(port, path) Prometheus scrapes on this pod, or None when it does not scrape it.

    As the chart's ``kubernetes-pods`` job: only pods annotated ``prometheus.io/scrape:
    "true"``, in phase Running, at the annotated port (else the first declared one) and path
    (else ``/metrics``).
    """
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if annotations.get(SCRAPE_ANNOTATION) != "true":
        return None
    if (pod.get("status") or {}).get("phase") != "Running":
        return None
    port = annotations.get(PORT_ANNOTATION)
    if port is None:
        for container in (pod.get("spec") or {}).get("containers") or []:
            ports = container.get("ports") or []
            if ports:
                port = str(ports[0].get("containerPort"))
                break
    if port is None:
        return None
    return str(port), annotations.get(PATH_ANNOTATION) or "/metrics"


class GatewayScraper:
    """Prometheus and prometheus-adapter for the sandbox's gateways (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        pod_port: Callable[[str, str, str | int], int | None],
        interval_seconds: float = 5.0,
        timeout_seconds: float = 2.0,
    ) -> None:
        self.store = store
        self._pod_port = pod_port
        self.interval_seconds = interval_seconds
        self.timeout_seconds = timeout_seconds
        self.latest: dict[tuple[str, str], Scrape] = {}
        self._last_seen: dict[str, float] = {}
        """Series name -> when a scrape last carried it (the adapter's series registry)."""

    def record(self, scrape: Scrape) -> None:
        """Keep a successful scrape (the newest per pod)."""
        self.latest[(scrape.namespace, scrape.pod)] = scrape
        for name in scrape.series:
            self._last_seen[name] = scrape.timestamp

    def drop(self, namespace: str, pod: str) -> None:
        """A failed scrape, or a pod no longer scraped: its series end now."""
        self.latest.pop((namespace, pod), None)

    async def scrape_once(self, client: httpx2.AsyncClient) -> None:
        """Scrape every pod Prometheus would, once, concurrently."""
        targets: list[tuple[JSON, str, str]] = []
        for pod in self.store.list(PODS):
            target = scrape_target(pod)
            if target is not None:
                targets.append((pod, *target))
        wanted = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p, _, _ in targets}
        for key in set(self.latest) - wanted:
            self.drop(*key)
        await asyncio.gather(*(self._scrape(client, *t) for t in targets))

    async def _scrape(self, client: httpx2.AsyncClient, pod: JSON, port: str, path: str) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        local = self._pod_port(namespace, name, port)
        if local is None:
            self.drop(namespace, name)
            return
        try:
            response = await client.get(
                f"http://127.0.0.1:{local}{path}", timeout=self.timeout_seconds
            )
            response.raise_for_status()
            series = parse_series(response.text)
        except (httpx2.HTTPError, ValueError):
            self.drop(namespace, name)
            return
        labels = {**(pod["metadata"].get("labels") or {}), "namespace": namespace, "pod": name}
        self.record(Scrape(namespace, name, time.time(), series, labels))

    def serves(self, metric: str, now: float | None = None) -> bool:
        """Whether the adapter serves ``metric``: it has a rule and a recent series of it."""
        rule = ADAPTER_RULES.get(metric)
        if rule is None:
            return False
        now = time.time() if now is None else now
        return any(now - self._last_seen.get(name, -1e18) <= RELIST_SECONDS for name in rule)

    def pod_values(
        self,
        namespace: str,
        metric: str,
        pods: Sequence[str],
        metric_selector: str | None = None,
    ) -> dict[str, int]:
        """Milli-values of ``metric`` for those of ``pods`` that have a series of it.

        Raises :class:`MetricNotServed` as the adapter answers 404 for it.
        """
        if not self.serves(metric):
            raise metric_not_found(metric)
        rule = ADAPTER_RULES[metric]
        requirements = parse_label_selector(metric_selector)
        values: dict[str, int] = {}
        for pod in pods:
            scrape = self.latest.get((namespace, pod))
            if scrape is None or not labels_match(requirements, dict(scrape.labels)):
                continue
            present = [scrape.series[name] for name in rule if name in scrape.series]
            if present:
                values[pod] = int(sum(present) * 1000.0)
        return values

    def metric_value_list(
        self,
        namespace: str,
        metric: str,
        pods: Sequence[str],
        metric_selector: str | None = None,
    ) -> JSON:
        """The ``MetricValueList`` the adapter serves for ``pods/*`` (raises MetricNotServed)."""
        values = self.pod_values(namespace, metric, pods, metric_selector)
        stamped = {
            pod: (milli, self.latest[(namespace, pod)].timestamp) for pod, milli in values.items()
        }
        selector = _label_selector_object(metric_selector) if metric_selector else None
        return value_list(namespace, metric, stamped, selector)

    async def run(self) -> None:
        """Scrape until cancelled."""
        async with httpx2.AsyncClient() as client:
            while True:
                try:
                    await self.scrape_once(client)
                except Exception:  # one bad pod must not stop the metrics
                    log.exception("scraping the gateways failed")
                await asyncio.sleep(self.interval_seconds)


def _label_selector_object(text: str) -> JSON:
    """A ``LabelSelector`` object for a selector string (``metav1.ParseToLabelSelector``)."""
    match_labels: dict[str, str] = {}
    expressions: list[JSON] = []
    for requirement in parse_label_selector(text):
        if requirement.operator in ("=", "==") and len(requirement.values) == 1:
            match_labels[requirement.key] = requirement.values[0]
            continue
        operator = {"in": "In", "notin": "NotIn", "exists": "Exists", "!": "DoesNotExist"}.get(
            requirement.operator, "NotIn"
        )
        expression: JSON = {"key": requirement.key, "operator": operator}
        if requirement.values:
            expression["values"] = list(requirement.values)
        expressions.append(expression)
    selector: JSON = {}
    if match_labels:
        selector["matchLabels"] = match_labels
    if expressions:
        selector["matchExpressions"] = expressions
    return selector
