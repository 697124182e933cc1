"""The HPA explainer: table-driven over upstream's conditions, then against the sandbox's HPA."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.sandbox.harness import (
    NAMESPACE,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)
from tui.cluster.convert import hpa_view
from tui.core.model import HpaCondition, HpaMetric, HpaView
from tui.services.explain import explain, metric_label, recommended_replicas

NOW = 1_700_000_000.0


def clock(moment: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(moment))


def cpu(current: int | None, target: int = 70) -> HpaMetric:
    return HpaMetric(
        source="ContainerResource",
        name="cpu",
        container="engine",
        target_utilization=target,
        current_utilization=current,
    )


def memory(current: int | None, target: int = 80) -> HpaMetric:
    return HpaMetric(
        source="ContainerResource",
        name="memory",
        container="backend",
        target_utilization=target,
        current_utilization=current,
    )


def condition(
    kind: str, status: str, reason: str, message: str = "", since: float | None = None
) -> HpaCondition:
    return HpaCondition(type=kind, status=status, reason=reason, message=message, since=since)


def make(
    current: int = 2,
    desired: int | None = None,
    metrics: tuple[HpaMetric, ...] = (cpu(3), memory(28)),
    able: str = "ReadyForNewScale",
    active: tuple[str, str] = ("True", "ValidMetricFound"),
    limited: str | None = None,
    down_window: int = 30,
    up_window: int = 0,
    able_status: str = "True",
    active_message: str = "",
    active_since: float = NOW - 40,
) -> HpaView:
    """An HPA as the adapter hands it over, with upstream's conditions."""
    conditions = (
        condition("AbleToScale", able_status, able, "", NOW - 100),
        condition("ScalingActive", active[0], active[1], active_message, active_since),
        condition(
            "ScalingLimited",
            "True" if limited else "False",
            limited or "DesiredWithinRange",
            "",
            NOW - 100,
        ),
    )
    return HpaView(
        name="llm-backend",
        min_replicas=2,
        max_replicas=6,
        current_replicas=current,
        desired_replicas=current if desired is None else desired,
        metrics=metrics,
        conditions=conditions,
        scale_up_window_seconds=up_window,
        scale_down_window_seconds=down_window,
    )


NO_METRICS = (
    "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to "
    "get metrics for resource cpu: no metrics returned from resource metrics API"
)

