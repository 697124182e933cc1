"""End to end with the fake engine: self-healing, HPA up under load and back down, clean exit."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psutil
import pytest

from tests.sandbox.harness import (
    NAMESPACE,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)

pytestmark = pytest.mark.slow(
    reason="a sandbox for the module; rolls pods, waits for the HPA and drains"
)

PROXY = f"/api/v1/namespaces/{NAMESPACE}/services/llm-backend:http/proxy"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("e2e"),
        "--hpa-sync-seconds",
        "2",
        engine_cmd=fake_engine_cmd(busy_ms_per_token=5, tokens=12),
    )
    yield running
    if running.process.poll() is None:
        running.stop()


def backend_process(sandbox: RunningSandbox, pod: str) -> psutil.Process:
    """The `python -m backend` process of one pod (found by its POD_NAME)."""
    for process in sandbox.descendants():
        try:
            if "backend" in process.cmdline() and process.environ().get("POD_NAME") == pod:
                return process
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no backend process for {pod}")


def events(sandbox: RunningSandbox, reason: str) -> list[dict[str, object]]:
    with sandbox.http() as http:
        items = http.get(f"/api/v1/namespaces/{NAMESPACE}/events").json()["items"]
    return [e for e in items if e["reason"] == reason]


def test_two_pods_come_up_ready(sandbox: RunningSandbox) -> None:
    assert len(sandbox.ready_pods()) == 2
    with sandbox.http() as http:
        answer = http.post(
            f"{PROXY}/v1/chat/completions",
            json={"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"]


def test_deleted_pod_is_replaced(sandbox: RunningSandbox) -> None:
    victim, survivor = sorted(sandbox.ready_pods())
    with sandbox.http() as http:
        http.delete(f"/api/v1/namespaces/{NAMESPACE}/pods/{victim}").raise_for_status()
    started = time.monotonic()
    ready = wait_for(
        lambda: (names := set(sandbox.ready_pods())) - {victim, survivor} and names,
        60,
        "a Ready replacement",
    )
    recovery_seconds = time.monotonic() - started
    assert victim not in ready
    assert survivor in ready
    assert recovery_seconds < 30
    wait_for(lambda: len(sandbox.pods()) == 2, 60, "the deleted pod to finish terminating")


def test_crashed_container_is_restarted(sandbox: RunningSandbox) -> None:
    pod = sorted(sandbox.ready_pods())[0]
    backend_process(sandbox, pod).kill()

    def restarted() -> bool:
        (status,) = [p for p in sandbox.pods() if p["metadata"]["name"] == pod]
        (backend,) = status["status"]["containerStatuses"]
        return backend["restartCount"] == 1 and backend["ready"]

    wait_for(restarted, 60, "the backend container restarted and Ready again")
    (status,) = [p for p in sandbox.pods() if p["metadata"]["name"] == pod]
    (backend,) = status["status"]["containerStatuses"]
    assert backend["lastState"]["terminated"]["exitCode"] == 137
    assert backend_process(sandbox, pod).is_running()


def test_hpa_scales_up_under_load_and_back_down(sandbox: RunningSandbox) -> None:
    wait_for(lambda: len(sandbox.ready_pods()) == 2, 60, "two Ready pods")
    with sandbox.chat_users(6) as failures:
        wait_for(lambda: sandbox.deployment_replicas() > 2, 90, "the HPA to scale up")
        assert sandbox.deployment_replicas() <= 6
        rescales = events(sandbox, "SuccessfulRescale")
        assert any("above target" in str(e["message"]) for e in rescales), rescales
        wait_for(lambda: len(sandbox.ready_pods()) > 2, 60, "the new pods Ready")
    assert failures == []
    with sandbox.http() as http:
        hpa = http.get(
            f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/llm-backend"
        ).json()
        cpu = hpa["status"]["currentMetrics"][0]["containerResource"]
        assert cpu["name"] == "cpu"
        # A demo-sized scale-down window (the overlay's is 30 s), through the API, as on a cluster.
        http.patch(
            f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/llm-backend",
            json={
                "spec": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": 4,
                            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}],
                        }
                    }
                }
            },
            headers={"Content-Type": "application/merge-patch+json"},
        ).raise_for_status()

    def back_to_minimum() -> bool:
        return sandbox.deployment_replicas() == 2

    wait_for(back_to_minimum, 60, "the HPA to return to minReplicas")
    assert any("below target" in str(e["message"]) for e in events(sandbox, "SuccessfulRescale"))


def test_rolling_restart(sandbox: RunningSandbox) -> None:
    wait_for(lambda: len(sandbox.pods()) == 2, 60, "two pods and none terminating")
    before = {p["metadata"]["labels"]["pod-template-hash"] for p in sandbox.pods()}
    result = sandbox.kubectl("rollout", "restart", "deployment/llm-backend", "-n", NAMESPACE)
    assert result.returncode == 0, result.stderr
    status = sandbox.kubectl(
        "rollout", "status", "deployment/llm-backend", "-n", NAMESPACE, "--timeout=90s", timeout=100
    )
    assert status.returncode == 0, status.stderr
    assert "successfully rolled out" in status.stdout
    ready = wait_for(
        lambda: r if len(r := sandbox.ready_pods()) == 2 else None, 30, "two Ready pods"
    )
    hashes = {
        p["metadata"]["labels"]["pod-template-hash"]
        for p in sandbox.pods()
        if p["metadata"]["name"] in ready
    }
    assert len(hashes) == 1
    assert not hashes & before


def test_shutdown_leaves_no_process(sandbox: RunningSandbox) -> None:
    children = sandbox.descendants()
    assert len(children) >= 4  # two pods: an engine and a backend each
    assert sandbox.stop(timeout=30) == 0
    alive = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert "stopped; no process left behind" in sandbox.log()
    assert not sandbox.kubeconfig.exists()


def test_even_a_killed_sandbox_leaves_no_process(tmp_path_factory: pytest.TempPathFactory) -> None:
    running = start_sandbox(
        tmp_path_factory.mktemp("killed"), engine_cmd=fake_engine_cmd(busy_ms_per_token=0)
    )
    children = running.descendants()
    assert len(children) >= 4
    running.process.kill()  # SIGKILL: no chance to clean up; the children die with it
    running.process.wait()

    def all_gone() -> bool:
        return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in children)

    wait_for(all_gone, 10, "the children of a killed sandbox to exit")
