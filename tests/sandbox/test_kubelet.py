"""The kubelet in process with real child processes: start order, probes, restarts, termination."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from sandbox.kubelet.kubelet import Kubelet, KubeletConfig
from sandbox.store.store import CONFIGMAPS, EVENTS, PODS, Store
from tests.sandbox.harness import ROOT, fake_engine_cmd

pytestmark = pytest.mark.slow(reason="real pod processes; waits out probe periods and restarts")

NS = "kube-llm"


def pod_manifest(backend_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    backend: dict[str, Any] = {
        "name": "backend",
        "image": "kube-llm-backend:dev",
        "ports": [{"name": "http", "containerPort": 8000}],
        "envFrom": [{"configMapRef": {"name": "config"}}],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        # A generous startup budget: on a loaded machine `python -m backend` takes seconds.
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 60,
        },
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
        "lifecycle": {"preStop": {"sleep": {"seconds": 1}}},
    }
    backend.update(backend_overrides or {})
    return {
        "metadata": {"name": "web-1", "labels": {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "initContainers": [
                {
                    "name": "engine",
                    "image": "ollama/ollama",
                    "restartPolicy": "Always",
                    "startupProbe": {"exec": {"command": ["ollama", "list"]}, "periodSeconds": 1},
                },
                {"name": "model-pull", "image": "ollama/ollama"},
            ],
            "containers": [backend],
        },
    }


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Store, Kubelet]]:
    store = Store()
    store.create(
        CONFIGMAPS, {"metadata": {"name": "config"}, "data": {"MODEL": "smollm2:135m"}}, NS
    )
    kubelet = Kubelet(
        store,
        KubeletConfig(
            engine_cmd=fake_engine_cmd(busy_ms_per_token=0), workdir=ROOT, log_dir=tmp_path
        ),
    )
    task = asyncio.create_task(kubelet.run())
    yield store, kubelet
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def status_of(store: Store, name: str = "web-1") -> dict[str, Any]:
    found = store.find(PODS, NS, name)
    return (found or {}).get("status") or {}


def condition(store: Store, kind: str) -> str | None:
    for entry in status_of(store).get("conditions") or []:
        if entry["type"] == kind:
            return str(entry["status"])
    return None


def reasons(store: Store) -> list[str]:
    return [e["reason"] for e in store.list(EVENTS, NS)]


async def test_sidecar_first_then_ready_then_graceful_stop(node: tuple[Store, Kubelet]) -> None:
    store, kubelet = node
    store.create(PODS, pod_manifest(), NS)
    await until(lambda: condition(store, "Ready") == "True", 30, "the pod Ready")
    status = status_of(store)
    assert status["phase"] == "Running"
    engine, pull = status["initContainerStatuses"]
    assert engine["started"]
    assert engine["ready"]
    assert pull["state"]["terminated"]["reason"] == "Completed"
    # Events in kubelet order: the sidecar started before the backend was created.
    events = [(e["reason"], e["involvedObject"].get("fieldPath")) for e in store.list(EVENTS, NS)]
    by_time = sorted(store.list(EVENTS, NS), key=lambda e: int(e["metadata"]["resourceVersion"]))
    order = [(e["reason"], e["involvedObject"].get("fieldPath")) for e in by_time]
    assert order.index(("Started", "spec.initContainers{engine}")) < order.index(
        ("Created", "spec.containers{backend}")
    )
    assert ("Scheduled", None) in events
    pids = kubelet.sample_targets()["web-1"]
    processes = [psutil.Process(pid) for pid in pids.values() if pid]
    assert len(processes) == 2
    # The backend got the sandbox's loopback settings.
    backend_env = processes[[*pids].index("backend")].environ()
    assert backend_env["POD_NAME"] == "web-1"
    assert backend_env["ENGINE_URL"].startswith("http://127.0.0.1:")
    assert backend_env["MODEL"] == "smollm2:135m"
    assert kubelet.pod_port(NS, "web-1", "http") == int(backend_env["PORT"])
    assert kubelet.pod_port(NS, "web-1", 8000) == int(backend_env["PORT"])

    # The simulated init container has output for `kubectl logs` too.
    assert "nothing to pull" in kubelet.log_path(NS, "web-1", "model-pull").read_text()

    _, updates = store.subscribe(PODS)
    started = time.monotonic()
    store.mutate(
        PODS,
        NS,
        "web-1",
        lambda p: p["metadata"].update(
            deletionTimestamp="2030-01-01T00:00:00Z", deletionGracePeriodSeconds=5
        ),
    )
    await until(lambda: store.find(PODS, NS, "web-1") is None, 20, "the pod object removed")
    store.unsubscribe(PODS, updates)
    # Once unready for the termination, no container turns ready again (not even while
    # preStop runs and the readiness probe still passes).
    readiness = []
    while not updates.empty():
        update = updates.get_nowait()
        assert update is not None
        statuses = (update.obj.get("status") or {}).get("containerStatuses") or []
        readiness.append(any(s["ready"] for s in statuses))
    assert False in readiness
    assert True not in readiness[readiness.index(False) :]
    elapsed = time.monotonic() - started
    assert elapsed >= 1.0  # the preStop sleep ran before SIGTERM
    assert elapsed < 5.0  # the backend drained quickly: no SIGKILL wait
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in processes)
    assert "Killing" in reasons(store)


async def test_liveness_failure_restarts_the_container(node: tuple[Store, Kubelet]) -> None:
    store, _kubelet = node
    liveness = {
        "livenessProbe": {
            "httpGet": {"path": "/no-such-path", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
        "lifecycle": {},
    }
    store.create(PODS, pod_manifest(liveness), NS)

    def restarted() -> bool:
        statuses = status_of(store).get("containerStatuses") or [{}]
        return statuses[0].get("restartCount", 0) >= 1

    await until(restarted, 40, "a liveness restart")
    backend = status_of(store)["containerStatuses"][0]
    assert backend["lastState"]["terminated"]["finishedAt"]
    assert "Unhealthy" in reasons(store)
    messages = [e["message"] for e in store.list(EVENTS, NS)]
    assert "Container backend failed liveness probe, will be restarted" in messages
    assert any(
        m.startswith("Liveness probe failed: HTTP probe failed with statuscode: 404")
        for m in messages
    )


async def test_force_delete_kills_at_once(node: tuple[Store, Kubelet]) -> None:
    store, kubelet = node
    store.create(PODS, pod_manifest(), NS)
    await until(lambda: condition(store, "Ready") == "True", 30, "the pod Ready")
    pids = [pid for pid in kubelet.sample_targets()["web-1"].values() if pid]
    processes = [psutil.Process(pid) for pid in pids]
    store.delete(PODS, NS, "web-1")
    started = time.monotonic()

    def all_gone() -> bool:
        return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in processes)

    await until(all_gone, 10, "the processes gone")
    assert time.monotonic() - started < 4


async def test_a_container_that_cannot_start_backs_off(tmp_path: Path) -> None:
    store = Store()
    kubelet = Kubelet(
        store,
        KubeletConfig(engine_cmd="no-such-engine --port {port}", workdir=ROOT, log_dir=tmp_path),
    )
    task = asyncio.create_task(kubelet.run())
    try:
        store.create(PODS, pod_manifest(), NS)

        def backing_off() -> bool:
            statuses = status_of(store).get("initContainerStatuses") or [{}]
            engine = statuses[0]
            waiting = engine.get("state", {}).get("waiting", {})
            return (
                engine.get("restartCount", 0) >= 2 and waiting.get("reason") == "CrashLoopBackOff"
            )

        await until(backing_off, 15, "the engine in CrashLoopBackOff")
        engine = status_of(store)["initContainerStatuses"][0]
        assert engine["lastState"]["terminated"]["reason"] == "StartError"
        assert status_of(store)["containerStatuses"][0]["state"] == {
            "waiting": {"reason": "PodInitializing"}
        }
        failures = [e["message"] for e in store.list(EVENTS, NS) if e["reason"] == "Failed"]
        assert failures
        assert "no-such-engine" in failures[0]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_engine_probe_counts_a_busy_engine_as_alive(
    node: tuple[Store, Kubelet],
) -> None:
    """A server that accepts but answers late passes only when `busy` says it worked."""
    _, kubelet = node

    async def answer_late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(2)
        writer.close()

    server = await asyncio.start_server(answer_late, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/models"
    await until(lambda: kubelet._http is not None, 5, "the kubelet's HTTP client")
    async with server:
        assert await kubelet.http_probe(url, 0.3, busy=lambda: True) == (True, "")
        ok, message = await kubelet.http_probe(url, 0.3, busy=lambda: False)
        assert not ok
        assert "context deadline exceeded" in message
    # Nothing listening: dead either way.
    ok, message = await kubelet.http_probe(url, 0.3, busy=lambda: True)
    assert not ok
    assert "connection refused" in message


def engine_liveness_pod() -> dict[str, Any]:
    manifest = pod_manifest()
    engine = manifest["spec"]["initContainers"][0]
    engine["livenessProbe"] = {
        "exec": {"command": ["ollama", "list"]},
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "failureThreshold": 2,
    }
    return manifest


def engine_status(store: Store) -> dict[str, Any]:
    statuses = status_of(store).get("initContainerStatuses") or [{}]
    status: dict[str, Any] = statuses[0]
    return status


async def test_a_hung_engine_fails_liveness_and_is_restarted(
    node: tuple[Store, Kubelet],
) -> None:
    store, kubelet = node
    store.create(PODS, engine_liveness_pod(), NS)
    await until(lambda: condition(store, "Ready") == "True", 60, "the pod Ready")
    pid = kubelet.workers[(NS, "web-1")].containers["engine"].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # hung: accepts connections, answers nothing, uses no CPU
    try:
        await until(
            lambda: engine_status(store).get("restartCount", 0) >= 1, 30, "an engine restart"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    messages = [e["message"] for e in store.list(EVENTS, NS)]
    assert "Container engine failed liveness probe, will be restarted" in messages


@pytest.mark.serial
async def test_a_busy_engine_is_not_restarted(tmp_path: Path) -> None:
    store = Store()
    store.create(
        CONFIGMAPS, {"metadata": {"name": "config"}, "data": {"MODEL": "smollm2:135m"}}, NS
    )
    kubelet = Kubelet(
        store,
        KubeletConfig(
            engine_cmd="python -m tests.sandbox.busy_engine --port {port} --model {model} "
            "--burn-seconds 1.5",
            workdir=ROOT,
            log_dir=tmp_path,
        ),
    )
    task = asyncio.create_task(kubelet.run())
    try:
        manifest = engine_liveness_pod()
        # Only the engine matters here; the backend waits for a listing it gets slowly.
        manifest["spec"]["containers"][0]["readinessProbe"]["timeoutSeconds"] = 5
        store.create(PODS, manifest, NS)
        await until(lambda: engine_status(store).get("started"), 60, "the engine started")
        await asyncio.sleep(8)  # several liveness periods, each probe timing out
        assert engine_status(store).get("restartCount") == 0
        engine_events = [
            e
            for e in store.list(EVENTS, NS)
            if e["involvedObject"].get("fieldPath") == "spec.initContainers{engine}"
        ]
        assert engine_events
        messages = [e["message"] for e in engine_events]
        # A probe that timed out on a busy engine never counts as a failure (a startup probe
        # refused before the engine listens, on a slow machine, is a failure as on a cluster).
        assert not [m for m in messages if "deadline exceeded" in m], messages
        assert "Container engine failed liveness probe, will be restarted" not in messages
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_probe_the_sandbox_cannot_run_says_so(node: tuple[Store, Kubelet]) -> None:
    store, _kubelet = node
    manifest = pod_manifest(
        {"livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1}}
    )
    store.create(PODS, manifest, NS)
    await until(lambda: condition(store, "Ready") == "True", 60, "the pod Ready")
    await asyncio.sleep(2.5)
    notes = [e for e in store.list(EVENTS, NS) if e["reason"] == "ProbeNotRun"]
    assert len(notes) == 1
    assert "cat" in notes[0]["message"]
    assert notes[0]["involvedObject"]["fieldPath"] == "spec.containers{backend}"
