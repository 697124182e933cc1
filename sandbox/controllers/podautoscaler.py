"""The sandbox's metrics-server and horizontal pod autoscaler:

- Metrics: every pod's processes sampled with psutil (`sandbox.controllers.metrics`), served as
  `metrics.k8s.io` and fed to the HPA.
- HPA: `sandbox.controllers.hpa.decide` every sync period, scaling the Deployment and writing
  the HPA status and `SuccessfulRescale` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from sandbox.controllers import hpa as hpa_algorithm
from sandbox.controllers.hpa_replicas import PodsMetricSource
from sandbox.controllers.isolation import ObjectFailures, object_key
from sandbox.controllers.metrics import PodSample, ProcessTreeSampler, pod_metrics
from sandbox.store.events import EventRecorder
from sandbox.store.store import (
    DEPLOYMENTS,
    HPAS,
    JSON,
    PODS,
    Store,
    labels_match,
    selector_from_label_selector,
)

log = logging.getLogger("sandbox.controllers")


class MetricsCollector:
    """Samples every pod's processes at a fixed resolution (the sandbox's metrics-server)."""

    def __init__(
        self,
        store: Store,
        targets: Callable[[], dict[str, dict[str, int | None]]],
        resolution_seconds: float,
    ) -> None:
        self.store = store
        self._targets = targets
        self.resolution_seconds = resolution_seconds
        self.sampler = ProcessTreeSampler(resolution_seconds)
        self.latest: dict[str, PodSample] = {}

    def sample(self) -> dict[str, PodSample]:
        """Take a sample now (also done on the resolution timer)."""
        self.latest = self.sampler.sample(self._targets())
        return self.latest

    def pod_metrics(self, namespace: str | None) -> list[JSON]:
        """PodMetrics objects of the latest samples."""
        items = []
        for pod in self.store.list(PODS, namespace):
            sample = self.latest.get(pod["metadata"]["name"])
            if sample is None:
                continue
            items.append(
                pod_metrics(
                    sample,
                    namespace=pod["metadata"]["namespace"],
                    labels=pod["metadata"].get("labels") or {},
                )
            )
        return items

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            try:
                self.sample()
            except Exception:  # a psutil surprise must not stop the metrics
                log.exception("sampling failed")
            await asyncio.sleep(self.resolution_seconds)


class HpaController:
    """Runs the HPA algorithm for every HPA each sync period."""

    def __init__(
        self,
        store: Store,
        metrics: MetricsCollector,
        sync_seconds: float,
        pods_metrics: PodsMetricSource | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.pods_metrics = pods_metrics
        self.sync_seconds = sync_seconds
        self.recorder = EventRecorder(store, "horizontal-pod-autoscaler")
        self.histories: dict[str, hpa_algorithm.HPAHistory] = {}
        self.failures = ObjectFailures("horizontal-pod-autoscaler", self.recorder)
        self._wake = asyncio.Event()

    def sync(self, hpa: JSON) -> None:
        """One sync of one HPA."""
        namespace = hpa["metadata"]["namespace"]
        name = hpa["metadata"]["name"]
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        deployment = (
            self.store.find(DEPLOYMENTS, namespace, ref.get("name", ""))
            if ref.get("kind") == "Deployment"
            else None
        )
        now = time.time()
        if deployment is None:
            message = (
                f"the HPA controller was unable to get the target's current scale: "
                f'deployments/scale.apps "{ref.get("name")}" not found'
            )
            self.recorder.record(hpa, "Warning", "FailedGetScale", message)
            conditions = hpa_algorithm.merge_conditions(
                (hpa.get("status") or {}).get("conditions"),
                [
                    {
                        "type": "AbleToScale",
                        "status": "False",
                        "reason": "FailedGetScale",
                        "message": message,
                    }
                ],
                now,
            )

            def fail(obj: JSON) -> None:
                obj.setdefault("status", {})["conditions"] = conditions
                obj["status"].setdefault("currentReplicas", 0)
                obj["status"].setdefault("desiredReplicas", 0)

            self.store.mutate(HPAS, namespace, name, fail)
            return
        selector = selector_from_label_selector(deployment["spec"].get("selector"))
        pods = [
            hpa_algorithm.pod_state(pod)
            for pod in self.store.list(PODS, namespace)
            if selector and labels_match(selector, pod["metadata"].get("labels"))
        ]
        history = self.histories.setdefault(hpa["metadata"]["uid"], hpa_algorithm.HPAHistory())
        current = int(deployment["spec"].get("replicas", 1))
        decision = hpa_algorithm.decide(
            hpa,
            current_replicas=current,
            pods=pods,
            usage=self.metrics.latest,
            now=now,
            history=history,
            pods_metrics=self.pods_metrics,
        )
        self._record_failure(hpa, decision)
        if decision.rescale:
            desired = decision.desired_replicas

            def scale(obj: JSON) -> None:
                obj["spec"]["replicas"] = desired

            self.store.mutate(DEPLOYMENTS, namespace, deployment["metadata"]["name"], scale)
            self.recorder.record(
                hpa,
                "Normal",
                "SuccessfulRescale",
                decision.event_message or f"New size: {desired}",
            )
        status = decision.status(hpa.get("status"), now)
        status["observedGeneration"] = int(hpa["metadata"].get("generation", 1))

        def write(obj: JSON) -> None:
            obj["status"] = status

        self.store.mutate(HPAS, namespace, name, write)

    def _record_failure(self, hpa: JSON, decision: hpa_algorithm.HPADecision) -> None:
        """A metric that failed: a Warning event with its reason and error, as upstream's
        ``getUnableComputeReplicaCountCondition`` records beside the condition."""
        active = decision.condition("ScalingActive")
        if active is None or active["status"] != "False" or active["reason"] == "ScalingDisabled":
            return
        prefix = "the HPA was unable to compute the replica count: "
        message = active["message"].removeprefix(prefix)
        self.recorder.record(hpa, "Warning", active["reason"], message)

    def sync_all(self) -> None:
        """One sync of every HPA."""
        hpas = self.store.list(HPAS)
        for hpa in hpas:
            self.failures.run(hpa, self.sync)
        self.failures.forget_except({object_key(hpa) for hpa in hpas})
        # A deleted HPA's recommendations and scale events go with it.
        live = {hpa["metadata"]["uid"] for hpa in hpas}
        for uid in set(self.histories) - live:
            del self.histories[uid]

    async def run(self) -> None:
        """Sync every period, and at once when an HPA is created."""
        _, queue = self.store.subscribe(HPAS)
        watcher = asyncio.create_task(self._watch_new(queue))
        try:
            while True:
                self.sync_all()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.sync_seconds)
                self._wake.clear()
        finally:
            watcher.cancel()
            self.store.unsubscribe(HPAS, queue)

    async def _watch_new(self, queue: asyncio.Queue[Any]) -> None:
        while True:
            event = await queue.get()
            if event is not None and event.type == "ADDED":
                self._wake.set()
