"""The Kubernetes adapter against the real sandbox (a real API server process, real pods with the
fake engine), through the `kube-llm-sandbox-cockpit` context: exactly the cockpit's Role (T6).

One sandbox serves the module. Each test starts from two Ready pods and leaves the Deployment
to heal itself. Faults (dropped watches, 410 Gone, failing and stalled requests) are injected
with the sandbox's admin-only `POST /sandbox/faults`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.utils import parse_quantity

from tests.sandbox.harness import (
    NAMESPACE,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)
from tests.tui.k8s_helpers import Recorder, watching
from tui.cluster.kubeconfig import ClusterTarget, load_target
from tui.cluster.watcher import ClusterWatcher
from tui.core.model import ClusterSnapshot, Connection, PodView

pytestmark = pytest.mark.slow(reason="a sandbox for the module; watches while pods come and go")

COCKPIT_CONTEXT = "kube-llm-sandbox-cockpit"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """One sandbox with the fake engine for the module."""
    running = start_sandbox(tmp_path_factory.mktemp("sandbox"), engine_cmd=fake_engine_cmd())
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def target(sandbox: RunningSandbox) -> ClusterTarget:
    """The cockpit's context (its Role and nothing more), once two pods are Ready again."""
    wait_for(lambda: len(sandbox.ready_pods()) >= 2, 90, "two Ready pods")
    loaded = load_target(sandbox.kubeconfig, COCKPIT_CONTEXT, None)
    assert loaded.sandbox
    assert loaded.namespace == NAMESPACE
    return loaded


def _ready(snapshot: ClusterSnapshot) -> list[PodView]:
    return [p for p in snapshot.pods if p.ready and not p.terminating]


def _fault(sandbox: RunningSandbox, **spec: Any) -> None:
    with sandbox.http() as http:
        http.post("/sandbox/faults", json=spec).raise_for_status()


def _bump_unwatched(sandbox: RunningSandbox) -> None:
    """Write an object none of the watches follows, so that every watch's last
    resourceVersion falls behind the store's: after a compaction each resume gets 410."""
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"bump-{uuid.uuid4().hex[:8]}", "namespace": NAMESPACE},
        "data": {"why": "move the resourceVersion on"},
    }
    with sandbox.http() as http:
        http.post(f"/api/v1/namespaces/{NAMESPACE}/configmaps", json=body).raise_for_status()


class Running:
    """A watcher running as a task, stopped and closed on exit."""

    def __init__(self, target: ClusterTarget, **options: Any) -> None:
        self.watcher, self.seen = watching(target, **options)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> tuple[ClusterWatcher, Recorder]:
        self.task = asyncio.create_task(self.watcher.run())
        await self.seen.until(
            lambda s: s.connection is Connection.LIVE and len(_ready(s)) >= 2,
            what="two Ready pods, live",
        )
        return self.watcher, self.seen

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await self.watcher.close()
        # run() ends quietly when cancelled or closed: API trouble never escapes it.
        results = await asyncio.gather(self.task, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError | type(None)) for r in results), results


def _after(seen: Recorder, start: int) -> list[ClusterSnapshot]:
    return seen.snapshots[start:]


def _went_retrying_then_live(snapshots: list[ClusterSnapshot], words: str) -> bool:
    retrying = [
        i
        for i, s in enumerate(snapshots)
        if s.connection is Connection.RETRYING and words in s.detail
    ]
    return bool(retrying) and any(
        s.connection is Connection.LIVE for s in snapshots[retrying[0] + 1 :]
    )


