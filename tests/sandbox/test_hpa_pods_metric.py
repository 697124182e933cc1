"""The sandbox's HPA on a ``Pods`` metric, against upstream kube-controller-manager's own cases.

Each ``upstream`` case names the Go test it is translated from: kubernetes/kubernetes
``pkg/controller/podautoscaler/replica_calculator_test.go`` (``GetMetricReplicas`` with
``metricType: podMetric``; levels and targets are milli-values there and here) and
``horizontal_test.go`` (a whole sync; its ``reportedLevels`` are milli-values of a target such as
``"15.0"``). Upstream's test pods are ``test-pod-<i>``, Running, Ready unless ``podReadiness``
says otherwise; for a Pods metric readiness and start times do not matter, which some of these
cases exist to show. The other cases cover the branches of ``calcPlainMetricReplicas`` that
upstream's table leaves to its CPU cases (missing, Pending, deleting pods) and the failures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from sandbox.__main__ import parse_args
from sandbox.apiserver.validation import validate
from sandbox.controllers.hpa import HPAHistory, PodState, decide
from sandbox.controllers.hpa_pods_metric import (
    NO_ADAPTER,
    PlainMetricError,
    calc_plain_metric_replicas,
    label_selector_text,
)
from sandbox.controllers.hpa_replicas import Tolerances
from sandbox.store.custom_metrics import MetricNotServed, metric_not_found
from sandbox.store.store import HPAS, ApiError

TOLERANCE = Tolerances(0.1, 0.1)


@dataclass
class FakeAdapter:
    """Shaped as ``GatewayScraper.pod_values``: milli-values for the pods asked about."""

    values: Mapping[str, int]
    served: bool = True
    asked: list[tuple[str, str, tuple[str, ...], str | None]] | None = None

    def pod_values(
        self,
        namespace: str,
        metric: str,
        pods: Sequence[str],
        metric_selector: str | None = None,
    ) -> dict[str, int]:
        if self.asked is not None:
            self.asked.append((namespace, metric, tuple(pods), metric_selector))
        if not self.served:
            raise metric_not_found(metric)
        return {pod: value for pod, value in self.values.items() if pod in pods}


def upstream_pods(
    count: int, ready: Sequence[bool] | None = None, **overrides: Any
) -> list[PodState]:
    return [
        PodState(
            name=f"test-pod-{i}",
            ready=True if ready is None else ready[i],
            start_time=0.0,
            ready_since=0.0,
            **overrides,
        )
        for i in range(count)
    ]


def levels(*values: int) -> dict[str, int]:
    return {f"test-pod-{i}": value for i, value in enumerate(values)}


def pods_metric_spec(target: str, name: str = "qps", **extra: Any) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": name, **extra},
            "target": {"type": "AverageValue", "averageValue": target},
        },
    }


def hpa(
    target: str, *, min_replicas: int = 2, max_replicas: int = 6, **extra: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": "test-hpa", "namespace": "test-namespace"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "test-rc"},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [pods_metric_spec(target, **extra)],
        },
    }


# --------------------------------------------------------------------------------------------
# replica_calculator_test.go
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "ready", "values", "target", "expected", "usage"),
    [
        pytest.param(
            3, None, (20000, 10000, 30000), 15000, 4, 20000, id="TestReplicaCalcScaleUpCM"
        ),
        pytest.param(
            3,
            (True, True, False),
            (50000, 10000, 30000),
            15000,
            6,
            30000,
            id="TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale",
        ),
        pytest.param(
            3,
            (False, True, False),
            (50000, 15000, 30000),
            15000,
            7,
            31666,
            id="TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown",
        ),
        pytest.param(1, None, (8600,), 4400, 2, 8600, id="TestReplicaCalcScaleUpCMExternal"),
        pytest.param(
            1, None, (8600,), 4400, 2, 8600, id="TestReplicaCalcScaleUpCMExternalNoLabels"
        ),
        pytest.param(5, None, (12000,) * 5, 20000, 3, 12000, id="TestReplicaCalcScaleDownCM"),
        pytest.param(
            3, None, (20000, 21000, 21000), 20000, 3, 20666, id="TestReplicaCalcToleranceCM"
        ),
    ],
)
def test_upstream_replica_calculator_cases(
    current: int,
    ready: Sequence[bool] | None,
    values: Sequence[int],
    target: int,
    expected: int,
    usage: int,
) -> None:
    replicas, average = calc_plain_metric_replicas(
        levels(*values),
        current_replicas=current,
        target_milli=target,
        pods=upstream_pods(current, ready),
        tolerances=TOLERANCE,
    )
    assert (replicas, average) == (expected, usage)


def test_missing_pods_count_as_zero_on_a_scale_up() -> None:
    # ratio 2.0 over two pods; the third, missing, counts 0: 60000/3 = 20000 -> ceil(1.33 * 3)
    replicas, usage = calc_plain_metric_replicas(
        levels(30000, 30000),
        current_replicas=3,
        target_milli=15000,
        pods=upstream_pods(3),
        tolerances=TOLERANCE,
    )
    assert (replicas, usage) == (4, 30000)


def test_missing_pods_count_as_the_target_on_a_scale_down() -> None:
    # ratio 0.25; the missing pod counts as the target (4000): 7000/4 = 1750 -> ceil(0.4375 * 4)
    replicas, _ = calc_plain_metric_replicas(
        levels(1000, 1000, 1000),
        current_replicas=4,
        target_milli=4000,
        pods=upstream_pods(4),
        tolerances=TOLERANCE,
    )
    assert replicas == 2


def test_missing_pods_that_would_turn_a_scale_up_into_a_scale_down_keep_the_replicas() -> None:
    # one pod at 2x the target, one missing: 0 for it makes the average exactly the target
    replicas, _ = calc_plain_metric_replicas(
        levels(8000),
        current_replicas=2,
        target_milli=4000,
        pods=upstream_pods(2),
        tolerances=TOLERANCE,
    )
    assert replicas == 2
    # and one that would make the average cross the target the other way
    replicas, _ = calc_plain_metric_replicas(
        levels(9000),
        current_replicas=2,
        target_milli=4000,
        pods=upstream_pods(2),
        tolerances=TOLERANCE,
    )
    assert replicas == 3


def test_pending_pods_count_as_zero_on_a_scale_up_and_are_left_out_of_a_scale_down() -> None:
    pods = [*upstream_pods(2), PodState(name="test-pod-2", phase="Pending", ready=False)]
    up, _ = calc_plain_metric_replicas(
        levels(30000, 30000),
        current_replicas=3,
        target_milli=15000,
        pods=pods,
        tolerances=TOLERANCE,
    )
    assert up == 4  # 60000 over three pods (the Pending one at 0): ratio 1.33, ceil(4.0)
    down, _ = calc_plain_metric_replicas(
        levels(1000, 1000), current_replicas=3, target_milli=4000, pods=pods, tolerances=TOLERANCE
    )
    assert down == 1  # ratio 0.25 over the two Running pods


def test_deleting_and_failed_pods_are_left_out() -> None:
    pods = [
        *upstream_pods(2),
        PodState(name="test-pod-2", deleting=True),
        PodState(name="test-pod-3", phase="Failed", ready=False),
    ]
    replicas, usage = calc_plain_metric_replicas(
        levels(8000, 8000, 0, 0),
        current_replicas=2,
        target_milli=4000,
        pods=pods,
        tolerances=TOLERANCE,
    )
    assert (replicas, usage) == (4, 8000)


def test_no_pods_and_no_usable_metrics_are_upstreams_errors() -> None:
    with pytest.raises(PlainMetricError, match="no pods returned by selector"):
        calc_plain_metric_replicas(
            levels(1), current_replicas=1, target_milli=1, pods=[], tolerances=TOLERANCE
        )
    pending = [PodState(name="test-pod-0", phase="Pending", ready=False)]
    with pytest.raises(PlainMetricError, match=r"did not receive metrics for targeted pods"):
        calc_plain_metric_replicas(
            levels(5000), current_replicas=1, target_milli=1000, pods=pending, tolerances=TOLERANCE
        )


# --------------------------------------------------------------------------------------------
# horizontal_test.go: whole syncs
# --------------------------------------------------------------------------------------------


def sync_once(
    spec: Mapping[str, Any],
    current: int,
    values: Mapping[str, int],
    *,
    ready: Sequence[bool] | None = None,
    history: HPAHistory | None = None,
    adapter: FakeAdapter | None = None,
    now: float = 1000.0,
) -> Any:
    return decide(
        spec,
        current_replicas=current,
        pods=upstream_pods(current, ready),
        usage={},
        now=now,
        history=history or HPAHistory(),
        pods_metrics=adapter or FakeAdapter(values),
    )


def conditions(decision: Any) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in decision.conditions}


def test_upstream_TestScaleUpCM() -> None:
    decision = sync_once(hpa("15.0"), 3, levels(20000, 10000, 30000))
    assert decision.desired_replicas == 4
    assert decision.current_metrics == (
        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "20"}}},
    )
    assert decision.rescale_reason == "pods metric qps above target"
    assert conditions(decision)["ScalingActive"] == ("True", "ValidMetricFound")


def test_upstream_TestScaleUpCMUnreadyAndHotCpuNoLessScale() -> None:
    decision = sync_once(hpa("15.0"), 3, levels(50000, 10000, 30000), ready=(True, True, False))
    assert decision.desired_replicas == 6


def test_upstream_TestScaleUpCMUnreadyandCpuHot() -> None:
    decision = sync_once(hpa("15.0"), 3, levels(50000, 15000, 30000), ready=(False, True, False))
    assert decision.desired_replicas == 6
    assert conditions(decision)["AbleToScale"] == ("True", "SucceededRescale")
    assert conditions(decision)["ScalingLimited"] == ("True", "TooManyReplicas")


def test_upstream_TestScaleDownCM() -> None:
    # upstream's case starts with an empty recommendation list; a recommendation older than the
    # 300 s window is the same here (the sandbox seeds an empty history with the current count)
    history = HPAHistory(recommendations=[(0.0, 5)])
    decision = sync_once(hpa("20.0"), 5, levels(*(12000,) * 5), history=history)
    assert decision.desired_replicas == 3
    assert decision.rescale_reason == "All metrics below target"


def test_upstream_TestToleranceCM() -> None:
    decision = sync_once(hpa("20.0"), 3, levels(20000, 21000, 21000))
    assert not decision.rescale
    assert decision.current_metrics[0]["pods"]["current"]["averageValue"] == "20666m"


def test_the_adapter_is_asked_for_the_targets_pods_with_the_metric_selector() -> None:
    adapter = FakeAdapter(levels(4000, 4000), asked=[])
    spec = hpa("4", selector={"matchLabels": {"app": "x"}})
    sync_once(spec, 2, {}, adapter=adapter)
    assert adapter.asked == [("test-namespace", "qps", ("test-pod-0", "test-pod-1"), "app=x")]


# --------------------------------------------------------------------------------------------
# Failures: conditions as upstream words them
# --------------------------------------------------------------------------------------------


def failed(decision: Any) -> tuple[str, str]:
    active = decision.condition("ScalingActive")
    assert active is not None
    assert active["status"] == "False"
    assert not decision.rescale
    return active["reason"], active["message"]


def test_no_pod_reports_the_metric_yet() -> None:
    decision = sync_once(hpa("4"), 2, {})
    assert failed(decision) == (
        "FailedGetPodsMetric",
        "the HPA was unable to compute the replica count: unable to get metric qps: "
        "no metrics returned from custom metrics API",
    )


def test_a_metric_the_adapter_does_not_serve() -> None:
    decision = sync_once(hpa("4"), 2, {}, adapter=FakeAdapter({}, served=False))
    assert failed(decision) == (
        "FailedGetPodsMetric",
        "the HPA was unable to compute the replica count: unable to get metric qps: unable to "
        "fetch metrics from custom metrics API: the server could not find the metric qps for pods",
    )


def test_no_adapter_at_all() -> None:
    decision = decide(
        hpa("4"),
        current_replicas=2,
        pods=upstream_pods(2),
        usage={},
        now=1.0,
        history=HPAHistory(),
    )
    reason, message = failed(decision)
    assert reason == "FailedGetPodsMetric"
    assert message.endswith(NO_ADAPTER)


@pytest.mark.parametrize("target", ["0", "-1", "nonsense"])
def test_a_target_of_zero_or_below_stored_before_admission_fails_the_metric(target: str) -> None:
    reason, message = failed(sync_once(hpa(target), 2, levels(4000, 4000)))
    assert reason == "FailedGetPodsMetric"
    assert "must be positive" in message


@pytest.mark.parametrize(
    ("metric", "reason"),
    [
        (
            {
                "type": "Object",
                "object": {
                    "metric": {"name": "requests"},
                    "describedObject": {"kind": "Service", "name": "llm-backend"},
                    "target": {"type": "Value", "value": "10"},
                },
            },
            "FailedGetObjectMetric",
        ),
        (
            {
                "type": "External",
                "external": {
                    "metric": {"name": "queue_messages"},
                    "target": {"type": "AverageValue", "averageValue": "30"},
                },
            },
            "FailedGetExternalMetric",
        ),
    ],
)
def test_object_and_external_metrics_are_unsupported_with_a_clear_condition(
    metric: dict[str, Any], reason: str
) -> None:
    spec = hpa("4")
    spec["spec"]["metrics"] = [metric]
    got_reason, message = failed(sync_once(spec, 2, levels(4000, 4000)))
    assert got_reason == reason
    assert message.startswith("the HPA was unable to compute the replica count: unable to get")
    assert "not supported" in message


def test_an_unsupported_metric_beside_does_not_block_a_scale_up() -> None:
    # upstream: failed metrics block a decision only when all fail or the rest would scale down
    spec = hpa("4")
    spec["spec"]["metrics"].append(
        {"type": "External", "external": {"metric": {"name": "queue_messages"}}}
    )
    decision = sync_once(spec, 2, levels(8000, 8000))
    assert decision.desired_replicas == 4
    assert conditions(decision)["ScalingActive"] == ("True", "ValidMetricFound")
    assert decision.current_metrics[1] == {"type": ""}
    below = sync_once(spec, 4, levels(1000, 1000, 1000, 1000))
    assert failed(below)[0] == "FailedGetExternalMetric"


def test_label_selector_text() -> None:
    assert label_selector_text(None) is None
    assert (
        label_selector_text(
            {
                "matchLabels": {"b": "2", "a": "1"},
                "matchExpressions": [
                    {"key": "c", "operator": "In", "values": ["x", "y"]},
                    {"key": "d", "operator": "Exists"},
                    {"key": "e", "operator": "DoesNotExist"},
                ],
            }
        )
        == "a=1,b=2,c in (x,y),d,!e"
    )


def test_metric_not_served_is_the_adapters_message() -> None:
    assert str(metric_not_found("x")) == "the server could not find the metric x for pods"
    assert issubclass(MetricNotServed, Exception)


# --------------------------------------------------------------------------------------------
# Admission: upstream's validatePodsSource and validateMetricTarget
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "field", "message"),
    [
        ("0", "spec.metrics[0].pods.target.averageValue", 'Invalid value: "0": must be positive'),
        ("-2", "spec.metrics[0].pods.target.averageValue", 'Invalid value: "-2": must be positive'),
        (
            None,
            "spec.metrics[0].pods.target.averageValue",
            "Required value: must specify a positive target averageValue",
        ),
    ],
)
def test_admission_refuses_a_pods_target_of_zero_or_below(
    target: str | None, field: str, message: str
) -> None:
    spec = hpa("4")
    pods_target = spec["spec"]["metrics"][0]["pods"]["target"]
    if target is None:
        del pods_target["averageValue"]
    else:
        pods_target["averageValue"] = target
    with pytest.raises(ApiError) as refused:
        validate(HPAS, {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", **spec})
    assert refused.value.code == 422
    causes = refused.value.details["causes"]  # type: ignore[index]
    assert {"field": field, "message": message} in [
        {"field": c["field"], "message": c["message"]} for c in causes
    ]


def test_admission_needs_a_metric_name_and_takes_the_queue_component_as_it_is() -> None:
    spec = hpa("4", name="")
    with pytest.raises(ApiError, match="must specify a metric name"):
        validate(HPAS, {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", **spec})
    validate(HPAS, {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", **hpa("4")})


def test_the_autoscaler_flag_names_an_overlay(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args([]).overlay.name == "sandbox"
    assert parse_args(["--autoscaler", "queue"]).overlay.name == "sandbox-queue"
    assert parse_args(["--autoscaler", "queue"]).overlay.exists()
    with pytest.raises(SystemExit):
        parse_args(["--autoscaler", "queue", "--overlay", "kustomize/overlays/sandbox"])
    assert "give either it or --overlay" in capsys.readouterr().err
