"""The sandbox's controllers: Deployment, disruption budgets, Service endpoints, metrics, HPA.

- Deployment: keeps `spec.replicas` pods of the current template (pods named
  `<deployment>-<template hash>-<5 chars>`, owned by the Deployment; the sandbox keeps no
  ReplicaSet objects). A terminating or failed pod no longer counts, so a deleted pod is
  replaced at once. A template change rolls the pods with `maxSurge`/`maxUnavailable`.
- Disruption budgets and Service endpoints follow the pods (ready and not terminating).
- Metrics: every pod's processes sampled with psutil (`sandbox.metrics`), served as
  `metrics.k8s.io` and fed to the HPA.
- HPA: `sandbox.hpa.decide` every sync period, scaling the Deployment and writing the HPA
  status and `SuccessfulRescale` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from sandbox import hpa as hpa_algorithm
from sandbox.disruption import (
    begin_pod_deletion,
    pdb_numbers,
    pod_is_healthy,
    pod_is_ready,
    scaled_int_or_percent,
    service_pods,
)
from sandbox.events import EventRecorder
from sandbox.isolation import FIRST_RETRY_SECONDS, ObjectFailures, object_key
from sandbox.metrics import PodSample, ProcessTreeSampler, pod_metrics
from sandbox.store import (
    DEPLOYMENTS,
    ENDPOINTS,
    HPAS,
    JSON,
    PDBS,
    PODS,
    SERVICES,
    ApiError,
    ResourceType,
    Store,
    labels_match,
    parse_timestamp,
    random_suffix,
    selector_from_label_selector,
    timestamp,
)

log = logging.getLogger("sandbox.controllers")

_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: JSON) -> str:
    """A stable short hash of a pod template, like the `pod-template-hash` label."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_HASH_ALPHABET[b % len(_HASH_ALPHABET)] for b in digest[:10])


def _owned_by(pod: JSON, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in pod["metadata"].get("ownerReferences") or [])


def _active(pod: JSON) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return not pod["metadata"].get("deletionTimestamp") and phase not in ("Failed", "Succeeded")


def _set_condition(
    conditions: list[JSON], kind: str, status: bool, reason: str, message: str
) -> None:
    text = "True" if status else "False"
    stamp = timestamp()
    for condition in conditions:
        if condition["type"] == kind:
            if condition["status"] != text:
                condition["lastTransitionTime"] = stamp
                condition["lastUpdateTime"] = stamp
            condition.update(status=text, reason=reason, message=message)
            return
    conditions.append(
        {
            "type": kind,
            "status": text,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
            "reason": reason,
            "message": message,
        }
    )


class Reconciler:
    """Runs `reconcile` whenever one of the watched resources changes (coalescing bursts)."""

    def __init__(
        self, store: Store, watched: tuple[ResourceType, ...], component: str = "controller"
    ) -> None:
        self.store = store
        self._watched = watched
        self._dirty = asyncio.Event()
        self.failures = ObjectFailures(component, EventRecorder(store, component))

    def reconcile(self) -> None:
        """Bring the world towards the desired state (synchronous: one consistent view)."""
        raise NotImplementedError

    def poke(self) -> None:
        """Ask for a reconcile soon."""
        self._dirty.set()

    async def run(self) -> None:
        """Reconcile on every change until cancelled."""
        loop = asyncio.get_running_loop()
        queues = [self.store.subscribe(rt)[1] for rt in self._watched]
        forwarders = [asyncio.create_task(self._forward(q)) for q in queues]
        try:
            self._dirty.set()
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                try:
                    self.reconcile()
                except Exception:  # one failed pass is retried; the controller keeps running
                    log.exception("reconcile failed; retrying in %g s", FIRST_RETRY_SECONDS)
                    loop.call_later(FIRST_RETRY_SECONDS, self._dirty.set)
                retry = self.failures.next_retry_in()
                if retry is not None:
                    # An object waiting out its backoff is tried again when it ends.
                    loop.call_later(retry, self._dirty.set)
                await asyncio.sleep(0)
        finally:
            for task in forwarders:
                task.cancel()
            for rt, queue in zip(self._watched, queues, strict=True):
                self.store.unsubscribe(rt, queue)

    async def _forward(self, queue: asyncio.Queue[Any]) -> None:
        while True:
            await queue.get()
            self._dirty.set()