CASES: list[tuple[str, HpaView | None, int | None, str]] = [
    ("no HPA", None, None, "no HPA"),
    (
        "scaling up",
        make(2, 4, (cpu(187), memory(28)), able="SucceededRescale"),
        None,
        "scaling up: engine CPU 187 % of request against a 70 % target, 2 -> 4",
    ),
    (
        "scaling up, capped by the scale-up policy",
        make(2, 4, (cpu(300), memory(28)), able="SucceededRescale", limited="ScaleUpLimit"),
        None,
        "scaling up: engine CPU 300 % of request against a 70 % target, 2 -> 4 "
        "(as fast as the scale-up policy allows; wants 6)",
    ),
    (
        "scaling up to the maximum",
        make(4, 6, (cpu(300), memory(28)), able="SucceededRescale", limited="TooManyReplicas"),
        None,
        "scaling up: engine CPU 300 % of request against a 70 % target, 4 -> 6 "
        "(capped at the maximum 6)",
    ),
    (
        "scaling up to the minimum",
        make(1, 2, (cpu(3), memory(28)), able="SucceededRescale"),
        None,
        "scaling up to the minimum: 1 -> 2",
    ),
    (
        "scaling down",
        make(4, 2, (cpu(3), memory(28)), able="SucceededRescale"),
        None,
        "scaling down: 4 -> 2: engine CPU 3 % against 70 %, backend memory 28 % against 80 %",
    ),
    (
        "scaling down, capped by the scale-down policy",
        make(6, 4, (cpu(3), memory(28)), able="SucceededRescale", limited="ScaleDownLimit"),
        None,
        "scaling down: 6 -> 4: engine CPU 3 % against 70 %, backend memory 28 % against 80 % "
        "(as fast as the scale-down policy allows; wants 3)",
    ),
    (
        "at maximum",
        make(6, 6, (cpu(187), memory(28)), limited="TooManyReplicas"),
        None,
        "at maximum 6: engine CPU 187 % against 70 %",
    ),
    (
        "at minimum",
        make(2, 2, (cpu(3), memory(28)), limited="TooFewReplicas"),
        None,
        "at minimum 2: engine CPU 3 %, backend memory 28 %, all below target",
    ),
    (
        "at minimum while a lower recommendation is being stabilised",
        make(2, 2, (cpu(3), memory(28)), able="ScaleDownStabilized"),
        None,
        "at minimum 2: engine CPU 3 %, backend memory 28 %, all below target",
    ),
    (
        "within tolerance",
        make(3, 3, (cpu(72), memory(28))),
        None,
        "holding: within tolerance (engine CPU 72 % against 70 %)",
    ),
    (
        "scale-down stabilisation",
        make(4, 4, (cpu(20), memory(28)), able="ScaleDownStabilized"),
        None,
        "scale-down waits for the 30 s stabilisation window (wants 2, keeps 4)",
    ),
    (
        "scale-up stabilisation",
        make(2, 2, (cpu(187), memory(28)), able="ScaleUpStabilized", up_window=60),
        None,
        "scale-up waits for the 60 s stabilisation window (wants 6, keeps 2)",
    ),
    (
        "scale-up stabilisation counted over the ready pods",
        make(4, 4, (cpu(150), memory(28)), able="ScaleUpStabilized", up_window=60),
        2,
        "scale-up waits for the 60 s stabilisation window (wants 5, keeps 4)",
    ),
    (
        "no metrics for longer than metrics-server takes",
        make(
            2,
            2,
            (cpu(None), memory(None)),
            active=("False", "FailedGetContainerResourceMetric"),
            active_message=NO_METRICS,
            active_since=NOW - 400,
        ),
        None,
        f"not scaling since {clock(NOW - 400)}: no metrics "
        f"(FailedGetContainerResourceMetric: {NO_METRICS}); is metrics-server running?",
    ),
    (
        "no metrics yet: the first minute of a Minikube deployment",
        make(
            2,
            2,
            (cpu(None), memory(None)),
            active=("False", "FailedGetContainerResourceMetric"),
            active_message=NO_METRICS,
        ),
        None,
        f"waits for metrics since {clock(NOW - 40)}: no pod measured yet; metrics-server "
        "measures a pod from its second sample, once a minute on Minikube "
        "(FailedGetContainerResourceMetric)",
    ),
    (
        "no metrics for new pods, for long",
        make(
            2,
            2,
            (cpu(None), memory(None)),
            active=("False", "FailedGetContainerResourceMetric"),
            active_message="the HPA was unable to compute the replica count: failed to get cpu "
            "utilization: did not receive metrics for targeted pods (pods might be unready)",
            active_since=NOW - 400,
        ),
        None,
        f"not scaling since {clock(NOW - 400)}: no metrics (FailedGetContainerResourceMetric: the "
        "HPA was unable to compute the replica count: failed to get cpu utilization: did not "
        "receive metrics for targeted pods (pods might be unready)); the pods may be too new to "
        "have metrics; if it lasts, is metrics-server running?",
    ),
    (
        "no metrics for new pods yet",
        make(
            2,
            2,
            (cpu(None), memory(None)),
            active=("False", "FailedGetContainerResourceMetric"),
            active_message="the HPA was unable to compute the replica count: failed to get cpu "
            "utilization: did not receive metrics for targeted pods (pods might be unready)",
        ),
        None,
        f"waits for metrics since {clock(NOW - 40)}: no pod measured yet; metrics-server "
        "measures a pod from its second sample, once a minute on Minikube "
        "(FailedGetContainerResourceMetric)",
    ),
    (
        "a container without a request",
        make(
            2,
            2,
            (cpu(None), memory(None)),
            active=("False", "FailedGetResourceMetric"),
            active_message="failed to get cpu utilization: missing request for cpu in container "
            "engine of Pod llm-backend-1",
        ),
        None,
        f"not scaling since {clock(NOW - 40)}: no metrics (FailedGetResourceMetric: failed to get "
        "cpu utilization: missing request for cpu in container engine of Pod llm-backend-1); a "
        "container the HPA measures sets no request for that resource",
    ),
    (
        "no custom metrics",
        make(
            2,
            2,
            (HpaMetric(source="Pods", name="rps", target_value="10"),),
            active=("False", "FailedGetPodsMetric"),
            active_message="unable to fetch metrics from custom metrics API",
        ),
        None,
        f"not scaling since {clock(NOW - 40)}: no metrics (FailedGetPodsMetric: unable to fetch "
        "metrics from custom metrics API); is the custom or external metrics adapter running?",
    ),
    (
        "scaling disabled",
        make(0, 0, active=("False", "ScalingDisabled")),
        None,
        f"not scaling since {clock(NOW - 40)}: autoscaling is disabled (the target has 0 replicas)",
    ),
    (
        "cannot get the scale",
        make(2, 2, able="FailedGetScale", able_status="False"),
        None,
        f"not scaling since {clock(NOW - 100)}: cannot read the target's scale (FailedGetScale)",
    ),
    (
        "backoff",
        make(2, 2, able="BackoffBoth", able_status="False"),
        None,
        f"holding since {clock(NOW - 100)}: waiting after the last resize (BackoffBoth)",
    ),
    (
        "above target while a new pod is not Ready yet",
        make(3, 3, (cpu(98), memory(29))),
        2,
        "holding at 3: engine CPU 98 % against 70 %, but 1 of the 3 pods is not Ready yet and "
        "counts as idle",
    ),
    (
        "below target but every pod still needed",
        make(4, 4, (cpu(55), memory(36))),
        None,
        "holding at 4: engine CPU 55 % against 70 %, backend memory 36 % against 80 % "
        "(the metrics still ask for 4)",
    ),
    (
        "a value metric",
        make(
            3,
            3,
            (HpaMetric(source="Pods", name="rps", target_value="10", current_value="9500m"),),
        ),
        None,
        "holding at 3: rps 9500m against 10",
    ),
]


