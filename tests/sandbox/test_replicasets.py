"""Issue 14 item 2: Deployments own ReplicaSets, ReplicaSets own pods, and a rolling update keeps
within `maxSurge` and `maxUnavailable` at every write (real store, real controllers).

The only stand-in is `StubKubelet` below: it does to pod status what the sandbox's kubelet does
(`sandbox/kubelet/pod_worker.py`: phase Running, then the Ready condition with its
`lastTransitionTime`) without starting processes, and removes a terminating pod as the kubelet
does once its containers stopped. Pods labelled `stuck: "true"` never turn Ready, as a pod whose
readiness probe never passes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sandbox.controllers import deployment_util as du
from sandbox.controllers.deployments import DeploymentController
from sandbox.controllers.replicasets import ReplicaSetController, pod_is_active
from sandbox.store.disruption import pod_is_ready
from sandbox.store.ownership import delete_dependents
from sandbox.store.resources import REPLICASETS
from sandbox.store.store import (
    DEPLOYMENTS,
    EVENTS,
    JSON,
    NAMESPACES,
    PODS,
    ApiError,
    ResourceType,
    Store,
    timestamp,
)

NS = "kube-llm"


class CheckedStore(Store):
    """The real store, calling `check` after every write (the state is consistent then: the
    controllers write synchronously, one object at a time)."""

    def __init__(self) -> None:
        super().__init__()
        self.checks: list[Callable[[], None]] = []

    def _emit(
        self, rt: ResourceType, event_type: str, obj: JSON, previous: JSON | None = None
    ) -> None:
        super()._emit(rt, event_type, obj, previous)
        for check in self.checks:
            check()


class StubKubelet:
    """Starts pods (Running, then Ready after `ready_after` s) and removes terminating ones."""

    def __init__(self, store: Store, ready_after: float = 0.05) -> None:
        self.store = store
        self.ready_after = ready_after
        self._pending: set[str] = set()

    async def run(self) -> None:
        _, queue = self.store.subscribe(PODS)
        for pod in self.store.list(PODS):  # the pods made before it started watching
            self._take(pod)
        while True:
            event = await queue.get()
            if event is not None and event.type != "DELETED":
                self._take(event.obj)

    def _take(self, pod: JSON) -> None:
        name = pod["metadata"]["name"]
        if name in self._pending:
            return
        if pod["metadata"].get("deletionTimestamp"):
            self._pending.add(name)
            asyncio.get_running_loop().call_later(0.05, self._remove, name)
        elif (pod.get("status") or {}).get("phase") == "Pending":
            self._pending.add(name)
            asyncio.get_running_loop().call_later(self.ready_after, self._start, name)

    def _remove(self, name: str) -> None:
        self._pending.discard(name)
        with contextlib.suppress(ApiError):
            self.store.delete(PODS, NS, name)

    def _start(self, name: str) -> None:
        self._pending.discard(name)
        pod = self.store.find(PODS, NS, name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        ready = (pod["metadata"].get("labels") or {}).get("stuck") != "true"

        def start(obj: JSON) -> None:
            obj["status"] = {
                "phase": "Running",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "lastTransitionTime": timestamp(),
                    }
                ],
            }

        with contextlib.suppress(ApiError):
            self.store.mutate(PODS, NS, name, start)


def deployment(replicas: int = 3, strategy: JSON | None = None, **spec: Any) -> JSON:
    labels = {"app": "web"}
    return {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": strategy or {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "busybox:1"}]},
            },
            **spec,
        },
    }


@pytest.fixture
async def cluster() -> AsyncIterator[CheckedStore]:
    store = CheckedStore()
    store.create(NAMESPACES, {"metadata": {"name": NS}})
    tasks = [
        asyncio.create_task(DeploymentController(store).run()),
        asyncio.create_task(ReplicaSetController(store).run()),
        asyncio.create_task(StubKubelet(store).run()),
    ]
    yield store
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def until(what: str, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    for _ in range(int(timeout / 0.02)):
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def rollout_done(store: Store) -> bool:
    """`kubectl rollout status`'s rule on the stored Deployment."""
    d = store.get(DEPLOYMENTS, NS, "web")
    status = d.get("status") or {}
    return (
        d["metadata"]["generation"] <= status.get("observedGeneration", 0)
        and status.get("updatedReplicas", 0) == d["spec"]["replicas"]
        and status.get("replicas", 0) == status.get("updatedReplicas", 0)
        and status.get("availableReplicas", 0) == status.get("updatedReplicas", 0)
    )


