"""Issue 9, item 6: one bad object never stops a controller (real store, real controllers).

The objects here are written into the store directly, past the API server's validation, as an
object stored before a rule existed (or one no rule foresaw) would be.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from sandbox.controllers.deployments import DeploymentController
from sandbox.controllers.isolation import ObjectFailures
from sandbox.controllers.podautoscaler import HpaController, MetricsCollector
from sandbox.controllers.replicasets import ReplicaSetController
from sandbox.store.store import DEPLOYMENTS, EVENTS, HPAS, NAMESPACES, PODS, Store

NS = "kube-llm"


def deployment(name: str, template: Any = None) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": template
            if template is not None
            else {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "busybox:1"}]},
            },
        },
    }


def hpa(name: str, target: str, max_replicas: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": 1,
        "metrics": [],
    }
    if max_replicas is not None:
        spec["maxReplicas"] = max_replicas
    return {"metadata": {"name": name}, "spec": spec}


def a_store() -> Store:
    store = Store()
    store.create(NAMESPACES, {"metadata": {"name": NS}})
    return store


def warnings_about(store: Store, name: str) -> list[str]:
    return [
        event["message"]
        for event in store.list(EVENTS, NS)
        if event["involvedObject"]["name"] == name and event["type"] == "Warning"
    ]


def test_an_hpa_without_max_replicas_fails_alone() -> None:
    store = a_store()
    store.create(DEPLOYMENTS, deployment("web"), NS)
    store.create(HPAS, hpa("broken", "web", None), NS)
    store.create(HPAS, hpa("fine", "web", 3), NS)
    metrics = MetricsCollector(store, dict, 1.0)
    controller = HpaController(store, metrics, 15)
    controller.sync_all()  # must not raise
    assert store.get(HPAS, NS, "fine").get("status", {}).get("conditions")
    assert any("KeyError" in message for message in warnings_about(store, "broken"))
    assert controller.failures.failing() == {store.get(HPAS, NS, "broken")["metadata"]["uid"]}


async def test_the_hpa_controller_keeps_running_past_a_bad_hpa() -> None:
    store = a_store()
    store.create(DEPLOYMENTS, deployment("web"), NS)
    store.create(HPAS, hpa("broken", "web", None), NS)
    controller = HpaController(store, MetricsCollector(store, dict, 1.0), 0.05)
    task = asyncio.create_task(controller.run())
    try:
        await asyncio.sleep(0.3)
        assert not task.done(), task
        store.create(HPAS, hpa("later", "web", 2), NS)
        for _ in range(50):
            if store.get(HPAS, NS, "later").get("status"):
                break
            await asyncio.sleep(0.05)
        assert store.get(HPAS, NS, "later").get("status")
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_deployment_controller_keeps_running_past_a_bad_deployment() -> None:
    store = a_store()
    store.create(DEPLOYMENTS, deployment("broken", template="not a template"), NS)
    controller = DeploymentController(store)
    # The Deployment's ReplicaSet makes the pods, as on a cluster.
    replicasets = asyncio.create_task(ReplicaSetController(store).run())
    task = asyncio.create_task(controller.run())
    try:
        store.create(DEPLOYMENTS, deployment("web"), NS)
        for _ in range(50):
            if store.list(PODS, NS):
                break
            await asyncio.sleep(0.05)
        names = [pod["metadata"]["name"] for pod in store.list(PODS, NS)]
        assert len(names) == 1
        assert names[0].startswith("web-")
        assert not task.done()
        assert warnings_about(store, "broken")
    finally:
        task.cancel()
        replicasets.cancel()
        await asyncio.gather(task, replicasets, return_exceptions=True)


def test_failures_back_off_and_clear() -> None:
    now = [0.0]
    failures = ObjectFailures("test", None, clock=lambda: now[0])
    obj = {"metadata": {"uid": "u1", "name": "x"}}
    calls: list[float] = []

    def broken(_: Any) -> None:
        calls.append(now[0])
        raise ValueError("bad")

    assert failures.run(obj, broken) is False
    assert failures.next_retry_in() == pytest.approx(1.0)
    assert failures.run(obj, broken) is False  # still backing off: not called
    now[0] = 1.0
    failures.run(obj, broken)
    assert failures.next_retry_in() == pytest.approx(2.0)
    now[0] = 3.0
    assert failures.run(copy.deepcopy(obj), lambda _: None) is True
    assert calls == [0.0, 1.0]
    assert failures.failing() == set()
    assert failures.next_retry_in() is None