@pytest.mark.parametrize(
    ("hpa", "ready_pods", "expected"),
    [pytest.param(hpa, ready, expected, id=name) for name, hpa, ready, expected in CASES],
)
def test_explains(hpa: HpaView | None, ready_pods: int | None, expected: str) -> None:
    assert explain(hpa, NOW, ready_pods) == expected


def test_first_sync_pending() -> None:
    fresh = HpaView(
        name="llm-backend", min_replicas=2, max_replicas=6, current_replicas=0, desired_replicas=0
    )
    assert explain(fresh, NOW) == (
        "waiting for the HPA controller's first sync (0 replicas, min 2, max 6)"
    )


def test_metric_labels() -> None:
    assert metric_label(cpu(1)) == "engine CPU"
    assert metric_label(memory(1)) == "backend memory"
    assert metric_label(HpaMetric(source="Resource", name="cpu")) == "pod CPU"
    assert metric_label(HpaMetric(source="External", name="queue_depth")) == "queue_depth"


def test_recommendation_follows_the_tolerance() -> None:
    # 76 % against 70 % is within 10 %: the count stays; 78 % is not: ceil(4 * 78 / 70) = 5.
    assert recommended_replicas(make(4, 4, (cpu(76),))) == 4
    assert recommended_replicas(make(4, 4, (cpu(78),))) == 5
    assert recommended_replicas(make(4, 4, (cpu(1), memory(2)))) == 2  # never below the minimum
    assert recommended_replicas(make(4, 4, (cpu(None),))) is None