class DeploymentController(Reconciler):
    """Keeps each Deployment's pods at `spec.replicas`, replacing and rolling them."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, (DEPLOYMENTS, PODS), "deployment-controller")
        self.recorder = EventRecorder(store, "deployment-controller")
        self.pod_recorder = EventRecorder(store, "replicaset-controller")
        self._last_replicas: dict[str, int] = {}

    def reconcile(self) -> None:
        deployments = self.store.list(DEPLOYMENTS)
        for deployment in deployments:
            self.failures.run(deployment, self._reconcile)
        # Forget deleted Deployments (a new one by the same name has another uid).
        live = {d["metadata"]["uid"] for d in deployments}
        self.failures.forget_except({object_key(d) for d in deployments})
        for uid in set(self._last_replicas) - live:
            del self._last_replicas[uid]

    def _new_pod(self, deployment: JSON, pod_hash: str) -> JSON:
        template = deployment["spec"].get("template") or {}
        template_meta = template.get("metadata") or {}
        name = deployment["metadata"]["name"]
        spec = json.loads(json.dumps(template.get("spec") or {}))
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            _default_container(container)
        return {
            "metadata": {
                "name": f"{name}-{pod_hash}-{random_suffix()}",
                "namespace": deployment["metadata"]["namespace"],
                "labels": {**(template_meta.get("labels") or {}), "pod-template-hash": pod_hash},
                "annotations": dict(template_meta.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": name,
                        "uid": deployment["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
            "status": {"phase": "Pending", "qosClass": "Burstable"},
        }

    def _reconcile(self, deployment: JSON) -> None:
        namespace = deployment["metadata"]["namespace"]
        name = deployment["metadata"]["name"]
        uid = deployment["metadata"]["uid"]
        spec = deployment["spec"]
        replicas = int(spec.get("replicas", 1))
        pod_hash = template_hash(spec.get("template") or {})
        strategy = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        surge = scaled_int_or_percent(strategy.get("maxSurge", "25%"), replicas, True)
        unavailable = scaled_int_or_percent(strategy.get("maxUnavailable", "25%"), replicas, False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        pods = [p for p in self.store.list(PODS, namespace) if _owned_by(p, uid)]
        active = [p for p in pods if _active(p)]
        new = [
            p
            for p in active
            if p["metadata"].get("labels", {}).get("pod-template-hash") == pod_hash
        ]
        old = [p for p in active if p not in new]
        paused = bool(spec.get("paused"))

        if not paused:
            # Scale up the current template within the surge allowance.
            if len(new) < replicas:
                room = replicas + surge - len(active) if old else replicas - len(new)
                for _ in range(max(0, min(replicas - len(new), room))):
                    pod = self.store.create(PODS, self._new_pod(deployment, pod_hash), namespace)
                    new.append(pod)
                    active.append(pod)
                    self.pod_recorder.record(
                        deployment,
                        "Normal",
                        "SuccessfulCreate",
                        f"Created pod: {pod['metadata']['name']}",
                    )
            # Scale down surplus pods of the current template (least useful first).
            if len(new) > replicas:
                surplus = sorted(new, key=_deletion_rank)[: len(new) - replicas]
                for pod in surplus:
                    self._delete(deployment, pod)
                    new.remove(pod)
            # Retire old pods while the available count stays above the floor.
            if old:
                floor = replicas - unavailable
                available = sum(1 for p in new + old if pod_is_ready(p))
                for pod in sorted(old, key=_deletion_rank):
                    if pod_is_ready(pod) and available - 1 < floor:
                        continue
                    if pod_is_ready(pod):
                        available -= 1
                    self._delete(deployment, pod)
                    old.remove(pod)

        previous = self._last_replicas.get(uid)
        if previous is not None and previous != replicas:
            direction = "up" if replicas > previous else "down"
            self.recorder.record(
                deployment,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {direction} {name} from {previous} to {replicas} pods (template "
                f"{pod_hash}; the sandbox keeps no ReplicaSet objects)",
            )
        self._last_replicas[uid] = replicas

        ready = sum(1 for p in new + old if pod_is_ready(p))
        updated = len(new)
        current = len(new) + len(old)

        def write_status(obj: JSON) -> None:
            status = obj.setdefault("status", {})
            conditions = list(status.get("conditions") or [])
            minimum = replicas - unavailable
            _set_condition(
                conditions,
                "Available",
                ready >= minimum,
                "MinimumReplicasAvailable" if ready >= minimum else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if ready >= minimum
                else "Deployment does not have minimum availability.",
            )
            complete = updated == replicas and not old and ready >= replicas
            _set_condition(
                conditions,
                "Progressing",
                True,
                "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                f'Deployment "{name}" has successfully progressed (pods of template '
                f"{pod_hash}; no ReplicaSet objects in the sandbox)."
                if complete
                else f'Deployment "{name}" is progressing to template {pod_hash}.',
            )
            status.update(
                observedGeneration=int(obj["metadata"].get("generation", 1)),
                replicas=current,
                updatedReplicas=updated,
                readyReplicas=ready,
                availableReplicas=ready,
                unavailableReplicas=max(0, replicas - ready),
                conditions=conditions,
            )
            for key in (
                "readyReplicas",
                "availableReplicas",
                "unavailableReplicas",
                "updatedReplicas",
            ):
                if status[key] == 0:
                    del status[key]

        self.store.mutate(DEPLOYMENTS, namespace, name, write_status)

    def _delete(self, deployment: JSON, pod: JSON) -> None:
        with contextlib.suppress(ApiError):
            begin_pod_deletion(
                self.store, pod["metadata"]["namespace"], pod["metadata"]["name"], None
            )
            self.pod_recorder.record(
                deployment, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}"
            )


_PROBE_DEFAULTS = {
    "timeoutSeconds": 1,
    "periodSeconds": 10,
    "successThreshold": 1,
    "failureThreshold": 3,
}


def _default_container(container: JSON) -> None:
    """Fill in what the API server's defaulting adds, so `kubectl describe` shows real values
    (a probe's successThreshold 1, not 0); the kubelet reads the same defaults either way."""
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    image = str(container.get("image", ""))
    tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
    container.setdefault("imagePullPolicy", "Always" if tag in ("", "latest") else "IfNotPresent")
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(kind)
        if probe is None:
            continue
        for key, value in _PROBE_DEFAULTS.items():
            probe.setdefault(key, value)
        if "httpGet" in probe:
            probe["httpGet"].setdefault("path", "/")
            probe["httpGet"].setdefault("scheme", "HTTP")


def _deletion_rank(pod: JSON) -> tuple[int, int, int, float]:
    """Which pod goes first when scaling down: pending, then not ready, then the newest."""
    status = pod.get("status") or {}
    running = 1 if status.get("phase") == "Running" else 0
    ready = 1 if pod_is_ready(pod) else 0
    restarts = sum(int(s.get("restartCount", 0)) for s in status.get("containerStatuses") or [])
    created = pod["metadata"].get("creationTimestamp")
    newest_first = -parse_timestamp(created).timestamp() if created else -math.inf
    return (running, ready, -restarts, newest_first)


class DisruptionController(Reconciler):
    """Keeps PodDisruptionBudget status and Service endpoints in step with the pods."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, (PDBS, PODS, SERVICES), "disruption-controller")

    def reconcile(self) -> None:
        pdbs = self.store.list(PDBS)
        services = self.store.list(SERVICES)
        for pdb in pdbs:
            self.failures.run(pdb, self._budget)
        for service in services:
            self.failures.run(service, self._endpoints)
        self.failures.forget_except({object_key(o) for o in pdbs + services})

    def _budget(self, pdb: JSON) -> None:
        numbers = pdb_numbers(self.store, pdb)

        def write(obj: JSON) -> None:
            status = obj.setdefault("status", {})
            conditions = [
                dict(c)
                for c in status.get("conditions") or []
                if c.get("type") == "DisruptionAllowed"
            ]
            allowed = numbers["disruptionsAllowed"] > 0
            _set_condition(
                conditions,
                "DisruptionAllowed",
                allowed,
                "SufficientPods" if allowed else "InsufficientPods",
                "",
            )
            for condition in conditions:
                condition.pop("lastUpdateTime", None)
                condition["observedGeneration"] = int(obj["metadata"].get("generation", 1))
            status.update(numbers)
            status["observedGeneration"] = int(obj["metadata"].get("generation", 1))
            status["conditions"] = conditions

        self.store.mutate(PDBS, pdb["metadata"]["namespace"], pdb["metadata"]["name"], write)

    def _endpoints(self, service: JSON) -> None:
        namespace = service["metadata"]["namespace"]
        name = service["metadata"]["name"]
        if not (service.get("spec") or {}).get("selector"):
            return
        service_ports = (service.get("spec") or {}).get("ports") or []
        subsets = []
        for pod in service_pods(self.store, service):
            # As on a cluster, an endpoint's port is the pod's port the targetPort names.
            ports = [
                {
                    "name": p.get("name", ""),
                    "port": _target_port(pod, p.get("targetPort", p.get("port"))),
                    "protocol": "TCP",
                }
                for p in service_ports
            ]
            address = {
                "ip": "127.0.0.1",
                "nodeName": (pod.get("spec") or {}).get("nodeName", "sandbox"),
                "targetRef": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            }
            key = "addresses" if pod_is_healthy(pod) else "notReadyAddresses"
            subsets.append({key: [address], "ports": ports})
        body: JSON = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": service["metadata"].get("labels", {}),
            },
            "subsets": subsets,
        }
        if self.store.find(ENDPOINTS, namespace, name) is None:
            self.store.create(ENDPOINTS, body, namespace)
        else:
            self.store.update(ENDPOINTS, body)


def _target_port(pod: JSON, target: int | str | None) -> int | None:
    """A Service's targetPort on one pod: a number, or the number of the named container port."""
    if not isinstance(target, str):
        return target
    if target.isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for declared in container.get("ports") or []:
            if declared.get("name") == target:
                return int(declared["containerPort"])
    return None


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
        self.sampler = ProcessTreeSampler()
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

    def __init__(self, store: Store, metrics: MetricsCollector, sync_seconds: float) -> None:
        self.store = store
        self.metrics = metrics
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
        )
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
