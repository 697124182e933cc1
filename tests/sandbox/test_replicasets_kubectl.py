"""Issue 14 item 2 as users type it: the real kubectl's `get rs`, `rollout history|undo|pause|
resume|status` and a cascading `delete` against the sandbox (fake engine), and the ownership
chain through the official client's shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.sandbox.harness import (
    NAMESPACE,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)

pytestmark = pytest.mark.slow(reason="a live sandbox driven by the real kubectl through rollouts")

DEPLOY = "deployment/llm-backend"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(tmp_path_factory.mktemp("rs"), engine_cmd=fake_engine_cmd())
    yield running
    if running.process.poll() is None:
        running.stop()


def kubectl(sandbox: RunningSandbox, *args: str, timeout: float = 60) -> str:
    result = sandbox.kubectl(*args, "-n", NAMESPACE, timeout=timeout)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


BACKEND = ("-l", "app.kubernetes.io/name=llm-backend")
"""The backend's objects only: the sandbox overlay runs the frontend's Deployment beside it."""


def get(sandbox: RunningSandbox, what: str) -> Any:
    selector = BACKEND if what in ("replicasets", "pods") else ()
    return json.loads(kubectl(sandbox, "get", what, *selector, "-o", "json"))


def rolled_out(sandbox: RunningSandbox) -> None:
    out = kubectl(sandbox, "rollout", "status", DEPLOY, "--timeout=90s", timeout=100)
    assert 'deployment "llm-backend" successfully rolled out' in out


def history(sandbox: RunningSandbox) -> list[list[str]]:
    lines = kubectl(sandbox, "rollout", "history", DEPLOY).splitlines()
    return [line.split(None, 1) for line in lines[2:] if line.strip()]


def test_the_chain_deployment_replicaset_pod(sandbox: RunningSandbox) -> None:
    rolled_out(sandbox)
    deployment = get(sandbox, DEPLOY)
    [rs] = get(sandbox, "replicasets")["items"]
    pods = [p for p in get(sandbox, "pods")["items"] if not p["metadata"].get("deletionTimestamp")]
    assert rs["metadata"]["ownerReferences"][0]["uid"] == deployment["metadata"]["uid"]
    assert rs["metadata"]["ownerReferences"][0]["controller"] is True
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert len(pods) == 2
    for pod in pods:
        [ref] = pod["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"]) == ("ReplicaSet", rs["metadata"]["uid"])
        assert pod["metadata"]["labels"]["pod-template-hash"] == pod_hash
    # `kubectl get rs` prints the API server's columns.
    table = kubectl(sandbox, "get", "rs", *BACKEND, "-o", "wide").splitlines()
    assert table[0].split() == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    row = table[1].split()
    assert row[:4] == [rs["metadata"]["name"], "2", "2", "2"]
    assert row[-1].endswith(f"pod-template-hash={pod_hash}")
    status = deployment["status"]
    assert status["observedGeneration"] == deployment["metadata"]["generation"]
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (2, 2, 2)
    reasons = {c["type"]: c["reason"] for c in status["conditions"]}
    assert reasons == {
        "Available": "MinimumReplicasAvailable",
        "Progressing": "NewReplicaSetAvailable",
    }


def test_history_undo_pause_resume(sandbox: RunningSandbox) -> None:
    rolled_out(sandbox)
    kubectl(sandbox, "set", "env", DEPLOY, "ROLLOUT_TRY=1")
    rolled_out(sandbox)
    kubectl(sandbox, "annotate", DEPLOY, "kubernetes.io/change-cause=second env")
    assert history(sandbox) == [["1", "<none>"], ["2", "second env"]]
    revision_two = kubectl(sandbox, "rollout", "history", DEPLOY, "--revision=2")
    assert "ROLLOUT_TRY:" in revision_two
    assert "pod-template-hash=" in revision_two
    # Undo restores revision 1's template, which becomes revision 3 (its ReplicaSet reused).
    before = {rs["metadata"]["name"] for rs in get(sandbox, "replicasets")["items"]}
    kubectl(sandbox, "rollout", "undo", DEPLOY)
    rolled_out(sandbox)
    assert [row[0] for row in history(sandbox)] == ["2", "3"]
    after = get(sandbox, "replicasets")["items"]
    assert {rs["metadata"]["name"] for rs in after} == before
    env = get(sandbox, DEPLOY)["spec"]["template"]["spec"]["containers"][0].get("env") or []
    assert "ROLLOUT_TRY" not in {e["name"] for e in env}
    # Paused: a template change waits, and the Deployment says so; resumed, it rolls.
    kubectl(sandbox, "rollout", "pause", DEPLOY)
    kubectl(sandbox, "set", "env", DEPLOY, "ROLLOUT_TRY=2")

    def paused() -> bool:
        status = get(sandbox, DEPLOY)["status"]
        progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
        return progressing["reason"] == "DeploymentPaused"

    wait_for(paused, 10, "the DeploymentPaused condition")
    assert len(get(sandbox, "replicasets")["items"]) == 2
    undo = sandbox.kubectl("rollout", "undo", DEPLOY, "-n", NAMESPACE)
    assert undo.returncode != 0
    assert "resume it first" in undo.stderr
    kubectl(sandbox, "rollout", "resume", DEPLOY)
    rolled_out(sandbox)
    assert [row[0] for row in history(sandbox)] == ["2", "3", "4"]


def test_delete_cascades_down_the_chain(sandbox: RunningSandbox) -> None:
    rolled_out(sandbox)
    kubectl(sandbox, "delete", DEPLOY)
    assert get(sandbox, "replicasets")["items"] == []

    def pods_gone() -> bool:
        return not get(sandbox, "pods")["items"]

    wait_for(pods_gone, 60, "the pods to go with their ReplicaSets")