def condition(store: Store, kind: str) -> JSON:
    status = store.get(DEPLOYMENTS, NS, "web").get("status") or {}
    found = du.condition(status, kind)
    assert found is not None, status
    return found


def change_template(store: Store, image: str) -> None:
    def change(obj: JSON) -> None:
        obj["spec"]["template"]["spec"]["containers"][0]["image"] = image

    store.mutate(DEPLOYMENTS, NS, "web", change)


async def test_the_ownership_chain_and_a_complete_status(cluster: CheckedStore) -> None:
    store = cluster
    store.create(DEPLOYMENTS, deployment(3), NS)
    await until("the rollout", lambda: rollout_done(store))
    d = store.get(DEPLOYMENTS, NS, "web")
    [rs] = store.list(REPLICASETS, NS)
    pod_hash = rs["metadata"]["labels"][du.HASH_LABEL]
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": d["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", du.HASH_LABEL: pod_hash}
    assert rs["spec"]["template"]["metadata"]["labels"][du.HASH_LABEL] == pod_hash
    assert rs["metadata"]["annotations"] == {
        du.REVISION: "1",
        du.DESIRED_REPLICAS: "3",
        du.MAX_REPLICAS: "4",  # 25 % surge of 3, rounded up
    }
    assert d["metadata"]["annotations"][du.REVISION] == "1"
    pods = store.list(PODS, NS)
    assert len(pods) == 3
    for pod in pods:
        [ref] = pod["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"]) == (
            "ReplicaSet",
            rs["metadata"]["name"],
            rs["metadata"]["uid"],
        )
        assert ref["controller"] is True
        assert ref["blockOwnerDeletion"] is True
        assert pod["metadata"]["name"].startswith(f"web-{pod_hash}-")
        assert pod["metadata"]["labels"][du.HASH_LABEL] == pod_hash
    assert rs["status"] == {
        "replicas": 3,
        "fullyLabeledReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "observedGeneration": 1,
    }
    status = d["status"]
    assert {k: status.get(k) for k in ("replicas", "updatedReplicas", "readyReplicas")} == {
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 3,
    }
    assert status["observedGeneration"] == 1
    assert "unavailableReplicas" not in status
    available = condition(store, "Available")
    assert (available["status"], available["reason"]) == ("True", "MinimumReplicasAvailable")
    progressing = condition(store, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", du.NEW_RS_AVAILABLE)
    assert progressing["message"] == f'ReplicaSet "web-{pod_hash}" has successfully progressed.'
    reasons = {(e["involvedObject"]["kind"], e["reason"]) for e in store.list(EVENTS, NS)}
    assert ("Deployment", "ScalingReplicaSet") in reasons
    assert ("ReplicaSet", "SuccessfulCreate") in reasons


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "most", "fewest"),
    [
        (4, 1, 0, 5, 4),
        (4, 0, 1, 4, 3),
        (4, "50%", "25%", 6, 3),
        (3, "25%", "25%", 4, 3),  # 25 % of 3: surge rounds up to 1, unavailability down to 0
        (5, 2, 2, 7, 3),
    ],
)
async def test_a_rolling_update_keeps_within_its_bounds_at_every_write(
    cluster: CheckedStore, replicas: int, surge: Any, unavailable: Any, most: int, fewest: int
) -> None:
    store = cluster
    strategy = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
    }
    store.create(DEPLOYMENTS, deployment(replicas, strategy), NS)
    await until("the first rollout", lambda: rollout_done(store))
    seen = {"most": 0, "fewest": replicas, "writes": 0}
    broken: list[str] = []

    def bounds() -> None:
        # Noted, not raised: a raise here would land in the writing controller, which survives it.
        replicasets = store.list(REPLICASETS, NS)
        pods = store.list(PODS, NS)
        planned = sum(int(rs["spec"]["replicas"]) for rs in replicasets)
        active = sum(1 for p in pods if pod_is_active(p))
        serving = sum(1 for p in pods if pod_is_ready(p) and pod_is_active(p))
        if planned > most:
            broken.append(f"ReplicaSets sized for {planned} pods, more than {most}")
        if active > most:
            broken.append(f"{active} pods at once, more than {most}")
        if serving < fewest:
            broken.append(f"only {serving} pods available, fewer than {fewest}")
        seen["most"] = max(seen["most"], active)
        seen["fewest"] = min(seen["fewest"], serving)
        seen["writes"] += 1

    store.checks.append(bounds)
    change_template(store, "busybox:2")
    await until("the rolling update", lambda: rollout_done(store))
    store.checks.clear()
    assert broken == []
    # The update used what its strategy allowed, never more.
    assert seen["writes"] > 10
    assert seen["most"] == most or seen["fewest"] == fewest
    old, new = sorted(store.list(REPLICASETS, NS), key=du.revision)
    assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (0, replicas)
    assert (du.revision(old), du.revision(new)) == (1, 2)
    assert store.get(DEPLOYMENTS, NS, "web")["metadata"]["annotations"][du.REVISION] == "2"
    assert all(  # old pods may still be terminating, as on a cluster
        p["metadata"]["labels"][du.HASH_LABEL] == new["metadata"]["labels"][du.HASH_LABEL]
        for p in store.list(PODS, NS)
        if pod_is_active(p)
    )


