"""The ReplicaSet controller: keeps `spec.replicas` active pods of each ReplicaSet's template,
as Kubernetes' `pkg/controller/replicaset/replica_set.go` does.

- Pods are named `<replicaset>-<5 chars>` (`generateName`), carry the template's labels (so the
  `pod-template-hash` a Deployment put there) and one controller reference to the ReplicaSet.
- Only active pods count: not terminating and not `Failed` or `Succeeded` (`FilterActivePods`).
  A pod the kubelet left `Failed` (`Evicted`, say) is replaced and stays until deleted, as on a
  cluster, where only the pod garbage collector's threshold removes it.
- A surplus goes least useful first: pending, then not ready, then most restarts, then newest
  (`getPodsToDelete`'s ranking, simplified).
- An orphan pod that matches the selector is adopted (the controller reference manager).
- Status: `replicas` (active), `fullyLabeledReplicas`, `readyReplicas`, `availableReplicas`
  (Ready for `minReadySeconds`) and `observedGeneration`; zero counts are left out, as the API
  server's JSON omits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math

from sandbox.controllers.isolation import object_key
from sandbox.controllers.reconciler import Reconciler
from sandbox.store.disruption import begin_pod_deletion, pod_is_ready
from sandbox.store.events import EventRecorder
from sandbox.store.ownership import adopt, controller_reference, controller_uid, is_controlled_by
from sandbox.store.resources import REPLICASETS
from sandbox.store.store import (
    JSON,
    PODS,
    ApiError,
    Store,
    labels_match,
    now,
    parse_timestamp,
    random_suffix,
    selector_from_label_selector,
)


def pod_is_active(pod: JSON) -> bool:
    """Counted as a replica: not terminating, and not Failed or Succeeded."""
    phase = (pod.get("status") or {}).get("phase")
    return not pod["metadata"].get("deletionTimestamp") and phase not in ("Failed", "Succeeded")


def available_in(pod: JSON, min_ready_seconds: int) -> float | None:
    """Seconds until a Ready pod counts as available (0: it does now); None if not Ready."""
    if not pod_is_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return 0.0
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("lastTransitionTime"):
            since = parse_timestamp(condition["lastTransitionTime"])
            left = min_ready_seconds - (now() - since).total_seconds()
            return max(0.0, left)
    return 0.0


class ReplicaSetController(Reconciler):
    """Keeps each ReplicaSet's active pods at `spec.replicas`, and its status."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, (REPLICASETS, PODS), "replicaset-controller")
        self.recorder = EventRecorder(store, "replicaset-controller")

    def reconcile(self) -> None:
        replicasets = self.store.list(REPLICASETS)
        active: dict[str | None, int] = {}
        for pod in self.store.list(PODS):
            if pod_is_active(pod):
                uid = controller_uid(pod)
                active[uid] = active.get(uid, 0) + 1
        # Scale-downs before scale-ups, so one pass never has more pods than the specs allow
        # (a rolling update's surge holds at every moment, not only between passes).
        replicasets.sort(
            key=lambda rs: (
                active.get(rs["metadata"]["uid"], 0) <= int(rs["spec"].get("replicas", 1))
            )
        )
        for replicaset in replicasets:
            self.failures.run(replicaset, self._reconcile)
        self.failures.forget_except({object_key(rs) for rs in replicasets})

    def _reconcile(self, replicaset: JSON) -> None:
        meta, spec = replicaset["metadata"], replicaset.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        namespace = meta["namespace"]
        selector = selector_from_label_selector(spec.get("selector"))
        owned: list[JSON] = []
        for pod in self.store.list(PODS, namespace):
            if is_controlled_by(pod, replicaset):
                owned.append(pod)
            elif (
                selector
                and controller_uid(pod) is None
                and pod_is_active(pod)
                and labels_match(selector, pod["metadata"].get("labels"))
            ):
                adopted = adopt(self.store, PODS, pod, replicaset)
                if adopted is not None:
                    owned.append(adopted)
        active = [p for p in owned if pod_is_active(p)]
        wanted = int(spec.get("replicas", 1))
        if len(active) < wanted:
            for _ in range(wanted - len(active)):
                active.append(self._create_pod(replicaset))
        elif len(active) > wanted:
            for pod in sorted(active, key=_deletion_rank)[: len(active) - wanted]:
                self._delete(replicaset, pod)
                active.remove(pod)
        self._write_status(replicaset, active)

    def _create_pod(self, replicaset: JSON) -> JSON:
        name = replicaset["metadata"]["name"]
        for _ in range(10):
            try:
                pod = self.store.create(
                    PODS, new_pod(replicaset), replicaset["metadata"]["namespace"]
                )
            except ApiError as error:
                if error.code != 409:  # a name taken: draw another suffix
                    raise
                continue
            self.recorder.record(
                replicaset, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}"
            )
            return pod
        raise RuntimeError(f"no free pod name for {name}")

    def _delete(self, replicaset: JSON, pod: JSON) -> None:
        with contextlib.suppress(ApiError):
            begin_pod_deletion(
                self.store, pod["metadata"]["namespace"], pod["metadata"]["name"], None
            )
            self.recorder.record(
                replicaset, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}"
            )

    def _write_status(self, replicaset: JSON, active: list[JSON]) -> None:
        spec = replicaset.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        waits = [available_in(p, min_ready) for p in active]
        later = [w for w in waits if w]
        if later:
            # A pod becomes available when minReadySeconds have passed: look again then.
            asyncio.get_running_loop().call_later(min(later) + 0.05, self.wake)
        counts = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1
                for p in active
                if all(
                    p["metadata"].get("labels", {}).get(k) == v for k, v in template_labels.items()
                )
            ),
            "readyReplicas": sum(1 for p in active if pod_is_ready(p)),
            "availableReplicas": sum(1 for w in waits if w == 0.0),
        }

        def write(obj: JSON) -> None:
            status = {k: v for k, v in counts.items() if v or k == "replicas"}
            status["observedGeneration"] = int(obj["metadata"].get("generation", 1))
            obj["status"] = status

        meta = replicaset["metadata"]
        with contextlib.suppress(ApiError):  # deleted meanwhile
            self.store.mutate(REPLICASETS, meta["namespace"], meta["name"], write)


def new_pod(replicaset: JSON) -> JSON:
    """A pod of the ReplicaSet's template, with the API server's defaults filled in."""
    template = (replicaset.get("spec") or {}).get("template") or {}
    template_meta = template.get("metadata") or {}
    spec = json.loads(json.dumps(template.get("spec") or {}))
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        _default_container(container)
    prefix = f"{replicaset['metadata']['name']}-"
    return {
        "metadata": {
            "name": prefix + random_suffix(),
            "generateName": prefix,
            "namespace": replicaset["metadata"]["namespace"],
            "labels": dict(template_meta.get("labels") or {}),
            "annotations": dict(template_meta.get("annotations") or {}),
            "ownerReferences": [controller_reference(replicaset)],
        },
        "spec": spec,
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }


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