metric_strategy = st.builds(
    HpaMetric,
    source=st.sampled_from(["ContainerResource", "Resource", "Pods", "External"]),
    name=st.text(max_size=8),
    container=st.none() | st.text(max_size=8),
    target_utilization=st.none() | st.integers(-5, 300),
    target_value=st.none() | st.text(max_size=5),
    current_utilization=st.none() | st.integers(-5, 1000),
    current_value=st.none() | st.text(max_size=5),
)
condition_strategy = st.builds(
    HpaCondition,
    type=st.sampled_from(["AbleToScale", "ScalingActive", "ScalingLimited", "Other"]),
    status=st.sampled_from(["True", "False", "Unknown"]),
    reason=st.sampled_from(
        [
            "ScaleDownStabilized",
            "ScaleUpStabilized",
            "TooFewReplicas",
            "TooManyReplicas",
            "ScaleUpLimit",
            "ScaleDownLimit",
            "FailedGetResourceMetric",
            "BackoffBoth",
        ]
    )
    | st.text(max_size=10),
    message=st.text(max_size=30),
    since=st.none() | st.floats(0, 2e9),
)


@given(
    st.builds(
        HpaView,
        name=st.just("h"),
        min_replicas=st.integers(0, 10),
        max_replicas=st.integers(0, 10),
        current_replicas=st.integers(0, 12),
        desired_replicas=st.integers(0, 12),
        metrics=st.lists(metric_strategy, max_size=3).map(tuple),
        conditions=st.lists(condition_strategy, max_size=4).map(tuple),
    ),
    st.none() | st.integers(0, 12),
)
def test_any_status_gives_one_line(hpa: HpaView, ready_pods: int | None) -> None:
    line = explain(hpa, NOW, ready_pods)
    assert line
    assert "\n" not in line
    assert "\r" not in line


# --- against the sandbox's HPA controller -----------------------------------------------------

HPA_PATH = f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/llm-backend"
PROXY = f"/api/v1/namespaces/{NAMESPACE}/services/llm-backend:http/proxy"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("explain"),
        "--hpa-sync-seconds",
        "1",
        engine_cmd=fake_engine_cmd(busy_ms_per_token=5, tokens=12),
    )
    yield running
    if running.process.poll() is None:
        running.stop()


def read_hpa(sandbox: RunningSandbox) -> dict[str, Any]:
    with sandbox.http() as http:
        response = http.get(HPA_PATH)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


@pytest.mark.slow(reason="waits for the sandbox's HPA")
def test_idle_sandbox_is_at_minimum(sandbox: RunningSandbox) -> None:
    def synced() -> dict[str, Any]:
        hpa = read_hpa(sandbox)
        metrics = hpa.get("status", {}).get("currentMetrics") or []
        return hpa if len(metrics) == 2 else {}

    hpa = hpa_view(wait_for(synced, 60, "the HPA's first sync with both metrics"))
    line = explain(hpa, time.time(), len(sandbox.ready_pods()))
    assert line.startswith(("at minimum 2", "holding")), (line, hpa)
    assert "engine CPU" in line
    assert "backend memory" in line


@pytest.mark.slow(reason="waits for the sandbox's HPA")
def test_explains_a_real_scale_up(sandbox: RunningSandbox) -> None:
    wait_for(lambda: len(sandbox.ready_pods()) == 2, 60, "two Ready pods")
    stop = threading.Event()

    def user() -> None:
        with sandbox.http() as http:
            while not stop.is_set():
                http.post(
                    f"{PROXY}/v1/chat/completions",
                    json={"model": "smollm2:135m", "messages": [{"role": "user", "content": "go"}]},
                )

    users = [threading.Thread(target=user, daemon=True) for _ in range(6)]
    for thread in users:
        thread.start()
    seen: list[tuple[str, HpaView]] = []
    try:

        def scaling_up() -> bool:
            hpa = hpa_view(read_hpa(sandbox))
            line = explain(hpa, time.time())
            seen.append((line, hpa))
            return hpa.desired_replicas > hpa.current_replicas

        wait_for(scaling_up, 90, "the HPA to decide a scale-up", interval=0.3)
    finally:
        stop.set()
        for thread in users:
            thread.join(30)
    line, hpa = seen[-1]
    assert line.startswith("scaling up: engine CPU "), (line, hpa)
    assert f"{hpa.current_replicas} -> {hpa.desired_replicas}" in line
    # Every line before it matched what the status said at that moment.
    for earlier, status in seen:
        if status.desired_replicas == status.current_replicas:
            assert not earlier.startswith(("scaling up", "scaling down")), (earlier, status)
