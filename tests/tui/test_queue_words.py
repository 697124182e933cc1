"""The queue autoscaler in the cockpit's words and the report's numbers (issue 18 items 3-4):
the HPA's Pods metric converted from the API, shown against its target, explained (including
upstream's failure conditions), and the run's cost in replica-seconds."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tui.cluster.convert import hpa_view
from tui.cockpit.widgets.hpa_panel import metric_line
from tui.core.cost import cost_figures, replica_seconds
from tui.core.figures import CockpitRecord, figures
from tui.core.model import ReplicaPoint
from tui.headless.load import load_table
from tui.report.cost import cost_lines
from tui.report.writer import render
from tui.services.explain import explain, metric_target, recommended_replicas

NOW = 1_700_000_000.0
METRIC = "kube_llm_chats_active"


def queue_hpa(
    current: str | None,
    *,
    target: str = "4",
    replicas: int = 2,
    desired: int | None = None,
    active: tuple[str, str, str] = (
        "True",
        "ValidMetricFound",
        f"the HPA was able to successfully calculate a replica count from pods metric {METRIC}",
    ),
    able: tuple[str, str] = ("True", "ReadyForNewScale"),
) -> dict[str, Any]:
    """An HPA object as the sandbox (and kube-controller-manager) writes it."""
    status: dict[str, Any] = {
        "currentReplicas": replicas,
        "desiredReplicas": replicas if desired is None else desired,
        "conditions": [
            {"type": "AbleToScale", "status": able[0], "reason": able[1], "message": ""},
            {
                "type": "ScalingActive",
                "status": active[0],
                "reason": active[1],
                "message": active[2],
            },
            {
                "type": "ScalingLimited",
                "status": "False",
                "reason": "DesiredWithinRange",
                "message": "",
            },
        ],
    }
    if current is not None:
        status["currentMetrics"] = [
            {
                "type": "Pods",
                "pods": {"metric": {"name": METRIC}, "current": {"averageValue": current}},
            }
        ]
    return {
        "metadata": {"name": "llm-backend"},
        "spec": {
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": METRIC},
                        "target": {"type": "AverageValue", "averageValue": target},
                    },
                }
            ],
        },
        "status": status,
    }


def test_the_pods_metric_is_converted_with_its_averages() -> None:
    [metric] = hpa_view(queue_hpa("3500m")).metrics
    assert (metric.source, metric.name) == ("Pods", METRIC)
    assert (metric.current_average, metric.target_average) == (3.5, 4.0)
    assert metric.current_value == "3500m"


def test_the_panel_shows_the_metric_per_pod_against_its_target() -> None:
    [metric] = hpa_view(queue_hpa("3500m")).metrics
    assert metric_line(metric) == "in flight + waiting 3.5 per pod against 4"
    [unknown] = hpa_view(queue_hpa(None)).metrics
    assert metric_line(unknown) == "in flight + waiting unknown against 4"
    assert metric_target(metric) == "in flight + waiting 4 per pod"


def test_the_explainer_compares_the_average_per_pod_as_the_controller_does() -> None:
    up = hpa_view(queue_hpa("9", replicas=2, desired=5))
    assert recommended_replicas(up) == 5  # ceil(9 / 4 * 2)
    assert explain(up, NOW) == (
        "scaling up: in flight + waiting 9 per pod against a target of 4, 2 -> 5"
    )
    within = hpa_view(queue_hpa("4200m"))
    assert explain(within, NOW) == (
        "holding: within tolerance (in flight + waiting 4.2 per pod against 4)"
    )
    idle = hpa_view(queue_hpa("0"))
    assert explain(idle, NOW) == ("at minimum 2: in flight + waiting 0 per pod, all below target")


NOT_SERVED = (
    f"the HPA was unable to compute the replica count: unable to get metric {METRIC}: unable to "
    f"fetch metrics from custom metrics API: the server could not find the metric {METRIC} for "
    "pods"
)


@pytest.mark.parametrize(
    ("message", "words"),
    [
        pytest.param(
            f"the HPA was unable to compute the replica count: unable to get metric {METRIC}: "
            "no metrics returned from custom metrics API",
            "no pod reports in flight + waiting yet: the pods are new, Prometheus has not "
            "scraped them, or their /metrics does not answer",
            id="no pod reports it yet, or no gateway answers",
        ),
        pytest.param(
            NOT_SERVED,
            f"the metrics adapter does not serve {METRIC}: check the name in the HPA against "
            "the adapter's rules, or no pod has reported it yet",
            id="a metric the adapter does not serve",
        ),
        pytest.param(
            f"the HPA was unable to compute the replica count: unable to get metric {METRIC}: "
            "unable to fetch metrics from custom metrics API: the server could not find the "
            "requested resource (get pods.custom.metrics.k8s.io)",
            "no adapter serves custom.metrics.k8s.io: install prometheus-adapter (README)",
            id="no adapter",
        ),
        pytest.param(
            "the HPA was unable to compute the replica count: invalid pods metric source: "
            f"target averageValue of {METRIC} must be positive",
            "the HPA's target is zero or below",
            id="a target of zero or below",
        ),
    ],
)
def test_the_explainer_says_why_the_pods_metric_fails(message: str, words: str) -> None:
    hpa = hpa_view(queue_hpa(None, active=("False", "FailedGetPodsMetric", message)))
    line = explain(hpa, NOW)
    assert line.startswith(f"not scaling: {words} (FailedGetPodsMetric: ")


def test_object_and_external_metrics_are_explained_as_unreadable() -> None:
    message = (
        "the HPA was unable to compute the replica count: unable to get external metric "
        "kube-llm/queue_messages: ... (the sandbox serves no external.metrics.k8s.io, so "
        "External metrics are not supported)"
    )
    hpa = hpa_view(queue_hpa(None, active=("False", "FailedGetExternalMetric", message)))
    assert explain(hpa, NOW).startswith(
        "not scaling: the External metric cannot be read (FailedGetExternalMetric: "
    )


# --------------------------------------------------------------------------------------------
# Cost
# --------------------------------------------------------------------------------------------


def test_replica_seconds_integrate_the_pods_as_a_step_function() -> None:
    points = [
        ReplicaPoint(at=100.0, current=2, desired=2, pods=2),
        ReplicaPoint(at=110.0, current=2, desired=4, pods=4),  # surge: 4 pods for 20 s
        ReplicaPoint(at=130.0, current=4, desired=2, pods=2),
    ]
    # 2 x 10 + 4 x 20 + 2 x 30 (until 160)
    assert replica_seconds(points, 90.0, 160.0) == 160.0
    # the window clips both ends
    assert replica_seconds(points, 105.0, 120.0) == 2 * 5 + 4 * 10
    cost = cost_figures(points, 90.0, 160.0, max_replicas=6, chats_ok=16)
    assert cost.span_seconds == 60.0  # from the first point: nothing is known before it
    assert cost.fixed_at_max == 360.0
    assert cost.ratio == pytest.approx(160 / 360)
    assert cost.per_chat == 10.0
    assert cost.counted == "pods"


def test_records_without_pod_counts_integrate_the_hpas_current_replicas() -> None:
    points = [ReplicaPoint(at=0.0, current=3, desired=3)]
    cost = cost_figures(points, 0.0, 10.0, max_replicas=None, chats_ok=0)
    assert cost.replica_seconds == 30.0
    assert (cost.fixed_at_max, cost.ratio, cost.per_chat) == (None, None, None)
    assert cost.counted == "HPA current replicas"


def sandbox_record(replicas: tuple[ReplicaPoint, ...], hpa: dict[str, Any]) -> CockpitRecord:
    """A 100 s record on the sandbox with these replica counts and this HPA."""
    return CockpitRecord(
        started_at=0.0,
        ended_at=100.0,
        context="kube-llm-sandbox",
        namespace="kube-llm",
        backend="service proxy via the API server",
        replicas=replicas,
        hpa=hpa_view(hpa),
    )


def test_every_report_gives_its_cost_and_the_queue_metric() -> None:
    record = sandbox_record(
        (
            ReplicaPoint(at=0.0, current=2, desired=2, pods=2),
            ReplicaPoint(at=50.0, current=2, desired=3, pods=3),
        ),
        queue_hpa("3500m", replicas=3),
    )
    numbers = figures(record)
    assert numbers.cost is not None
    assert numbers.cost.replica_seconds == 250.0
    text = render(record, 100.0)
    assert "## Cost (replica-seconds)" in text
    assert "| used | 250 replica-s |" in text
    assert "| fixed at the maximum | 600 replica-s |" in text
    assert "| ratio | 0.42 |" in text
    assert "| per successful chat (0) | n/a |" in text
    assert "targets: in flight + waiting 4 per pod" in text
    assert "Last seen: in flight + waiting 3.5 per pod against 4. Why: " in text
    assert cost_lines(replace(numbers.cost, span_seconds=0.0)) == []


def test_the_headless_table_says_the_metric_why_and_the_cost() -> None:
    record = sandbox_record(
        (ReplicaPoint(at=0.0, current=2, desired=2, pods=2),), queue_hpa("9", replicas=2, desired=5)
    )
    table = load_table(record)
    assert (
        "HPA: in flight + waiting 9 per pod against 4: scaling up: in flight + waiting 9 per pod "
        "against a target of 4, 2 -> 5"
    ) in table
    assert (
        "cost: 200 replica-s over 100 s (fixed at the maximum 600 replica-s, ratio 0.33, per "
        "successful chat n/a)"
    ) in table