async def test_recreate_stops_every_old_pod_before_a_new_one(cluster: CheckedStore) -> None:
    store = cluster
    store.create(DEPLOYMENTS, deployment(3, {"type": "Recreate"}), NS)
    await until("the first rollout", lambda: rollout_done(store))
    first = store.list(REPLICASETS, NS)[0]["metadata"]["labels"][du.HASH_LABEL]

    mixed: list[set[str]] = []

    def never_mixed() -> None:
        hashes = {p["metadata"]["labels"][du.HASH_LABEL] for p in store.list(PODS, NS)}
        if len(hashes) > 1:
            mixed.append(hashes)

    store.checks.append(never_mixed)
    change_template(store, "busybox:2")
    await until("the update", lambda: rollout_done(store))
    store.checks.clear()
    assert mixed == []
    hashes = {p["metadata"]["labels"][du.HASH_LABEL] for p in store.list(PODS, NS)}
    assert len(hashes) == 1
    assert first not in hashes


async def test_an_evicted_pod_is_replaced_and_not_counted(cluster: CheckedStore) -> None:
    store = cluster
    store.create(DEPLOYMENTS, deployment(2), NS)
    await until("the rollout", lambda: rollout_done(store))
    victim = store.list(PODS, NS)[0]["metadata"]["name"]

    def evict(obj: JSON) -> None:  # what the kubelet writes under memory pressure
        obj["status"] = {
            "phase": "Failed",
            "reason": "Evicted",
            "message": "The node was low on resource: memory.",
        }

    store.mutate(PODS, NS, victim, evict)
    await until(
        "a replacement",
        lambda: sum(1 for p in store.list(PODS, NS) if pod_is_ready(p) and pod_is_active(p)) == 2,
    )
    await until("the status", lambda: rollout_done(store))
    assert store.find(PODS, NS, victim) is not None  # left, as a kubelet leaves it
    [rs] = store.list(REPLICASETS, NS)
    assert rs["status"]["replicas"] == 2
    assert store.get(DEPLOYMENTS, NS, "web")["status"]["replicas"] == 2


async def test_a_stuck_rollout_reports_progress_deadline_exceeded(cluster: CheckedStore) -> None:
    store = cluster
    store.create(DEPLOYMENTS, deployment(2, progressDeadlineSeconds=2), NS)
    await until("the rollout", lambda: rollout_done(store))

    def break_it(obj: JSON) -> None:
        obj["spec"]["template"]["metadata"]["labels"]["stuck"] = "true"

    store.mutate(DEPLOYMENTS, NS, "web", break_it)
    await until(
        "ProgressDeadlineExceeded",
        lambda: condition(store, "Progressing")["reason"] == du.TIMED_OUT,
        timeout=8,
    )
    progressing = condition(store, "Progressing")
    new = max(store.list(REPLICASETS, NS), key=du.revision)
    assert progressing["status"] == "False"
    assert progressing["message"] == (
        f'ReplicaSet "{new["metadata"]["name"]}" has timed out progressing.'
    )
    assert not rollout_done(store)
    # The old pods still serve: maxUnavailable 25 % of 2 is 0.
    assert sum(1 for p in store.list(PODS, NS) if pod_is_ready(p) and pod_is_active(p)) == 2