async def test_the_first_list_shows_the_pods_with_their_requests_and_the_hpa(
    sandbox: RunningSandbox, target: ClusterTarget
) -> None:
    async with Running(target) as (_, seen):
        snapshot = await seen.until(lambda s: s.metrics_available and len(s.usage) >= 2)
        await seen.events_at_least(1)
    ready = _ready(snapshot)
    assert len(ready) == 2
    raw = {p["metadata"]["name"]: p for p in sandbox.pods()}
    for pod in ready:
        assert pod.status == "Running"
        # The engine is a native sidecar: it counts in ready x/y as kubectl counts it.
        assert (pod.ready_containers, pod.total_containers) == (2, 2)
        spec = raw[pod.name]["spec"]
        running = [c for c in spec["initContainers"] if c.get("restartPolicy") == "Always"]
        running += spec["containers"]
        assert [c.name for c in pod.containers] == [c["name"] for c in running]
        for view, container in zip(pod.containers, running, strict=True):
            requests = container["resources"]["requests"]
            assert view.cpu_request_millicores == float(parse_quantity(requests["cpu"]) * 1000)
            assert view.memory_request_bytes == int(parse_quantity(requests["memory"]))
        assert pod.created_at is not None
        assert pod.ready_at is not None
        assert pod.created_at <= pod.ready_at <= time.time()
    hpa = snapshot.hpa
    assert hpa is not None
    assert (hpa.min_replicas, hpa.max_replicas) == (2, 6)
    assert {(m.name, m.container, m.target_utilization) for m in hpa.metrics} == {
        ("cpu", "engine", 70),
        ("memory", "backend", 80),
    }
    assert snapshot.deployment is not None
    assert snapshot.deployment.selector == "app.kubernetes.io/name=llm-backend"
    # metrics.k8s.io answers the cockpit's Role: every Ready pod has CPU and memory.
    assert {u.pod for u in snapshot.usage} >= {p.name for p in ready}
    assert all(u.memory_bytes > 0 for u in snapshot.usage)
    kinds = ("Pod", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler")
    assert all(e.kind in kinds for e in seen.events)
    # The pods are the Deployment's ReplicaSet's: its SuccessfulCreate events are ours too, and
    # so are the frontend's, whose events the cockpit shows beside the backend's.
    owners = ("llm-backend-", "llm-frontend-")
    assert all(e.name.startswith(owners) for e in seen.events if e.kind == "ReplicaSet")


async def test_an_evicted_pod_terminates_leaves_and_its_replacement_becomes_ready(
    target: ClusterTarget,
) -> None:
    async with Running(target) as (watcher, seen):
        before = {p.name for p in seen.last.pods}
        victim = _ready(seen.last)[0].name
        result = await watcher.evict(victim)
        assert result.ok, result
        assert (result.action, result.status) == ("evict", 201)
        await seen.until(
            lambda s: (p := s.pod(victim)) is not None and p.status == "Terminating",
            what="the victim terminating",
        )
        replacement_ready = await seen.until(
            lambda s: (
                s.pod(victim) is None
                and any(p.name not in before for p in _ready(s))
                and len(_ready(s)) >= 2
            ),
            timeout=90,
            what="the victim gone and its replacement Ready",
        )
    new = [p for p in _ready(replacement_ready) if p.name not in before]
    assert len(new) == 1
    # The replacement was seen before it was Ready: its start is visible, not only its end.
    early = [s.pod(new[0].name) for s in seen.snapshots if s.pod(new[0].name) is not None]
    first_seen = early[0]
    assert first_seen is not None
    assert not first_seen.ready
    assert first_seen.status != "Running" or first_seen.ready_containers < 2
    assert any(e.reason == "Killing" and e.name == victim for e in seen.events)


async def test_an_eviction_the_pdb_forbids_is_reported_as_refused(target: ClusterTarget) -> None:
    async with Running(target) as (watcher, _):
        first, second = (p.name for p in _ready(_.last)[:2])
        # Evicted back to back: the second would leave no Ready pod (minAvailable 1).
        allowed = await watcher.evict(first)
        refused = await watcher.evict(second)
    assert allowed.ok
    assert not allowed.refused_by_pdb
    assert not refused.ok
    assert refused.refused_by_pdb
    assert refused.status == 429
    assert "disruption budget" in refused.message


async def test_force_delete_removes_the_pod_at_once(target: ClusterTarget) -> None:
    async with Running(target) as (watcher, seen):
        victim = _ready(seen.last)[0].name
        start = len(seen.snapshots)
        requested = time.monotonic()
        result = await watcher.force_delete(victim)
        assert result.ok, result
        await seen.until(lambda s: s.pod(victim) is None, timeout=10, what="the victim gone")
        gone_after = time.monotonic() - requested
        await seen.until(lambda s: len(_ready(s)) >= 2, timeout=90, what="two Ready pods again")
    assert result.action == "delete"
    # Grace 0: no preStop (5 s in the manifests), no Terminating phase seen.
    assert gone_after < 5
    assert not any((p := s.pod(victim)) is not None and p.terminating for s in _after(seen, start))


async def test_dropped_watches_are_resumed(sandbox: RunningSandbox, target: ClusterTarget) -> None:
    async with Running(target) as (_, seen):
        start = len(seen.snapshots)
        _fault(sandbox, drop_watches=True)
        await seen.until(
            lambda s: _went_retrying_then_live(_after(seen, start), "ended a watch"),
            what="retrying, then live",
        )
        # The resumed event watch delivers what happens next.
        count = len(seen.events)
        marker = f"resumed-{uuid.uuid4().hex[:6]}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"llm-backend.{marker}", "namespace": NAMESPACE},
            "involvedObject": {
                "kind": "Deployment",
                "name": "llm-backend",
                "namespace": NAMESPACE,
            },
            "reason": "Tested",
            "message": marker,
            "type": "Normal",
            "count": 1,
            "lastTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": {"component": "test"},
        }
        with sandbox.http() as http:
            posted = http.post(f"/api/v1/namespaces/{NAMESPACE}/events", json=event)
            posted.raise_for_status()
        await seen.events_at_least(count + 1)
        assert seen.events[-1].message == marker
        assert seen.last.connection is Connection.LIVE


