"""Issue 9, items 1 and 2: a server-side dry run changes nothing; one sandbox per state folder.

One live sandbox (fake engine) serves the module; kubectl from the venv drives it as users do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.harness import (
    NAMESPACE,
    ROOT,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)

pytestmark = pytest.mark.slow(reason="a sandbox for the module; waits to see that nothing changed")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("dry-run"),
        "--hpa-sync-seconds",
        "600",  # no HPA rescale may muddle "nothing changed"
        engine_cmd=fake_engine_cmd(busy_ms_per_token=0),
    )
    yield running
    running.stop()


def snapshot(sandbox: RunningSandbox) -> dict[str, Any]:
    """What a dry run must leave as it was: pods (uid, deletion, annotations), the
    Deployment's spec and generation, the node's spec, and the ConfigMaps' names."""
    with sandbox.http() as client:
        deployment = client.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llm-backend")
        node = client.get("/api/v1/nodes/sandbox")
        configmaps = client.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps")
    pods = {
        pod["metadata"]["uid"]: (
            pod["metadata"].get("deletionTimestamp"),
            pod["metadata"].get("annotations"),
        )
        for pod in sandbox.pods()
    }
    return {
        "pods": pods,
        "deployment": (
            deployment.json()["spec"],
            deployment.json()["metadata"]["generation"],
        ),
        "node": node.json().get("spec"),
        "configmaps": sorted(cm["metadata"]["name"] for cm in configmaps.json()["items"]),
    }


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kubectl_dry_runs_change_nothing(sandbox: RunningSandbox) -> None:
    wait_for(lambda: len(sandbox.ready_pods()) == 2, 60, "two Ready pods")
    before = snapshot(sandbox)
    pod = sandbox.ready_pods()[0]
    ns = ["-n", NAMESPACE]
    out = ok(sandbox.kubectl(*ns, "delete", "pod", "--all", "--dry-run=server"))
    # Every pod of the namespace: the 2 backend and the 2 frontend pods.
    assert out.count("(server dry run)") == 4, out
    ok(sandbox.kubectl(*ns, "set", "env", "deploy/llm-backend", "DRY=1", "--dry-run=server"))
    ok(sandbox.kubectl(*ns, "annotate", "pod", pod, "dry=run", "--dry-run=server"))
    ok(sandbox.kubectl(*ns, "scale", "deploy/llm-backend", "--replicas=5", "--dry-run=server"))
    drained = sandbox.kubectl(
        "drain", "sandbox", "--ignore-daemonsets", "--dry-run=server", "--timeout=20s"
    )
    # The PDB may refuse one of the two evictions; what matters is that nothing happened.
    assert "cordoned (server dry run)" in drained.stdout, drained.stderr
    ok(sandbox.kubectl(*ns, "delete", "deploy/llm-backend", "--dry-run=server"))
    # Give anything a dry run might have started (a rollout, a replacement) time to show.
    time.sleep(1.5)
    assert snapshot(sandbox) == before
    assert len(sandbox.ready_pods()) == 2


def test_dry_run_answers_as_if_done(sandbox: RunningSandbox) -> None:
    pod = sandbox.ready_pods()[0]
    base = f"/api/v1/namespaces/{NAMESPACE}"
    with sandbox.http() as client:
        created = client.post(
            f"{base}/configmaps",
            params={"dryRun": "All"},
            json={"metadata": {"name": "would-be"}, "data": {"a": "b"}},
        )
        assert created.status_code == 201, created.text
        assert created.json()["metadata"]["uid"]
        assert client.get(f"{base}/configmaps/would-be").status_code == 404
        deleted = client.delete(f"{base}/pods/{pod}", params={"dryRun": "All"})
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["metadata"]["deletionTimestamp"]
        assert not client.get(f"{base}/pods/{pod}").json()["metadata"].get("deletionTimestamp")
        evicted = client.post(
            f"{base}/pods/{pod}/eviction",
            json={
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": pod},
                "deleteOptions": {"dryRun": ["All"], "gracePeriodSeconds": 0},
            },
        )
        assert evicted.status_code == 201, evicted.text
        assert client.get(f"{base}/pods/{pod}").status_code == 200
        unknown = client.delete(f"{base}/pods/{pod}", params={"dryRun": "Some"})
        assert unknown.status_code == 400
        assert unknown.json()["kind"] == "Status"
        assert "dryRun" in unknown.json()["message"]
        token = client.post(
            f"{base}/serviceaccounts/kube-llm-cockpit/token",
            params={"dryRun": "All"},
            json={"spec": {}},
        )
        assert token.status_code == 400, token.text
    assert pod in sandbox.ready_pods()


def test_a_second_sandbox_on_the_same_folder_refuses(sandbox: RunningSandbox) -> None:
    kubeconfig = sandbox.kubeconfig
    before = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for p in kubeconfig.parent.rglob("*")
        if p.is_file() and p.name != "sandbox.out"
    }
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--kubeconfig",
            str(kubeconfig),
            "--engine-cmd",
            fake_engine_cmd(),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode != 0
    message = second.stderr
    assert "a sandbox is already running" in message
    assert f"pid {sandbox.process.pid}" in message
    assert sandbox.server in message
    after = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for p in kubeconfig.parent.rglob("*")
        if p.is_file() and p.name != "sandbox.out" and p in before
    }
    assert after == before
    # The first one is still reachable with its kubeconfig.
    assert sandbox.kubectl("get", "--raw", "/version").returncode == 0


def test_a_second_sandbox_in_another_folder_runs(sandbox: RunningSandbox, tmp_path: Path) -> None:
    other = start_sandbox(tmp_path / "other", engine_cmd=fake_engine_cmd(), ready_pods=0)
    try:
        assert other.server != sandbox.server
        assert other.kubectl("get", "--raw", "/version").returncode == 0
        assert sandbox.kubectl("get", "--raw", "/version").returncode == 0
        lock = json.loads((tmp_path / "other" / "sandbox.lock").read_text())
        assert lock == {"pid": other.process.pid, "server": other.server}
    finally:
        assert other.stop() == 0
