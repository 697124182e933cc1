"""The sandbox's HPA algorithm against upstream kube-controller-manager behaviour."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.controllers.hpa import (
    HPAConfig,
    HPADecision,
    HPAHistory,
    PodState,
    container_requests,
    decide,
    merge_conditions,
    pod_state,
)
from sandbox.controllers.metrics import ContainerSample, PodSample

ROOT = Path(__file__).resolve().parents[2]

CPU_REQUEST = 250  # millicores, on the engine
MEMORY_REQUEST = 256 * 2**20  # bytes, on the backend


def cpu_metric(target: int = 70, container: str = "engine") -> dict[str, Any]:
    return {
        "type": "ContainerResource",
        "containerResource": {
            "name": "cpu",
            "container": container,
            "target": {"type": "Utilization", "averageUtilization": target},
        },
    }


def memory_metric(target: int = 80, container: str = "backend") -> dict[str, Any]:
    return {
        "type": "ContainerResource",
        "containerResource": {
            "name": "memory",
            "container": container,
            "target": {"type": "Utilization", "averageUtilization": target},
        },
    }


MANIFEST_BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 2, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 300,
        "selectPolicy": "Min",
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
    },
}

_ABSENT = object()


def make_hpa(
    *,
    metrics: Sequence[Mapping[str, Any]] | None = None,
    behavior: Any = _ABSENT,
    min_replicas: int = 2,
    max_replicas: int = 6,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm-backend"},
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "metrics": list(metrics) if metrics is not None else [cpu_metric()],
    }
    if behavior is not _ABSENT:
        spec["behavior"] = copy.deepcopy(behavior)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "llm-backend", "namespace": "kube-llm"},
        "spec": spec,
    }


def make_pods(count: int, **overrides: Any) -> list[PodState]:
    requests = {
        "engine": {"cpu": CPU_REQUEST, "memory": 512 * 2**20},
        "backend": {"cpu": 100, "memory": MEMORY_REQUEST},
    }
    return [PodState(name=f"llm-backend-{i}", requests=requests, **overrides) for i in range(count)]


def sample(
    pod: str,
    engine_cpu_m: int,
    backend_memory: int = 64 * 2**20,
    *,
    timestamp: float = 1000.0,
    window: float = 15.0,
) -> PodSample:
    return PodSample(
        pod,
        timestamp,
        window,
        {
            "engine": ContainerSample(engine_cpu_m * 1_000_000, 300 * 2**20),
            "backend": ContainerSample(20_000_000, backend_memory),
        },
    )


def usage_at(
    pods: Sequence[PodState], cpu_percent: float, *, timestamp: float = 1000.0
) -> dict[str, PodSample]:
    millicores = round(CPU_REQUEST * cpu_percent / 100)
    return {p.name: sample(p.name, millicores, timestamp=timestamp) for p in pods}


def sync(
    hpa: Mapping[str, Any],
    current: int,
    cpu_percent: float,
    now: float,
    history: HPAHistory,
    *,
    pods: Sequence[PodState] | None = None,
) -> HPADecision:
    pods = make_pods(current) if pods is None else pods
    return decide(
        hpa,
        current_replicas=current,
        pods=pods,
        usage=usage_at(pods, cpu_percent, timestamp=now),
        now=now,
        history=history,
    )


def decide_once(
    hpa: Mapping[str, Any],
    current: int,
    pods: Sequence[PodState],
    usage: Mapping[str, PodSample],
) -> HPADecision:
    """One sync with no history (the first the HPA has), at time 1.0."""
    return decide(
        hpa, current_replicas=current, pods=pods, usage=usage, now=1.0, history=HPAHistory()
    )


def reasons(decision: HPADecision) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in decision.conditions}


# --------------------------------------------------------------------------------------------
# The replica calculation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "behavior", [_ABSENT, MANIFEST_BEHAVIOR, {}], ids=["none", "manifest", "empty"]
)
def test_two_replicas_at_140_percent_of_a_70_percent_target_become_four(behavior: Any) -> None:
    decision = sync(make_hpa(behavior=behavior), 2, 140, 1000.0, HPAHistory())

    assert decision.desired_replicas == 4
    assert decision.rescale
    assert decision.metric_replicas == 4
    assert decision.current_metrics == (
        {
            "type": "ContainerResource",
            "containerResource": {
                "name": "cpu",
                "container": "engine",
                "current": {"averageUtilization": 140, "averageValue": "350m"},
            },
        },
    )
    assert reasons(decision) == {
        "AbleToScale": ("True", "SucceededRescale"),
        "ScalingActive": ("True", "ValidMetricFound"),
        "ScalingLimited": ("False", "DesiredWithinRange"),
    }
    assert decision.condition("ScalingActive")["message"] == (  # type: ignore[index]
        "the HPA was able to successfully calculate a replica count from "
        "cpu container resource utilization (percentage of request)"
    )
    assert decision.event_message == (
        "New size: 4; reason: cpu container resource utilization (percentage of request) "
        "above target"
    )


def test_the_manifest_hpa_scales_up_from_its_own_yaml() -> None:
    hpa = yaml.safe_load((ROOT / "kustomize/base/hpa.yaml").read_text())
    pods = make_pods(2)
    usage = {p.name: sample(p.name, 350, 100 * 2**20) for p in pods}

    decision = decide(
        hpa, current_replicas=2, pods=pods, usage=usage, now=10.0, history=HPAHistory()
    )

    assert decision.desired_replicas == 4
    memory = decision.current_metrics[1]
    assert memory == {
        "type": "ContainerResource",
        "containerResource": {
            "name": "memory",
            "container": "backend",
            "current": {"averageUtilization": 39, "averageValue": "104857600"},
        },
    }


@pytest.mark.parametrize(("percent", "expected"), [(62, 9), (63, 10), (70, 10), (76, 10), (78, 12)])
def test_tolerance_of_ten_percent(percent: int, expected: int) -> None:
    # 62/70 = 0.886 and 78/70 = 1.114 fall outside the band; 63/70 = 0.9 is on its edge
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    hpa = make_hpa(min_replicas=1, max_replicas=20, behavior=behavior)

    decision = sync(hpa, 10, percent, 1000.0, HPAHistory())

    assert decision.metric_replicas == expected
    assert decision.desired_replicas == expected


def test_three_replicas_at_150_percent_ask_for_ceil_of_four_and_a_half() -> None:
    decision = sync(make_hpa(behavior=MANIFEST_BEHAVIOR), 3, 150 * 70 / 100, 1000.0, HPAHistory())
    # 105 % of request against a 70 % target: ratio 1.5, ceil(1.5 * 3) = 5
    assert decision.metric_replicas == 5
    assert decision.desired_replicas == 5


def test_missing_pods_count_as_zero_on_a_scale_up_and_can_cancel_it() -> None:
    pods = make_pods(4)
    usage = {p.name: sample(p.name, 262) for p in pods[:2]}  # 104 % each: ratio 1.49
    decision = decide_once(make_hpa(max_replicas=10), 4, pods, usage)
    # with the two missing pods at 0 %, the ratio drops below 1: no change of direction
    assert decision.metric_replicas == 4
    assert not decision.rescale


def test_missing_pods_at_zero_can_bring_a_scale_up_within_tolerance() -> None:
    pods = make_pods(4)
    usage = {p.name: sample(p.name, 245) for p in pods[:3]}  # 98 %: ratio 1.4
    decision = decide_once(make_hpa(max_replicas=10), 4, pods, usage)
    # 735 / 1000 = 73 % -> ratio 1.04, within tolerance; ignoring the missing pod would say 5
    assert decision.metric_replicas == 4


def test_unready_pods_at_zero_can_bring_a_scale_up_within_tolerance() -> None:
    ready = make_pods(3)
    pods = [*ready, PodState("starting", ready[0].requests, ready=False)]
    usage = {p.name: sample(p.name, 245) for p in pods}
    decision = decide_once(make_hpa(max_replicas=10), 4, pods, usage)
    assert decision.metric_replicas == 4


def test_missing_pods_count_as_full_request_on_a_scale_down() -> None:
    pods = make_pods(3)
    usage = {p.name: sample(p.name, 25) for p in pods[:2]}  # 10 % each
    decision = decide_once(make_hpa(min_replicas=1), 3, pods, usage)
    # (25 + 25 + 250) / 750 = 40 % -> ratio 0.571 -> ceil(0.571 * 3) = 2, not ceil(0.14 * 2) = 1
    assert decision.metric_replicas == 2


def test_unready_pods_are_left_out_of_cpu_and_count_as_zero_on_a_scale_up() -> None:
    ready = make_pods(2)
    starting = PodState("llm-backend-new", ready[0].requests, ready=False)
    pods = [*ready, starting]
    usage = {p.name: sample(p.name, 350) for p in ready}
    usage[starting.name] = sample(starting.name, 1000)  # a start-up burst the HPA must ignore

    decision = decide_once(make_hpa(max_replicas=10), 3, pods, usage)

    # ready pods at 140 %; with the unready one at 0 %: 700 / 750 = 93 % -> ceil(1.33 * 3) = 4
    assert decision.metric_replicas == 4
    assert decision.current_metrics[0]["containerResource"]["current"]["averageUtilization"] == 140


def test_unready_pods_still_count_for_memory() -> None:
    pods = [*make_pods(1), PodState("llm-backend-new", make_pods(1)[0].requests, ready=False)]
    usage = {p.name: sample(p.name, 100, backend_memory=MEMORY_REQUEST) for p in pods}
    decision = decide_once(make_hpa(metrics=[memory_metric()], max_replicas=10), 2, pods, usage)
    assert decision.current_metrics[0]["containerResource"]["current"]["averageUtilization"] == 100
    assert decision.metric_replicas == 3  # ceil(100 / 80 * 2)


def test_cpu_of_a_pod_ready_for_less_than_one_metric_window_is_ignored() -> None:
    """Within the CPU initialisation period a sample must cover a whole window after Ready."""
    config = HPAConfig()
    now = 1000.0
    fresh = PodState(
        "fresh", make_pods(1)[0].requests, ready=True, start_time=now - 60, ready_since=now - 5
    )
    settled = PodState(
        "settled", make_pods(1)[0].requests, ready=True, start_time=now - 60, ready_since=now - 40
    )
    usage = {
        "fresh": sample("fresh", 1000, timestamp=now, window=15.0),
        "settled": sample("settled", 175, timestamp=now, window=15.0),
    }
    decision = decide(
        make_hpa(max_replicas=10),
        current_replicas=2,
        pods=[fresh, settled],
        usage=usage,
        now=now,
        history=HPAHistory(),
        config=config,
    )
    assert decision.current_metrics[0]["containerResource"]["current"]["averageUtilization"] == 70
    assert decision.metric_replicas == 2


def test_pending_and_deleting_pods() -> None:
    base = make_pods(2)
    pending = PodState("pending", base[0].requests, phase="Pending", ready=False)
    deleting = PodState("deleting", base[0].requests, deleting=True)
    usage = {p.name: sample(p.name, 350) for p in base}
    usage["deleting"] = sample("deleting", 5000)
    decision = decide_once(make_hpa(max_replicas=10), 3, [*base, pending, deleting], usage)
    # the deleting pod is ignored entirely; the pending one counts as 0 % on the scale-up
    assert decision.metric_replicas == 4


def test_the_largest_proposal_over_all_metrics_wins() -> None:
    pods = make_pods(2)
    usage = {p.name: sample(p.name, 175, backend_memory=MEMORY_REQUEST * 2) for p in pods}
    decision = decide_once(
        make_hpa(metrics=[cpu_metric(), memory_metric()], max_replicas=10), 2, pods, usage
    )
    assert decision.metric_replicas == 5  # memory 200 % of an 80 % target: ceil(2.5 * 2)
    assert "memory container resource utilization" in decision.condition("ScalingActive")["message"]  # type: ignore[index]
    assert "memory container resource utilization" in decision.rescale_reason


def test_resource_metrics_sum_all_containers_of_the_pod() -> None:
    pods = make_pods(2)
    usage = {p.name: sample(p.name, 330) for p in pods}  # engine 330m + backend 20m = 350m
    metric = {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
    }
    decision = decide_once(make_hpa(metrics=[metric], max_replicas=10), 2, pods, usage)
    assert decision.current_metrics == (
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "current": {"averageUtilization": 100, "averageValue": "350m"},
            },
        },
    )
    assert decision.metric_replicas == 4
    assert "cpu resource utilization (percentage of request)" in decision.rescale_reason


# --------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------


def test_no_metrics_at_all_stops_scaling_with_upstreams_condition() -> None:
    pods = make_pods(2)
    decision = decide_once(make_hpa(), 2, pods, {})
    assert not decision.rescale
    assert decision.desired_replicas == 2
    assert decision.condition("ScalingActive") == {
        "type": "ScalingActive",
        "status": "False",
        "reason": "FailedGetContainerResourceMetric",
        "message": "the HPA was unable to compute the replica count: failed to get cpu "
        "utilization: unable to get metrics for resource cpu: no metrics returned from "
        "resource metrics API",
    }
    previous = {"desiredReplicas": 3, "currentMetrics": [{"type": "Resource"}]}
    status = decision.status(previous, now=5.0)
    assert status["desiredReplicas"] == 3  # kept, as upstream's setCurrentReplicasInStatus
    assert status["currentMetrics"] == [{"type": "Resource"}]


def test_all_pods_unready_for_cpu() -> None:
    pods = make_pods(2, ready=False)
    decision = decide_once(make_hpa(), 2, pods, usage_at(pods, 140))
    assert decision.condition("ScalingActive")["message"].endswith(  # type: ignore[index]
        "did not receive metrics for targeted pods (pods might be unready)"
    )


def test_a_container_absent_from_the_metrics_fails_the_metric() -> None:
    pods = make_pods(2)
    usage = {p.name: PodSample(p.name, 1.0, 15.0, {"backend": ContainerSample(1, 1)}) for p in pods}
    decision = decide_once(make_hpa(), 2, pods, usage)
    assert (
        "container engine not present in metrics for pod kube-llm/llm-backend-0"
        in (
            decision.condition("ScalingActive")["message"]  # type: ignore[index]
        )
    )


def test_samples_of_pods_outside_the_selector_are_not_read() -> None:
    pods = make_pods(2)
    usage = usage_at(pods, 140)
    usage["other-app"] = PodSample("other-app", 1.0, 15.0, {"web": ContainerSample(9**9, 1)})
    decision = decide_once(make_hpa(), 2, pods, usage)
    assert decision.desired_replicas == 4


def test_a_missing_request_fails_the_metric() -> None:
    pods = [PodState("p", {"engine": {"memory": 1}})]
    decision = decide_once(make_hpa(), 2, pods, {"p": sample("p", 100)})
    assert decision.condition("ScalingActive")["message"].endswith(  # type: ignore[index]
        "missing request for cpu in container engine of Pod p"
    )


def test_a_failed_metric_blocks_a_scale_down_but_not_a_scale_up() -> None:
    pods = make_pods(4)
    broken = memory_metric(container="nope")
    hpa = make_hpa(metrics=[cpu_metric(), broken], behavior=MANIFEST_BEHAVIOR, max_replicas=10)

    up = sync(hpa, 4, 140, 1.0, HPAHistory(), pods=pods)
    assert up.rescale
    assert up.desired_replicas == 8
    assert up.current_metrics[1] == {"type": ""}
    assert reasons(up)["ScalingActive"] == ("True", "ValidMetricFound")

    down = sync(hpa, 4, 10, 1.0, HPAHistory(), pods=pods)
    assert not down.rescale
    assert reasons(down)["ScalingActive"] == ("False", "FailedGetContainerResourceMetric")


def test_replicas_outside_the_bounds_are_brought_back() -> None:
    above = sync(make_hpa(), 9, 70, 1.0, HPAHistory())
    assert above.desired_replicas == 6
    assert above.rescale_reason == "Current number of replicas above Spec.MaxReplicas"
    below = sync(make_hpa(), 1, 70, 1.0, HPAHistory())
    assert below.desired_replicas == 2
    assert below.rescale_reason == "Current number of replicas below Spec.MinReplicas"
    assert (
        below.event_message
        == "New size: 2; reason: Current number of replicas below Spec.MinReplicas"
    )


def test_zero_replicas_disable_scaling() -> None:
    decision = sync(make_hpa(), 0, 500, 1.0, HPAHistory(), pods=[])
    assert decision.desired_replicas == 0
    assert not decision.rescale
    assert reasons(decision)["ScalingActive"] == ("False", "ScalingDisabled")


# --------------------------------------------------------------------------------------------
# Stabilisation and rates
# --------------------------------------------------------------------------------------------


def test_scale_down_is_held_for_the_stabilization_window_then_released_one_pod_a_minute() -> None:
    hpa = make_hpa(behavior=MANIFEST_BEHAVIOR)
    history = HPAHistory()
    current = 4
    for now in range(0, 300, 15):
        decision = sync(hpa, current, 10, float(now), history)
        assert decision.metric_replicas == 1
        assert decision.desired_replicas == 4, now
        assert reasons(decision)["AbleToScale"] == ("True", "ScaleDownStabilized")

    released = sync(hpa, current, 10, 300.0, history)
    assert released.rescale
    assert released.desired_replicas == 3
    assert reasons(released)["ScalingLimited"] == ("True", "ScaleDownLimit")
    current = 3

    held = sync(hpa, current, 10, 330.0, history)  # one pod per 60 s already used
    assert not held.rescale
    assert reasons(held)["ScalingLimited"] == ("True", "ScaleDownLimit")

    again = sync(hpa, current, 10, 361.0, history)
    assert again.desired_replicas == 2
    assert reasons(again)["ScalingLimited"] == ("True", "TooFewReplicas")


def test_legacy_path_without_behavior_stabilizes_for_300_seconds() -> None:
    hpa = make_hpa()
    history = HPAHistory()
    assert sync(hpa, 4, 10, 0.0, history).desired_replicas == 4
    assert sync(hpa, 4, 10, 299.0, history).desired_replicas == 4
    released = sync(hpa, 4, 10, 301.0, history)
    assert released.desired_replicas == 2  # no rate policy on this path
    assert not history.scale_down_events


def test_legacy_scale_up_is_capped_at_twice_or_four() -> None:
    hpa = make_hpa(min_replicas=1, max_replicas=20)
    decision = sync(hpa, 1, 1000, 0.0, HPAHistory())
    assert decision.metric_replicas == 15
    assert decision.desired_replicas == 4
    assert reasons(decision)["ScalingLimited"] == ("True", "ScaleUpLimit")
    assert decision.condition("ScalingLimited")["message"] == (  # type: ignore[index]
        "the desired replica count is increasing faster than the maximum scale rate"
    )
    assert sync(hpa, 3, 1000, 0.0, HPAHistory()).desired_replicas == 6
    capped = sync(make_hpa(min_replicas=1, max_replicas=3), 2, 1000, 0.0, HPAHistory())
    assert capped.desired_replicas == 3
    assert reasons(capped)["ScalingLimited"] == ("True", "TooManyReplicas")


def test_scale_up_rate_counts_earlier_events_in_the_period() -> None:
    hpa = make_hpa(behavior=MANIFEST_BEHAVIOR, max_replicas=10)
    history = HPAHistory()
    first = sync(hpa, 2, 400, 0.0, history)
    assert first.desired_replicas == 4  # max(2 + 2, 2 * 2)
    assert reasons(first)["ScalingLimited"] == ("True", "ScaleUpLimit")

    second = sync(hpa, 4, 400, 10.0, history)  # the period still starts at 2 replicas
    assert not second.rescale
    assert reasons(second)["ScalingLimited"] == ("True", "ScaleUpLimit")

    third = sync(hpa, 4, 400, 16.0, history)
    assert third.desired_replicas == 8  # max(4 + 2, 4 * 2)


@pytest.mark.parametrize(("select", "expected"), [("Max", 15), ("Min", 14), ("Disabled", 10)])
def test_scale_up_select_policy(select: str, expected: int) -> None:
    behavior = {
        "scaleUp": {
            "selectPolicy": select,
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 60},
                {"type": "Percent", "value": 50, "periodSeconds": 60},
            ],
        }
    }
    hpa = make_hpa(behavior=behavior, min_replicas=1, max_replicas=100)
    decision = sync(hpa, 10, 700, 0.0, HPAHistory())
    assert decision.metric_replicas == 100
    assert decision.desired_replicas == expected
    assert reasons(decision)["ScalingLimited"] == ("True", "ScaleUpLimit")


@pytest.mark.parametrize(("select", "expected"), [("Max", 5), ("Min", 6), ("Disabled", 10)])
def test_scale_down_select_policy(select: str, expected: int) -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": select,
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 60},
                {"type": "Percent", "value": 50, "periodSeconds": 60},
            ],
        }
    }
    hpa = make_hpa(behavior=behavior, min_replicas=1, max_replicas=100)
    decision = sync(hpa, 10, 7, 0.0, HPAHistory())
    assert decision.metric_replicas == 1
    assert decision.desired_replicas == expected
    assert reasons(decision)["ScalingLimited"] == ("True", "ScaleDownLimit")


def test_percent_scale_down_rounds_down_like_go_int_conversion() -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}],
        }
    }
    decision = sync(
        make_hpa(behavior=behavior, min_replicas=1, max_replicas=10), 5, 7, 0.0, HPAHistory()
    )
    assert decision.desired_replicas == 4  # int(5 * 0.9) = 4


def test_scale_down_to_the_minimum_reports_too_few_replicas() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    decision = sync(make_hpa(behavior=behavior), 4, 5, 0.0, HPAHistory())
    assert decision.desired_replicas == 2
    assert reasons(decision)["ScalingLimited"] == ("True", "TooFewReplicas")
    at_min = sync(make_hpa(behavior=behavior), 2, 5, 0.0, HPAHistory())
    assert not at_min.rescale
    assert reasons(at_min)["ScalingLimited"] == ("True", "TooFewReplicas")


def test_scale_up_stabilization_takes_the_lowest_recent_recommendation() -> None:
    behavior = {"scaleUp": {"stabilizationWindowSeconds": 60}}
    hpa = make_hpa(behavior=behavior, max_replicas=10)
    history = HPAHistory()
    assert sync(hpa, 2, 70, 0.0, history).desired_replicas == 2
    spike = sync(hpa, 2, 280, 30.0, history)
    assert spike.metric_replicas == 8
    assert not spike.rescale
    assert reasons(spike)["AbleToScale"] == ("True", "ScaleUpStabilized")
    later = sync(hpa, 2, 280, 61.0, history)
    assert later.desired_replicas == 6  # 100 % / 4 pods per 15 s: max(2 + 4, 2 * 2)


def test_empty_behavior_gets_the_api_defaults() -> None:
    hpa = make_hpa(behavior={}, min_replicas=1, max_replicas=20)
    history = HPAHistory()
    decision = sync(hpa, 2, 1000, 0.0, history)
    assert decision.desired_replicas == 6  # max(2 + 4 pods, 2 + 100 %)
    assert len(history.scale_up_events) == 1
    held = sync(hpa, 6, 10, 100.0, history)
    assert not held.rescale  # the default scale-down window is 300 s


def test_configurable_tolerance_from_the_behavior() -> None:
    behavior = {"scaleUp": {"tolerance": "0.05"}, "scaleDown": {"stabilizationWindowSeconds": 0}}
    hpa = make_hpa(behavior=behavior, max_replicas=10)
    assert sync(hpa, 4, 75, 0.0, HPAHistory()).desired_replicas == 5  # 1.071 > 1.05
    assert sync(hpa, 4, 66, 0.0, HPAHistory()).desired_replicas == 4  # 0.943 within 0.1


# --------------------------------------------------------------------------------------------
# Status and helpers
# --------------------------------------------------------------------------------------------


def test_status_keeps_transition_times_while_a_condition_holds() -> None:
    hpa = make_hpa(behavior=MANIFEST_BEHAVIOR)
    history = HPAHistory()
    first = sync(hpa, 2, 70, 100.0, history)
    status = first.status(None, now=100.0)
    assert status["currentReplicas"] == 2
    assert status["desiredReplicas"] == 2
    assert "lastScaleTime" not in status
    second = sync(hpa, 2, 140, 200.0, history)
    status2 = second.status(status, now=200.0)
    times = {c["type"]: c["lastTransitionTime"] for c in status2["conditions"]}
    assert times["ScalingActive"] == "1970-01-01T00:01:40Z"  # still True since the first sync
    assert times["AbleToScale"] == "1970-01-01T00:01:40Z"  # True again, reason changed
    assert status2["lastScaleTime"] == "1970-01-01T00:03:20Z"
    assert [c["reason"] for c in status2["conditions"]] == [
        "SucceededRescale",
        "ValidMetricFound",
        "DesiredWithinRange",
    ]


def test_merge_conditions_moves_the_transition_time_on_a_status_change() -> None:
    previous = [
        {
            "type": "ScalingActive",
            "status": "True",
            "reason": "ValidMetricFound",
            "message": "m",
            "lastTransitionTime": "2020-01-01T00:00:00Z",
        }
    ]
    update = {
        "type": "ScalingActive",
        "status": "False",
        "reason": "FailedGetResourceMetric",
        "message": "x",
    }
    merged = merge_conditions(previous, [update], now=0.0)
    assert merged == [{**update, "lastTransitionTime": "1970-01-01T00:00:00Z"}]
    assert previous[0]["status"] == "True"  # the input is not mutated


def test_pod_state_from_a_pod_object() -> None:
    pod = {
        "metadata": {"name": "llm-backend-x", "namespace": "kube-llm"},
        "spec": {
            "initContainers": [
                {
                    "name": "engine",
                    "restartPolicy": "Always",
                    "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
                },
                {"name": "model-pull", "resources": {"requests": {"cpu": "1"}}},
            ],
            "containers": [
                {"name": "backend", "resources": {"requests": {"cpu": "0.1", "memory": "128Mi"}}}
            ],
        },
        "status": {
            "phase": "Running",
            "startTime": "2026-01-01T00:00:00Z",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:30Z"}
            ],
        },
    }
    state = pod_state(pod)
    assert state.name == "llm-backend-x"
    assert state.requests == {
        "backend": {"cpu": 100, "memory": 128 * 2**20},
        "engine": {"cpu": 250, "memory": 512 * 2**20},
    }
    assert state.ready
    assert state.phase == "Running"
    assert not state.deleting
    assert state.ready_since is not None
    assert state.start_time is not None
    assert state.ready_since - state.start_time == 30
    assert container_requests({"containers": [{"name": "c"}]}) == {"c": {}}


def test_decide_accepts_a_bare_spec() -> None:
    spec = make_hpa()["spec"]
    pods = make_pods(2)
    decision = decide(
        spec,
        current_replicas=2,
        pods=pods,
        usage=usage_at(pods, 140),
        now=0.0,
        history=HPAHistory(),
    )
    assert decision.desired_replicas == 4


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

BEHAVIORS = st.sampled_from(
    [_ABSENT, MANIFEST_BEHAVIOR, {}, {"scaleDown": {"stabilizationWindowSeconds": 0}}]
)


@settings(max_examples=150, deadline=None)
@given(
    behavior=BEHAVIORS,
    bounds=st.tuples(st.integers(1, 6), st.integers(0, 8)).map(lambda t: (t[0], t[0] + t[1])),
    start=st.integers(0, 20),
    steps=st.lists(
        st.tuples(st.integers(0, 2000), st.integers(1, 120), st.integers(0, 3)),
        min_size=1,
        max_size=12,
    ),
)
def test_decisions_stay_within_min_and_max(
    behavior: Any, bounds: tuple[int, int], start: int, steps: list[tuple[int, int, int]]
) -> None:
    min_replicas, max_replicas = bounds
    hpa = make_hpa(behavior=behavior, min_replicas=min_replicas, max_replicas=max_replicas)
    history = HPAHistory()
    current = min_replicas + start % (max_replicas - min_replicas + 1)
    now = 0.0
    for percent, gap, missing in steps:
        now += gap
        pods = make_pods(current)
        usage = usage_at(pods[missing:], percent, timestamp=now)
        decision = decide(
            hpa, current_replicas=current, pods=pods, usage=usage, now=now, history=history
        )
        assert min_replicas <= decision.desired_replicas <= max_replicas
        assert decision.rescale == (decision.desired_replicas != current)
        current = decision.desired_replicas


@settings(max_examples=150, deadline=None)
@given(
    behavior=BEHAVIORS,
    target=st.integers(20, 150),
    current=st.integers(1, 10),
    data=st.data(),
)
def test_within_tolerance_nothing_changes(
    behavior: Any, target: int, current: int, data: Any
) -> None:
    low, high = -(-target * 9 // 10), target * 11 // 10
    utilization = data.draw(st.integers(low, high))
    hpa = make_hpa(metrics=[cpu_metric(target)], behavior=behavior, min_replicas=1, max_replicas=20)
    pods = [PodState(f"p{i}", {"engine": {"cpu": 1000, "memory": 1}}) for i in range(current)]
    usage = {p.name: sample(p.name, utilization * 10) for p in pods}
    decision = decide(
        hpa, current_replicas=current, pods=pods, usage=usage, now=0.0, history=HPAHistory()
    )
    assert decision.metric_replicas == current
    assert decision.desired_replicas == current
    assert not decision.rescale


@settings(max_examples=150, deadline=None)
@given(
    window=st.integers(30, 600),
    current=st.integers(2, 6),
    steps=st.lists(st.tuples(st.integers(0, 1000), st.floats(0.0, 1.0)), min_size=1, max_size=15),
    legacy=st.booleans(),
)
def test_stabilization_never_scales_down_before_the_window(
    window: int, current: int, steps: list[tuple[int, float]], legacy: bool
) -> None:
    behavior: Any = _ABSENT if legacy else {"scaleDown": {"stabilizationWindowSeconds": window}}
    config = HPAConfig(downscale_stabilization_seconds=window)
    hpa = make_hpa(behavior=behavior, min_replicas=1, max_replicas=20)
    history = HPAHistory()
    replicas = current
    for percent, fraction in sorted(steps, key=lambda s: s[1]):
        now = fraction * (window - 1)  # every sync inside the window that began at t=0
        pods = make_pods(replicas)
        decision = decide(
            hpa,
            current_replicas=replicas,
            pods=pods,
            usage=usage_at(pods, percent, timestamp=now),
            now=now,
            history=history,
            config=config,
        )
        assert decision.desired_replicas >= replicas
        replicas = decision.desired_replicas
    assert replicas >= current


@pytest.mark.parametrize("overrides", [{"phase": "Failed"}, {"deleting": True}])
def test_failed_pods_ignored_with_missing_container_metric(overrides: dict[str, Any]) -> None:
    """Upstream's TestReplicaCalcResourceScale, "scale up: failed pods ignored with missing
    container metric": the other pods' metric still scales."""
    pods = make_pods(2)
    gone = PodState(name="llm-backend-gone", requests=pods[0].requests, **overrides)
    usage = usage_at(pods, 140)
    usage[gone.name] = PodSample(gone.name, 1000.0, 15.0, {"backend": ContainerSample(1, 1)})
    decision = decide_once(make_hpa(), 2, [*pods, gone], usage)
    assert decision.desired_replicas == 4
    assert decision.condition("ScalingActive")["status"] == "True"  # type: ignore[index]
