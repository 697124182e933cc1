"""Issue 14 items 3 and 5: the rollout judgement (the scenario runner's and the cockpit's) and the
adapter against objects shaped as a real API server shapes them, served by kmock to the real
`kubernetes.aio` client. Where each shape comes from: docs/rollouts.md."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import kmock
import pytest

from tests.tui.k8s_helpers import watching
from tests.tui.k8s_objects import (
    DEPLOYMENT,
    DEPLOYMENT_ROLLED_OUT,
    DEPLOYMENT_STUCK,
    EVICTED,
    HPA_FAILED_METRIC,
    NS,
    SERIES_EVENT,
    running_pod,
)
from tests.tui.test_k8s_kmock import _target
from tui.cluster.convert import deployment_view
from tui.cluster.rollout import rollout_change, rollout_status, rollout_summary
from tui.core.model import ClusterSnapshot


def serve(emulator: kmock.KubernetesEmulator, deployment: Any, *pods: Any, **more: Any) -> None:
    emulator.objects["apps/v1/deployments", NS, "llm-backend"] = deployment
    for pod in pods:
        emulator.objects["v1/pods", NS, pod["metadata"]["name"]] = pod
    if "hpa" in more:
        emulator.objects["autoscaling/v2/horizontalpodautoscalers", NS, "llm-backend"] = more["hpa"]
    for item in more.get("events", ()):
        emulator.objects["v1/events", NS, item["metadata"]["name"]] = item


async def snapshot_of(
    emulator: kmock.KubernetesEmulator, tmp_path: Path, pods: int, events: int = 0
) -> tuple[ClusterSnapshot, Any]:
    watcher, seen = watching(_target(tmp_path, str(emulator.url)), metrics_retry=0.5)
    task = asyncio.create_task(watcher.run())
    try:
        snapshot = await seen.until(lambda s: s.deployment is not None and len(s.pods) == pods)
        if events:
            await seen.events_at_least(events)
    finally:
        task.cancel()
        await watcher.close()
    return snapshot, seen


async def test_an_evicted_leftover_does_not_hold_a_finished_rollout_open(
    kmock: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    new = [running_pod(s) for s in ("aaaaa", "bbbbb", "ccccc")]
    serve(kmock, DEPLOYMENT_ROLLED_OUT, *new, EVICTED)
    snapshot, _ = await snapshot_of(kmock, tmp_path, pods=4)
    deployment = snapshot.deployment
    assert deployment is not None
    # The leftover is in the watch, as on a cluster: Failed, not Ready (kubectl's STATUS shows
    # the container's reason over the pod's `Evicted`, and so does the pods table)...
    evicted = snapshot.pod(EVICTED["metadata"]["name"])
    assert evicted is not None
    assert (evicted.phase, evicted.status, evicted.ready) == (
        "Failed",
        "ContainerStatusUnknown",
        False,
    )
    assert not evicted.terminating  # no deletionTimestamp: it stays until someone deletes it
    # ...yet the rollout is done, as `kubectl rollout status` says.
    state = rollout_status(deployment)
    assert state.done
    assert state.message == 'deployment "llm-backend" successfully rolled out'
    assert rollout_summary(deployment) is None
    assert (deployment.revision, deployment.generation, deployment.observed_generation) == (
        "2",
        4,
        4,
    )
    progressing = deployment.condition("Progressing")
    assert progressing is not None
    assert progressing.reason == "NewReplicaSetAvailable"


async def test_a_stuck_rollout_fails_with_its_reason(
    kmock: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    serve(kmock, DEPLOYMENT_STUCK, running_pod("aaaaa"), running_pod("bbbbb"))
    snapshot, _ = await snapshot_of(kmock, tmp_path, pods=2)
    deployment = snapshot.deployment
    assert deployment is not None
    state = rollout_status(deployment)
    assert state.failed
    assert not state.done
    assert state.message == (
        'deployment "llm-backend" exceeded its progress deadline: '
        'ReplicaSet "llm-backend-6b8d9c7f4" has timed out progressing.'
    )
    assert rollout_summary(deployment) == "rollout failed: ProgressDeadlineExceeded"
    # The cockpit's event log hears of it once, as an error.
    rolled_out = deployment_view(DEPLOYMENT_ROLLED_OUT)
    assert rollout_change(rolled_out, deployment) == (f"rollout failed: {state.message}", "error")
    assert rollout_change(deployment, deployment) is None


async def test_an_events_k8s_io_event_has_its_series_time_and_count(
    kmock: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    stuck_pod = {**running_pod("fffff"), "metadata": {**running_pod("fffff")["metadata"]}}
    stuck_pod["metadata"]["name"] = "llm-backend-6b8d9c7f4-fffff"
    serve(kmock, DEPLOYMENT_STUCK, stuck_pod, events=[SERIES_EVENT])
    _, seen = await snapshot_of(kmock, tmp_path, pods=1, events=1)
    [scheduling] = seen.events
    assert (scheduling.reason, scheduling.type, scheduling.count) == (
        "FailedScheduling",
        "Warning",
        4,
    )
    # lastTimestamp is null: the time is the series' last observation.
    assert scheduling.at == pytest.approx(1768036500.800123)


async def test_a_failed_container_metric_has_no_current_value(
    kmock: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    serve(kmock, DEPLOYMENT, running_pod("aaaaa"), hpa=HPA_FAILED_METRIC)
    watcher, seen = watching(_target(tmp_path, str(kmock.url)), metrics_retry=0.5)
    task = asyncio.create_task(watcher.run())
    try:
        snapshot = await seen.until(lambda s: s.hpa is not None)
    finally:
        task.cancel()
        await watcher.close()
    hpa = snapshot.hpa
    assert hpa is not None
    cpu, memory = hpa.metrics
    assert (cpu.container, cpu.current_utilization) == ("engine", 12)
    assert (memory.container, memory.target_utilization) == ("backend", 80)
    assert memory.current_utilization is None
    assert memory.current_value is None
    active = next(c for c in hpa.conditions if c.type == "ScalingActive")
    assert (active.status, active.reason) == ("False", "FailedGetContainerResourceMetric")


@pytest.mark.parametrize(
    ("status", "generation", "done", "words"),
    [
        (
            {"observedGeneration": 4},
            5,
            False,
            "Waiting for deployment spec update to be observed...",
        ),
        (
            {"updatedReplicas": 1, "replicas": 4, "availableReplicas": 3},
            4,
            False,
            'Waiting for deployment "llm-backend" rollout to finish: 1 out of 3 new replicas '
            "have been updated...",
        ),
        (
            {"updatedReplicas": 3, "replicas": 4, "availableReplicas": 3},
            4,
            False,
            'Waiting for deployment "llm-backend" rollout to finish: 1 old replicas are pending '
            "termination...",
        ),
        (
            {"updatedReplicas": 3, "replicas": 3, "availableReplicas": 2},
            4,
            False,
            'Waiting for deployment "llm-backend" rollout to finish: 2 of 3 updated replicas are '
            "available...",
        ),
        (
            {"updatedReplicas": 3, "replicas": 3, "availableReplicas": 3},
            4,
            True,
            'deployment "llm-backend" successfully rolled out',
        ),
    ],
)
def test_each_of_kubectls_answers(
    status: dict[str, int], generation: int, done: bool, words: str
) -> None:
    deployment = {
        **DEPLOYMENT_ROLLED_OUT,
        "metadata": {**DEPLOYMENT_ROLLED_OUT["metadata"], "generation": generation},
        "status": {"observedGeneration": 4, "conditions": [], **status},
    }
    state = rollout_status(deployment_view(deployment))
    assert (state.done, state.failed, state.message) == (done, False, words)
    summary = rollout_summary(deployment_view(deployment))
    assert (summary is None) == done


def test_a_rollout_starting_and_finishing_is_said_once_each() -> None:
    done = deployment_view(DEPLOYMENT_ROLLED_OUT)
    started = dataclasses.replace(done, generation=5)
    assert rollout_change(done, started) == (
        "rollout started: Waiting for deployment spec update to be observed...",
        "information",
    )
    assert rollout_change(started, dataclasses.replace(started, updated_replicas=2)) is None
    assert rollout_change(started, done) == (
        'deployment "llm-backend" successfully rolled out',
        "information",
    )
    assert rollout_change(None, done) is None  # the first sight of a finished rollout
