"""The Deployment controller: keeps `spec.replicas` pods of the current template, owned by the
Deployment (pods named `<deployment>-<template hash>-<5 chars>`; the sandbox keeps no
ReplicaSet objects). A terminating or failed pod no longer counts, so a deleted pod is
replaced at once. A template change rolls the pods with `maxSurge`/`maxUnavailable`."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math

from sandbox.controllers.isolation import object_key
from sandbox.controllers.reconciler import Reconciler, set_condition
from sandbox.store.disruption import begin_pod_deletion, pod_is_ready, scaled_int_or_percent
from sandbox.store.events import EventRecorder
from sandbox.store.store import (
    DEPLOYMENTS,
    JSON,
    PODS,
    ApiError,
    Store,
    parse_timestamp,
    random_suffix,
)

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
            set_condition(
                conditions,
                "Available",
                ready >= minimum,
                "MinimumReplicasAvailable" if ready >= minimum else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if ready >= minimum
                else "Deployment does not have minimum availability.",
            )
            complete = updated == replicas and not old and ready >= replicas
            set_condition(
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