async def test_a_scale_resizes_at_once_and_undo_reuses_the_old_replicaset(
    cluster: CheckedStore,
) -> None:
    store = cluster
    store.create(DEPLOYMENTS, deployment(2), NS)
    await until("the rollout", lambda: rollout_done(store))

    def scale(obj: JSON) -> None:  # what the HPA's PATCH of /scale writes
        obj["spec"]["replicas"] = 5

    store.mutate(DEPLOYMENTS, NS, "web", scale)
    [rs] = await until(
        "the resize", lambda: [r for r in store.list(REPLICASETS, NS) if r["spec"]["replicas"] == 5]
    )
    assert rs["metadata"]["annotations"][du.DESIRED_REPLICAS] == "5"
    messages = [e["message"] for e in store.list(EVENTS, NS) if e["reason"] == "ScalingReplicaSet"]
    assert f"Scaled up replica set {rs['metadata']['name']} from 2 to 5" in messages
    await until("the rollout", lambda: rollout_done(store))
    change_template(store, "busybox:2")
    await until("revision 2", lambda: rollout_done(store) and len(store.list(REPLICASETS, NS)) == 2)
    change_template(store, "busybox:1")  # what `kubectl rollout undo` writes back
    await until(
        "revision 3",
        lambda: (
            rollout_done(store)
            and du.revision(store.get(REPLICASETS, NS, rs["metadata"]["name"])) == 3
        ),
    )
    first = store.get(REPLICASETS, NS, rs["metadata"]["name"])
    assert first["metadata"]["annotations"][du.REVISION_HISTORY] == "1"
    assert first["spec"]["replicas"] == 5
    assert len(store.list(REPLICASETS, NS)) == 2


async def test_deleting_cascades_or_orphans(cluster: CheckedStore) -> None:
    store = cluster
    store.create(DEPLOYMENTS, deployment(2), NS)
    await until("the rollout", lambda: rollout_done(store))
    # Orphan: the ReplicaSet and pods stay, without the reference; a new Deployment adopts them.
    delete_dependents(store, store.delete(DEPLOYMENTS, NS, "web"), "Orphan")
    [rs] = store.list(REPLICASETS, NS)
    assert "ownerReferences" not in rs["metadata"]
    pods = {p["metadata"]["name"] for p in store.list(PODS, NS)}
    assert len(pods) == 2
    store.create(DEPLOYMENTS, deployment(2), NS)
    await until(
        "the adoption", lambda: store.list(REPLICASETS, NS)[0]["metadata"].get("ownerReferences")
    )
    await until("the rollout", lambda: rollout_done(store))
    assert {p["metadata"]["name"] for p in store.list(PODS, NS)} == pods
    # Background (kubectl delete's default): the ReplicaSet goes, and its pods after it.
    delete_dependents(store, store.delete(DEPLOYMENTS, NS, "web"), "Background")
    assert store.list(REPLICASETS, NS) == []
    await until("the pods gone", lambda: not store.list(PODS, NS))


async def test_a_scale_mid_rollout_is_shared_in_proportion(cluster: CheckedStore) -> None:
    """`scale`/`getProportion`: each active ReplicaSet grows by its share of the new size."""
    store = cluster
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    store.create(DEPLOYMENTS, deployment(4, strategy), NS)
    await until("the rollout", lambda: rollout_done(store))

    def break_it(obj: JSON) -> None:  # the new pods never turn Ready: the rollout stays mid-way
        obj["spec"]["template"]["metadata"]["labels"]["stuck"] = "true"

    store.mutate(DEPLOYMENTS, NS, "web", break_it)

    def sizes() -> tuple[int, ...]:
        by_revision = sorted(store.list(REPLICASETS, NS), key=du.revision)
        return tuple(int(rs["spec"]["replicas"]) for rs in by_revision)

    await until("the surge pod", lambda: sizes() == (4, 1))
    await asyncio.sleep(0.3)  # the new pod started, and stays unready

    def scale(obj: JSON) -> None:
        obj["spec"]["replicas"] = 8

    store.mutate(DEPLOYMENTS, NS, "web", scale)
    # 8 + 1 surge = 9 pods: the old ReplicaSet (sized for 5) gets round(4 * 9 / 5) = 7, the new
    # one round(1 * 9 / 5) = 2.
    await until("the proportional scale", lambda: sizes() == (7, 2), timeout=3)
    await asyncio.sleep(0.3)
    assert sizes() == (7, 2)
    for rs in store.list(REPLICASETS, NS):
        assert rs["metadata"]["annotations"][du.DESIRED_REPLICAS] == "8"
        assert rs["metadata"]["annotations"][du.MAX_REPLICAS] == "9"