async def test_410_gone_makes_every_watch_list_again(
    sandbox: RunningSandbox, target: ClusterTarget
) -> None:
    async with Running(target) as (_, seen):
        start = len(seen.snapshots)
        _bump_unwatched(sandbox)
        _fault(sandbox, compact=True, drop_watches=True)
        await seen.until(
            lambda s: _went_retrying_then_live(_after(seen, start), "410 Gone"),
            what="410, then live",
        )
        await seen.until(lambda s: s.connection is Connection.LIVE)
        # The new lists show the pods as the API server has them now: a pod an earlier test
        # left terminating, or one the HPA scaled away, may have gone meanwhile (compared with
        # the pods before the fault, this failed once), so the reference is listed now, and
        # the watches, resumed from the new lists, must show it.
        server = {p["metadata"]["name"] for p in sandbox.pods()}
        relisted = await seen.until(
            lambda s: {p.name for p in s.pods} == server, timeout=10, what=f"pods {server}"
        )
    assert relisted.connection is Connection.LIVE
    assert relisted.hpa is not None
    assert relisted.deployment is not None


async def test_api_errors_back_off_and_recover(
    sandbox: RunningSandbox, target: ClusterTarget
) -> None:
    async with Running(target) as (_, seen):
        start = len(seen.snapshots)
        _fault(sandbox, fail_next=6, fail_code=503)
        _fault(sandbox, drop_watches=True)
        await seen.until(
            lambda s: _went_retrying_then_live(_after(seen, start), "503"),
            what="retrying on 503, then live",
        )
    failing = next(s for s in _after(seen, start) if "503" in s.detail)
    assert "retrying in" in failing.detail
    assert "injected fault" in failing.detail


async def test_a_stalled_api_server_never_blocks_the_caller(
    sandbox: RunningSandbox, target: ClusterTarget
) -> None:
    async with Running(target, request_timeout=1.5) as (watcher, seen):
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.05)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        start = len(seen.snapshots)
        _fault(sandbox, stall_next=6, stall_seconds=4)
        _fault(sandbox, drop_watches=True)
        asked = time.monotonic()
        # A pod that does not exist: a stalled answer times out, a prompt one is a 404.
        result = await watcher.evict("no-such-pod")
        answered = time.monotonic() - asked
        await seen.until(
            lambda s: _went_retrying_then_live(_after(seen, start), "did not answer within 1.5 s"),
            what="retrying on a stall, then live",
        )
        ticking.cancel()
    assert not result.ok
    assert answered < 1.5 + 1.0
    # The event loop kept turning while requests stalled: a blocked caller would show a gap
    # of at least the 1.5 s request timeout; scheduling noise on a busy machine stays below 1 s.
    assert max(gaps) < 1.0


async def test_a_namespace_outside_the_role_names_the_missing_permissions(
    target: ClusterTarget, sandbox: RunningSandbox
) -> None:
    elsewhere = load_target(sandbox.kubeconfig, COCKPIT_CONTEXT, "default")  # as `-n default`
    watcher, seen = watching(elsewhere)
    task = asyncio.create_task(watcher.run())
    try:
        snapshot = await seen.until(
            lambda s: s.connection is Connection.FORBIDDEN and s.detail.count("403") == 3,
            what="403 on the deployment, the HPA and the events",
        )
        evicted = await watcher.evict("llm-backend-anything")
        deleted = await watcher.force_delete("llm-backend-anything")
    finally:
        task.cancel()
        await watcher.close()
    role = "see kustomize/base/cockpit-role.yaml"
    for resource in ("deployments.apps", "horizontalpodautoscalers.autoscaling", "events"):
        assert (
            f"403: the cockpit may not list {resource} in default "
            f"(needs get/list/watch {resource}, {role})"
        ) in snapshot.detail
    assert evicted.message == (
        f"403: the cockpit may not create pods/eviction in default "
        f"(needs create pods/eviction, {role})"
    )
    assert deleted.status == 403
    assert "may not delete pods in default" in deleted.message
