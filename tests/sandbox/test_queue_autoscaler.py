"""End to end with the fake engine: the queue autoscaler on the sandbox (issue 18).

The sandbox starts on the poster's CPU HPA; `kubectl apply -k kustomize/overlays/sandbox-queue`
switches the running HPA to chats in flight plus waiting (the pods roll once, for the scrape
annotations); the custom metrics API answers kubectl; load scales the Deployment up on the
metric; bad input gives upstream's conditions and Status errors while the sandbox keeps running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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

pytestmark = pytest.mark.slow(
    reason="a live sandbox whose HPA switches to the queue metric and scales under load"
)

HPA = f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/llm-backend"
METRIC = "kube_llm_chats_active"
CUSTOM = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/*/{METRIC}"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    # Chats of about 2 s each, so a few users keep every pod busy with one in flight and more
    # waiting (MAX_INFLIGHT=1 in the sandbox overlay).
    running = start_sandbox(
        tmp_path_factory.mktemp("queue"),
        "--hpa-sync-seconds",
        "2",
        engine_cmd=fake_engine_cmd(busy_ms_per_token=1, token_delay=0.1, tokens=20),
    )
    yield running
    if running.process.poll() is None:
        running.stop()


def hpa(sandbox: RunningSandbox) -> dict[str, Any]:
    with sandbox.http() as http:
        body: dict[str, Any] = http.get(HPA).json()
    return body


def condition(sandbox: RunningSandbox, kind: str) -> dict[str, str]:
    conditions = hpa(sandbox).get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), {})


def test_applying_the_queue_overlay_switches_the_running_hpa(sandbox: RunningSandbox) -> None:
    before = sandbox.kubectl("get", "--raw", CUSTOM)
    assert before.returncode != 0
    assert f"the server could not find the metric {METRIC} for pods" in before.stderr
    # kubectl's default validation, as a user types it: it reads the sandbox's OpenAPI.
    applied = sandbox.kubectl("apply", "-k", str(ROOT / "kustomize" / "overlays" / "sandbox-queue"))
    assert applied.returncode == 0, applied.stderr
    assert hpa(sandbox)["spec"]["metrics"][0]["type"] == "Pods"

    def valid() -> bool:
        # The CPU HPA's own ValidMetricFound stays until the controller syncs the new spec.
        active = condition(sandbox, "ScalingActive")
        return active.get("reason") == "ValidMetricFound" and "pods metric" in active["message"]

    wait_for(valid, 90, "the HPA to read the pods metric")
    assert condition(sandbox, "ScalingActive")["message"] == (
        f"the HPA was able to successfully calculate a replica count from pods metric {METRIC}"
    )
    listed = sandbox.kubectl("get", "--raw", CUSTOM)
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)["items"]
    # Prometheus scrapes Running pods, Ready or not (a pod still warming up answers /metrics)
    names = {p["metadata"]["name"] for p in sandbox.pods()}
    assert items
    assert {i["describedObject"]["name"] for i in items} <= names
    table = sandbox.kubectl("get", "hpa", "llm-backend")
    assert "/2 " in table.stdout, table.stdout  # TARGETS: <current>/2, as kubectl prints it


def test_load_scales_up_on_chats_in_flight_plus_waiting(sandbox: RunningSandbox) -> None:
    wait_for(lambda: condition(sandbox, "ScalingActive").get("status") == "True", 90, "valid")
    with sandbox.chat_users(8) as failures:
        wait_for(lambda: sandbox.deployment_replicas() > 2, 90, "the HPA to scale up on the metric")
    assert failures == []
    assert sandbox.deployment_replicas() <= 6
    with sandbox.http() as http:
        events = http.get(f"/api/v1/namespaces/{NAMESPACE}/events").json()["items"]
    rescales = [e["message"] for e in events if e["reason"] == "SuccessfulRescale"]
    assert any(f"pods metric {METRIC} above target" in m for m in rescales), rescales


def test_bad_input_gets_upstreams_conditions_and_the_sandbox_keeps_running(
    sandbox: RunningSandbox,
) -> None:
    def patch(metrics: list[dict[str, Any]]) -> Any:
        with sandbox.http() as http:
            return http.patch(
                HPA,
                json={"spec": {"metrics": metrics}},
                headers={"Content-Type": "application/merge-patch+json"},
            )

    pods_metric = {
        "type": "Pods",
        "pods": {"metric": {"name": METRIC}, "target": {"type": "AverageValue"}},
    }
    for bad in ("0", "-1"):
        pods_metric["pods"]["target"]["averageValue"] = bad  # type: ignore[index]
        refused = patch([pods_metric])
        assert refused.status_code == 422, refused.text
        assert "must be positive" in refused.json()["message"]

    pods_metric["pods"]["metric"]["name"] = "kube_llm_nonsense"  # type: ignore[index]
    pods_metric["pods"]["target"]["averageValue"] = "2"  # type: ignore[index]
    assert patch([pods_metric]).status_code == 200

    def failing() -> bool:
        return condition(sandbox, "ScalingActive").get("reason") == "FailedGetPodsMetric"

    wait_for(failing, 30, "FailedGetPodsMetric")
    assert condition(sandbox, "ScalingActive")["message"].endswith(
        "the server could not find the metric kube_llm_nonsense for pods"
    )
    with sandbox.http() as http:
        events = http.get(f"/api/v1/namespaces/{NAMESPACE}/events").json()["items"]
    # as upstream, the failure is also a Warning event (what `kubectl describe hpa` lists)
    assert any(
        e["reason"] == "FailedGetPodsMetric" and "kube_llm_nonsense" in e["message"] for e in events
    )
    external = {
        "type": "External",
        "external": {
            "metric": {"name": "queue_messages"},
            "target": {"type": "AverageValue", "averageValue": "30"},
        },
    }
    assert patch([external]).status_code == 200
    wait_for(
        lambda: condition(sandbox, "ScalingActive").get("reason") == "FailedGetExternalMetric",
        30,
        "FailedGetExternalMetric",
    )
    assert sandbox.process.poll() is None
    assert len(sandbox.ready_pods()) >= 2
