"""Contract tests of shapes: the adapter against kmock, an independent Kubernetes API emulator.

The objects (tests/tui/k8s_objects.py) are written as a real API server returns them (a
Deployment with its defaults, an autoscaling/v2 HPA with status, pods in the states kubectl
names, Events, PodMetrics). kmock serves them over real HTTP to the real `kubernetes.aio`
client; the adapter must turn them into the right frozen values. kmock ignores resourceVersion
on watches and replays everything as ADDED, so resume semantics are tested against the sandbox
instead (test_k8s_sandbox.py).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml

from tests.tui.k8s_helpers import Recorder, watching
from tests.tui.k8s_objects import (
    CRASHING,
    DEPLOYMENT,
    EVENTS,
    HPA,
    INITIALIZING,
    NS,
    RUNNING,
    TERMINATING,
    event,
    pod_metrics,
)
from tui.cluster.kubeconfig import ClusterTarget, load_target
from tui.cluster.watch import Backoff
from tui.cluster.watcher import ClusterWatcher
from tui.core.model import Connection


@pytest.fixture
def emulator(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    """kmock serving the Deployment, its HPA, four pods and some events."""
    kmock.objects["apps/v1/deployments", NS, "llm-backend"] = DEPLOYMENT
    kmock.objects["autoscaling/v2/horizontalpodautoscalers", NS, "llm-backend"] = HPA
    for pod in (RUNNING, INITIALIZING, CRASHING, TERMINATING):
        kmock.objects["v1/pods", NS, pod["metadata"]["name"]] = pod
    for item in EVENTS:
        kmock.objects["v1/events", NS, item["metadata"]["name"]] = item
    return kmock


def _target(tmp_path: Path, server: str, namespace: str | None = None) -> ClusterTarget:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "mock", "cluster": {"server": server}}],
        "users": [{"name": "mock", "user": {"token": "kmock-token"}}],
        "contexts": [{"name": "mock", "context": {"cluster": "mock", "user": "mock"}}],
        "current-context": "mock",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return load_target(path, None, namespace)


async def _watching(target: ClusterTarget) -> tuple[ClusterWatcher, Recorder]:
    return watching(target, metrics_retry=0.5)


async def test_objects_become_the_right_values(
    emulator: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    watcher, seen = await _watching(_target(tmp_path, str(emulator.url)))
    task = asyncio.create_task(watcher.run())
    try:
        snapshot = await seen.until(
            lambda s: len(s.pods) == 4 and s.hpa is not None and s.deployment is not None
        )
        await seen.events_at_least(3)
        await asyncio.sleep(0.3)  # an event that should have been filtered out would be here
    finally:
        task.cancel()
        await watcher.close()

    assert snapshot.connection is Connection.LIVE
    deployment = snapshot.deployment
    assert deployment is not None
    assert deployment.selector == ("app.kubernetes.io/name=llm-backend,tier in (chat,web),!canary")
    assert (deployment.replicas, deployment.ready_replicas, deployment.available_replicas) == (
        3,
        2,
        2,
    )

    hpa = snapshot.hpa
    assert hpa is not None
    assert (hpa.min_replicas, hpa.max_replicas) == (2, 6)
    assert (hpa.current_replicas, hpa.desired_replicas) == (3, 4)
    assert (hpa.scale_up_window_seconds, hpa.scale_down_window_seconds) == (15, 600)
    cpu, memory, inflight = hpa.metrics
    assert (cpu.source, cpu.name, cpu.container) == ("ContainerResource", "cpu", "engine")
    assert (cpu.target_utilization, cpu.current_utilization) == (70, 187)
    assert (memory.container, memory.target_utilization, memory.current_utilization) == (
        "backend",
        80,
        41,
    )
    # A metric the status does not report yet has a target and no current value.
    assert (inflight.source, inflight.name, inflight.target_value) == (
        "Pods",
        "inflight_requests",
        "2",
    )
    assert inflight.current_value is None
    assert inflight.current_utilization is None
    assert [c.type for c in hpa.conditions] == ["AbleToScale", "ScalingActive", "ScalingLimited"]
    assert hpa.conditions[2].status == "False"
    assert hpa.conditions[2].reason == "DesiredWithinRange"
    assert hpa.last_scale_at == pytest.approx(1768035900.0)

    by_name = {p.name: p for p in snapshot.pods}
    running = by_name[RUNNING["metadata"]["name"]]
    assert (running.status, running.ready, running.ready_containers, running.total_containers) == (
        "Running",
        True,
        2,
        2,
    )
    # kubectl counts the sidecar's restarts with the app containers' once initialised.
    assert running.restarts == 3
    assert [c.name for c in running.containers] == ["engine", "backend"]
    engine, backend = running.containers
    assert engine.sidecar
    assert not backend.sidecar
    assert (engine.cpu_request_millicores, engine.memory_request_bytes) == (500, 1024**3)
    assert (backend.cpu_request_millicores, backend.memory_request_bytes) == (250, 128 * 1024**2)
    assert running.cpu_request_millicores == 750
    assert running.memory_request_bytes == 1024**3 + 128 * 1024**2
    assert running.ready_at == pytest.approx(1768035680.0)
    assert running.started_at == pytest.approx(1768035661.0)

    initializing = by_name[INITIALIZING["metadata"]["name"]]
    assert (initializing.status, initializing.ready, initializing.ready_containers) == (
        "Init:1/2",
        False,
        1,
    )
    assert initializing.ready_at is None
    assert initializing.containers[1].state == "waiting: PodInitializing"

    crashing = by_name[CRASHING["metadata"]["name"]]
    assert (crashing.status, crashing.ready_containers, crashing.restarts) == (
        "CrashLoopBackOff",
        1,
        6,
    )
    assert crashing.containers[1].state == "waiting: CrashLoopBackOff"

    terminating = by_name[TERMINATING["metadata"]["name"]]
    assert terminating.status == "Terminating"
    assert terminating.terminating
    assert terminating.deleting_at == pytest.approx(1768036235.0)
    assert not terminating.ready

    # Only the events about our deployment, its pods and its HPA, oldest first.
    assert [(e.reason, e.kind, e.count) for e in seen.events] == [
        ("Started", "Pod", 1),
        ("SuccessfulRescale", "HorizontalPodAutoscaler", 2),
        ("BackOff", "Pod", 7),
    ]
    rescale = seen.events[1]
    assert rescale.at == pytest.approx(1768035930.0)
    assert seen.events[2].type == "Warning"


async def test_a_new_event_is_handed_over_once(
    emulator: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    watcher, seen = await _watching(_target(tmp_path, str(emulator.url)))
    task = asyncio.create_task(watcher.run())
    try:
        await seen.until(lambda s: s.deployment is not None)
        await seen.events_at_least(3)
        new = event(
            "e6",
            "Pod",
            RUNNING["metadata"]["name"],
            "Killing",
            "Stopping container backend",
            lastTimestamp="2026-01-10T09:07:00Z",
        )
        async with emulator.post(f"/api/v1/namespaces/{NS}/events", json=new) as response:
            assert response.status < 300
        await seen.events_at_least(4)
        await asyncio.sleep(0.3)  # a duplicate (kmock replays as ADDED) would arrive by now
    finally:
        task.cancel()
        await watcher.close()
    assert [e.reason for e in seen.events].count("Killing") == 1
    assert seen.events[-1].message == "Stopping container backend"


async def test_no_metrics_server_is_said_in_words(
    emulator: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    watcher, seen = await _watching(_target(tmp_path, str(emulator.url)))
    task = asyncio.create_task(watcher.run())
    try:
        snapshot = await seen.until(lambda s: s.metrics_available is False)
    finally:
        task.cancel()
        await watcher.close()
    assert "no metrics-server" in snapshot.metrics_detail
    assert snapshot.usage == ()
    # The rest of the cockpit is unaffected.
    assert snapshot.connection is Connection.LIVE


async def test_a_403_names_the_missing_permission(
    emulator: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    forbidden = kmock.KubernetesError(
        status=403,
        reason="Forbidden",
        message='pods is forbidden: User "system:serviceaccount:kube-llm:viewer" cannot list '
        'resource "pods" in API group "" in the namespace "kube-llm"',
        details={"kind": "pods"},
    )
    emulator["get", kmock.resource("", "v1", "pods")] << forbidden
    emulator["post", kmock.resource("", "v1", "pods"), kmock.subresource("eviction")] << forbidden
    watcher, seen = await _watching(_target(tmp_path, str(emulator.url)))
    task = asyncio.create_task(watcher.run())
    try:
        snapshot = await seen.until(lambda s: s.connection is Connection.FORBIDDEN)
        result = await watcher.evict(RUNNING["metadata"]["name"])
    finally:
        task.cancel()
        await watcher.close()
    assert snapshot.detail == (
        "403: the cockpit may not list pods in kube-llm "
        "(needs get/list/watch pods, see kustomize/base/cockpit-role.yaml)"
    )
    assert not result.ok
    assert result.status == 403
    assert not result.refused_by_pdb
    assert result.message == (
        "403: the cockpit may not create pods/eviction in kube-llm "
        "(needs create pods/eviction, see kustomize/base/cockpit-role.yaml)"
    )


async def test_force_delete_asks_for_grace_zero_and_the_pod_leaves(
    emulator: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    victim = CRASHING["metadata"]["name"]
    watcher, seen = await _watching(_target(tmp_path, str(emulator.url)))
    task = asyncio.create_task(watcher.run())
    try:
        await seen.until(lambda s: len(s.pods) == 4)
        result = await watcher.force_delete(victim)
        snapshot = await seen.until(lambda s: len(s.pods) == 3)
    finally:
        task.cancel()
        await watcher.close()
    assert result.ok
    assert (result.action, result.pod, result.status) == ("delete", victim, 200)
    assert snapshot.pod(victim) is None
    deletes = [r for r in emulator if str(r.method).upper().endswith("DELETE")]
    assert [(r.url.path, r.params.get("gracePeriodSeconds")) for r in deletes] == [
        (f"/api/v1/namespaces/{NS}/pods/{victim}", "0")
    ]


@pytest.mark.parametrize(
    ("causes", "by_pdb"),
    [
        (
            [
                {
                    "reason": "DisruptionBudget",
                    "message": "The disruption budget llm-backend needs 1 healthy pods "
                    "and has 1 currently",
                }
            ],
            True,
        ),
        # API priority and fairness also answers 429: that is not the budget's refusal.
        ([], False),
    ],
)
async def test_an_eviction_429_is_a_pdb_refusal_only_when_the_budget_says_so(
    emulator: kmock.KubernetesEmulator, tmp_path: Path, causes: list[Any], by_pdb: bool
) -> None:
    message = (
        "Cannot evict pod as it would violate the pod's disruption budget."
        if by_pdb
        else "Too many requests, please try again later."
    )
    refusal = kmock.KubernetesError(
        status=429, reason="TooManyRequests", message=message, details={"causes": causes}
    )
    emulator["post", kmock.resource("", "v1", "pods"), kmock.subresource("eviction")] << refusal
    watcher, _ = await _watching(_target(tmp_path, str(emulator.url)))
    try:
        result = await watcher.evict(RUNNING["metadata"]["name"])
    finally:
        await watcher.close()
    assert not result.ok
    assert result.status == 429
    assert result.refused_by_pdb is by_pdb
    assert message in result.message
    if by_pdb:
        assert "needs 1 healthy pods and has 1 currently" in result.message


async def test_pod_metrics_become_usage_summed_over_containers(
    emulator: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    # metrics-server writes CPU in nanocores and memory in Ki; other writers use m and bytes.
    name = RUNNING["metadata"]["name"]
    emulator.objects["metrics.k8s.io/v1beta1/pods", NS, name] = pod_metrics(
        RUNNING, {"cpu": "187654321n", "memory": "716800Ki"}, {"cpu": "12m", "memory": "55574528"}
    )
    watcher, seen = await _watching(_target(tmp_path, str(emulator.url)))
    task = asyncio.create_task(watcher.run())
    try:
        snapshot = await seen.until(lambda s: s.usage_of(name) is not None)
    finally:
        task.cancel()
        await watcher.close()
    usage = snapshot.usage_of(name)
    assert usage is not None
    assert usage.cpu_millicores == pytest.approx(187.654321 + 12)
    assert usage.memory_bytes == 716800 * 1024 + 55574528
    assert usage.at == pytest.approx(1768036080.0)
    assert snapshot.metrics_available is True
    assert snapshot.metrics_detail == ""


async def test_metrics_forbidden_names_the_permission_and_keeps_watching(
    emulator: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    denied = kmock.KubernetesError(status=403, reason="Forbidden", message="pods.metrics.k8s.io")
    emulator["get", kmock.resource("metrics.k8s.io", "v1beta1", "pods")] << denied
    watcher, seen = await _watching(_target(tmp_path, str(emulator.url)))
    task = asyncio.create_task(watcher.run())
    try:
        snapshot = await seen.until(lambda s: s.metrics_available is False)
    finally:
        task.cancel()
        await watcher.close()
    assert snapshot.metrics_detail == (
        "403: the cockpit may not list pods.metrics.k8s.io in kube-llm "
        "(needs get/list pods.metrics.k8s.io, see kustomize/base/cockpit-role.yaml)"
    )
    assert snapshot.connection is Connection.LIVE


async def test_the_first_list_hands_over_only_the_most_recent_events(
    emulator: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    watcher, seen = watching(_target(tmp_path, str(emulator.url)), initial_events=2)
    task = asyncio.create_task(watcher.run())
    try:
        await seen.until(lambda s: s.deployment is not None)
        await seen.events_at_least(2)
        await asyncio.sleep(0.5)  # kmock replays every event as ADDED on its watch, too
    finally:
        task.cancel()
        await watcher.close()
    assert [e.reason for e in seen.events] == ["SuccessfulRescale", "BackOff"]


async def test_a_missing_deployment_is_said_and_no_pod_is_guessed(
    emulator: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    watcher, seen = watching(_target(tmp_path, str(emulator.url)), deployment="chat-gateway")
    task = asyncio.create_task(watcher.run())
    try:
        snapshot = await seen.until(
            lambda s: s.connection is Connection.LIVE and "no deployment" in s.detail
        )
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
        await watcher.close()
    assert snapshot.detail == "watching; no deployment chat-gateway in kube-llm"
    assert seen.last.pods == ()
    assert seen.last.deployment is None
    assert seen.last.hpa is None  # the HPA defaults to the deployment's name
    assert seen.events == []


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(base=0.5, cap=15.0, jitter=0.2)
    for attempt, nominal in enumerate([0.5, 1, 2, 4, 8, 15, 15, 15], start=1):
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(0.8 * nominal <= d <= min(15.0, 1.2 * nominal) for d in delays)
        assert len(set(delays)) > 1  # jittered: watchers do not retry in lockstep


async def test_no_api_server_at_all_is_retried_with_growing_delays(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    watcher, seen = watching(
        _target(tmp_path, f"http://127.0.0.1:{port}"), backoff=Backoff(base=0.05, cap=0.4)
    )
    task = asyncio.create_task(watcher.run())
    try:
        await seen.until(lambda s: sum("retrying in" in x.detail for x in seen.snapshots) >= 8)
    finally:
        task.cancel()
        await watcher.close()
    details = [s.detail for s in seen.snapshots if s.connection is Connection.RETRYING]
    assert all(d.endswith(f"connection refused (127.0.0.1:{port})") for d in details)
    delays = [float(d.split("retrying in ")[1].split(" s")[0]) for d in details]
    assert max(delays) <= 0.4 * 1.2
    assert max(delays) > 2 * min(delays)
    assert seen.last.pods == ()
