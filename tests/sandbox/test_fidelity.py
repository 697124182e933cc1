"""Issue 9, items 7 to 14: what users hit with kubectl, against one live sandbox (fake engine)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.sandbox.harness import (
    NAMESPACE,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)

pytestmark = pytest.mark.slow(reason="a sandbox for the module; kubectl rolls pods")

COCKPIT = ("--context", "kube-llm-sandbox-cockpit")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("fidelity"),
        "--hpa-sync-seconds",
        "600",
        engine_cmd=fake_engine_cmd(busy_ms_per_token=0),
    )
    yield running
    running.stop()


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def backend_env(sandbox: RunningSandbox) -> list[str]:
    with sandbox.http() as client:
        deployment = client.get(
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llm-backend"
        ).json()
    containers = deployment["spec"]["template"]["spec"]["containers"]
    backend = next(c for c in containers if c["name"] == "backend")
    return [variable["name"] for variable in backend.get("env") or []]


def test_kubectl_set_env_adds_and_removes_a_variable(sandbox: RunningSandbox) -> None:
    ns = ("-n", NAMESPACE)
    ok(sandbox.kubectl(*ns, "set", "env", "deploy/llm-backend", "-c", "backend", "EXTRA=1"))
    assert "EXTRA" in backend_env(sandbox)
    ok(sandbox.kubectl(*ns, "set", "env", "deploy/llm-backend", "-c", "backend", "EXTRA-"))
    assert "EXTRA" not in backend_env(sandbox)
    assert "POD_NAME" in backend_env(sandbox)
    ok(sandbox.kubectl(*ns, "rollout", "status", "deploy/llm-backend", "--timeout=90s"))


def test_auth_can_i_list_shows_the_cockpits_role(sandbox: RunningSandbox) -> None:
    listed = ok(sandbox.kubectl(*COCKPIT, "auth", "can-i", "--list", "-n", NAMESPACE))
    lines = {" ".join(line.split()) for line in listed.splitlines()}
    assert any(line.startswith("pods/eviction [] [] [create]") for line in lines), listed
    assert any(line.startswith("pods [] [] [get list watch delete]") for line in lines), listed
    assert not any(line.startswith("secrets") for line in lines)
    admin = ok(sandbox.kubectl("auth", "can-i", "--list", "-n", NAMESPACE))
    assert any(line.split()[:1] == ["*.*"] for line in admin.splitlines()), admin


def test_auth_whoami_names_the_caller(sandbox: RunningSandbox) -> None:
    cockpit = json.loads(ok(sandbox.kubectl(*COCKPIT, "auth", "whoami", "-o", "json")))
    info = cockpit["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{NAMESPACE}:kube-llm-cockpit"
    assert f"system:serviceaccounts:{NAMESPACE}" in info["groups"]
    admin = json.loads(ok(sandbox.kubectl("auth", "whoami", "-o", "json")))
    assert "system:masters" in admin["status"]["userInfo"]["groups"]


def test_kubectl_version_has_no_skew_warning(sandbox: RunningSandbox) -> None:
    result = sandbox.kubectl("version")
    assert result.returncode == 0, result.stderr
    assert "skew" not in (result.stdout + result.stderr).lower()
    client_minor = json.loads(sandbox.kubectl("version", "-o", "json").stdout)
    served = int(client_minor["serverVersion"]["minor"])
    assert abs(served - int(client_minor["clientVersion"]["minor"])) <= 1
    node = json.loads(ok(sandbox.kubectl("get", "node", "sandbox", "-o", "json")))
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith(f"v1.{served}.")


def test_pods_settle(sandbox: RunningSandbox) -> None:
    wait_for(lambda: len(sandbox.ready_pods()) == 2, 90, "two Ready pods")


def test_kubectl_logs_flags(sandbox: RunningSandbox) -> None:
    pod = wait_for(lambda: sandbox.ready_pods(), 90, "a Ready pod")[0]
    logs = ("logs", pod, "-c", "backend", "-n", NAMESPACE)
    whole = ok(sandbox.kubectl(*logs))
    assert "Application startup complete" in whole
    assert ok(sandbox.kubectl(*logs, "--tail=0")) == ""
    last = ok(sandbox.kubectl(*logs, "--tail=1"))
    assert last.count("\n") == 1
    assert whole.endswith(last)
    stamped = ok(sandbox.kubectl(*logs, "--timestamps", "--tail=1"))
    moment = stamped.split(" ", 1)[0]
    assert moment.endswith("Z"), stamped
    assert dt.datetime.fromisoformat(moment[:26] + "+00:00").year >= 2026
    assert stamped.split(" ", 1)[1] == last
    # From the last line's own time on, only the lines written since then come back.
    recent = ok(sandbox.kubectl(*logs, f"--since-time={moment}"))
    assert recent.endswith(last)
    assert len(recent) <= len(whole)
    assert ok(sandbox.kubectl(*logs, "--since-time=2099-01-01T00:00:00Z")) == ""
    assert ok(sandbox.kubectl(*logs, "--since-time=2000-01-01T00:00:00Z")).startswith(whole[:200])
    previous = sandbox.kubectl(*logs, "--previous")
    assert previous.returncode != 0
    assert "previous terminated container" in previous.stderr


def test_logs_go_to_a_folder_per_run(sandbox: RunningSandbox) -> None:
    root = sandbox.kubeconfig.parent / "logs"
    runs = [p for p in root.iterdir() if p.name.startswith("run-")]
    assert len(runs) == 1
    assert (root / "latest").resolve() == runs[0].resolve()
    assert any(p.name.endswith("_backend.log") for p in runs[0].iterdir())
    assert not list(root.glob("*.log"))


def test_events_and_annotations_say_what_really_runs(sandbox: RunningSandbox) -> None:
    pod = wait_for(lambda: sandbox.ready_pods(), 90, "a Ready pod")[0]
    with sandbox.http() as client:
        obj = client.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}").json()
        events = client.get(
            f"/api/v1/namespaces/{NAMESPACE}/events",
            params={"fieldSelector": f"involvedObject.name={pod}"},
        ).json()["items"]
    annotations = obj["metadata"]["annotations"]
    assert "tests.fakes.engine" in annotations["sandbox.kube-llm.io/runs-engine"]
    assert "-m backend" in annotations["sandbox.kube-llm.io/runs-backend"]
    assert "nothing" in annotations["sandbox.kube-llm.io/runs-model-pull"]
    messages = [event["message"] for event in events]
    assert not any("already present on machine" in m for m in messages), messages
    engine = [e for e in events if e["reason"] == "Substituted" and "engine" in e["message"]]
    assert engine
    assert "ollama/ollama" in engine[0]["message"]
    assert "tests.fakes.engine" in engine[0]["message"]


def test_deployment_events_name_the_replica_set(sandbox: RunningSandbox) -> None:
    # Issue 14: the Deployment's ReplicaSet is real, so its events name it, as upstream's do.
    ns = ("-n", NAMESPACE)
    ok(sandbox.kubectl(*ns, "scale", "deploy/llm-backend", "--replicas=3"))
    try:
        wait_for(lambda: len(sandbox.pods()) == 3, 30, "a third pod")
    finally:
        ok(sandbox.kubectl(*ns, "scale", "deploy/llm-backend", "--replicas=2"))
    backend = ("-l", "app.kubernetes.io/name=llm-backend")  # the frontend has a ReplicaSet too
    listed = json.loads(ok(sandbox.kubectl(*ns, "get", "rs", *backend, "-o", "json")))["items"]
    [replicaset] = [rs["metadata"]["name"] for rs in listed if rs["spec"]["replicas"] > 0]
    described = ok(sandbox.kubectl(*ns, "describe", "deploy/llm-backend"))
    assert f"Scaled up replica set {replicaset} from 2 to 3" in described
    assert f"Scaled down replica set {replicaset} from 3 to 2" in described
    assert f"NewReplicaSet:   {replicaset} (" in described
    wait_for(lambda: len(sandbox.pods()) == 2, 60, "back to two pods")
