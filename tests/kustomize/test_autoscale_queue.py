"""The queue autoscaler's parts outside our namespace (issue 18 item 1; docs/reliability.md, M19):
the Helm values for Prometheus and prometheus-adapter in kustomize/monitoring, and the optional
PodMonitor, agree with the gateway's metrics, the component's HPA and pods, and each other."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kustomize import rules
from tests.kustomize.manifests import (
    KUSTOMIZE,
    NAMESPACE,
    ROOT,
    Obj,
    container,
    one,
    pod_spec,
    render_text,
    rendered,
)

MONITORING = KUSTOMIZE / "monitoring"
PROMETHEUS_VALUES = MONITORING / "prometheus-values.yaml"
ADAPTER_VALUES = MONITORING / "prometheus-adapter-values.yaml"


def values(path: Path) -> dict[str, Any]:
    """A Helm values file."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def gateway_gauges() -> set[str]:
    """The gauges the gateway exports, read from backend/metrics.py."""
    source = (ROOT / "backend" / "metrics.py").read_text()
    return set(re.findall(r"Gauge\(\s*\"([a-z_]+)\"", source))


def the_rule() -> dict[str, Any]:
    """The adapter's one custom rule."""
    rule_set = values(ADAPTER_VALUES)["rules"]
    assert rule_set["default"] is False, "the chart's default rules are on"
    [rule] = rule_set["custom"]
    assert isinstance(rule, dict)
    return rule


def test_the_gateway_exports_the_two_gauges_the_metric_sums() -> None:
    """backend/metrics.py still exports chats in flight and chats waiting, unlabelled."""
    assert {"kube_llm_inflight", "kube_llm_queue_depth"} <= gateway_gauges()


def test_adapter_serves_the_hpa_metric_per_pod() -> None:
    """The rule is named as the HPA asks, maps namespace and pod, and sums exactly the two gauges
    per pod with the adapter's own matchers."""
    rule = the_rule()
    hpa = one(rendered("minikube-queue"), "HorizontalPodAutoscaler", "llm-backend")
    [metric] = hpa["spec"]["metrics"]
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"] == rules.QUEUE_METRIC
    assert re.fullmatch(rule["name"]["matches"], "kube_llm_inflight")
    assert rule["seriesQuery"].startswith("kube_llm_inflight{")
    assert 'namespace!=""' in rule["seriesQuery"]
    assert 'pod!=""' in rule["seriesQuery"]
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    query = " ".join(rule["metricsQuery"].split())
    assert query.startswith("sum by (<<.GroupBy>>) (")
    assert "<<.LabelMatchers>>" in query
    [names] = re.findall(r'__name__=~"([^"]+)"', query)
    assert set(names.split("|")) == {"kube_llm_inflight", "kube_llm_queue_depth"}
    assert set(names.split("|")) <= gateway_gauges()


def readme_helm_installs() -> dict[str, str]:
    """The README's `helm install RELEASE CHART ...` commands (continuations joined), by chart."""
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    commands = re.findall(r"helm install [^\n]+", text)
    return {command.split()[3]: " ".join(command.split()) for command in commands}


def test_readme_installs_what_the_values_expect() -> None:
    """The README installs the `prometheus` release in `monitoring` (the Service the adapter
    reads) and the adapter, each with its values file and the chart version it was written for."""
    prometheus = values(ADAPTER_VALUES)["prometheus"]
    assert prometheus["url"] == f"http://prometheus-server.{rules.PROMETHEUS_NAMESPACE}.svc"
    assert prometheus["port"] == 80
    installs = readme_helm_installs()
    for chart, release, path in (
        ("prometheus-community/prometheus", "prometheus", PROMETHEUS_VALUES),
        ("prometheus-community/prometheus-adapter", "prometheus-adapter", ADAPTER_VALUES),
    ):
        command = installs[chart]
        assert command.startswith(f"helm install {release} {chart} ")
        assert f"--namespace {rules.PROMETHEUS_NAMESPACE}" in command
        assert f"-f {path.relative_to(ROOT)}" in command
        [version] = re.findall(r"--version (\S+)", command)
        assert f"chart {version}" in path.read_text(), f"{path.name} names another chart version"


def test_prometheus_scrapes_the_annotated_gateways_often_enough() -> None:
    """Every 15 s at most (the HPA acts every 15 s), the annotation job on, looking at kube-llm."""
    prometheus = values(PROMETHEUS_VALUES)
    interval = prometheus["server"]["global"]["scrape_interval"]
    assert re.fullmatch(r"\d+s", interval)
    assert int(interval[:-1]) <= 15
    jobs = prometheus["scrapeConfigs"]
    pods_job = jobs["kubernetes-pods"]
    assert pods_job["enabled"] is True
    [discovery] = pods_job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod"
    assert discovery["namespaces"]["names"] == [NAMESPACE]
    assert all(job["enabled"] is False for name, job in jobs.items() if name != "kubernetes-pods")


def test_the_monitoring_pods_set_requests_and_memory_limits() -> None:
    """M4 for what the queue autoscaler adds to the node (the sizing test counts them)."""
    for resources in (
        values(PROMETHEUS_VALUES)["server"]["resources"],
        values(ADAPTER_VALUES)["resources"],
    ):
        assert set(resources["requests"]) == {"cpu", "memory"}
        assert "memory" in resources["limits"]


def podmonitor() -> Obj:
    """The optional PodMonitor, rendered."""
    [obj] = [doc for doc in yaml.safe_load_all(render_text(MONITORING / "podmonitor")) if doc]
    return obj


def test_optional_podmonitor_scrapes_the_same_endpoint() -> None:
    """The PodMonitor selects the gateway pods and scrapes their named backend port at
    /metrics as often as the Helm values do."""
    monitor = podmonitor()
    deployment = one(rendered("minikube-queue"), "Deployment", "llm-backend")
    assert monitor["kind"] == "PodMonitor"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert all(pod_labels[key] == value for key, value in selector.items())
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    backend = container(pod_spec(deployment), "backend")
    port = next(p for p in backend["ports"] if p["name"] == endpoint["port"])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert str(port["containerPort"]) == annotations["prometheus.io/port"]
    assert endpoint["path"] == annotations["prometheus.io/path"]
    scrape = values(PROMETHEUS_VALUES)["server"]["global"]["scrape_interval"]
    assert endpoint["interval"] == scrape


@pytest.mark.parametrize("target", ["minikube", "sandbox"])
def test_no_overlay_turns_the_queue_autoscaler_on_by_default(target: str) -> None:
    """The poster's CPU and memory HPA stays the default; the queue one is opt-in."""
    hpa = one(rendered(target), "HorizontalPodAutoscaler", "llm-backend")
    assert rules.queue_target(hpa) is None
    assert "prometheus.io/scrape" not in (
        one(rendered(target), "Deployment", "llm-backend")["spec"]["template"]["metadata"].get(
            "annotations", {}
        )
    )


def test_readme_states_the_target_the_component_sets() -> None:
    """The target lives in components/autoscale-queue/hpa-patch.yaml; the README's account of
    it names the same number (change both when a measurement moves it)."""
    hpa = one(rendered("minikube-queue"), "HorizontalPodAutoscaler", "llm-backend")
    target = rules.queue_target(hpa)
    readme = (ROOT / "README.md").read_text()
    [said] = re.findall(r"The target is \*\*(\d+(?:\.\d+)?) per pod\*\*", readme)
    assert float(said) == target
    assert f"TARGETS reads 0/{said} at rest" in readme


def test_the_sandbox_queue_tree_is_the_sandbox_tree_with_its_own_target() -> None:
    """sandbox-queue (`kube-llm demo --autoscaler queue`) is the sandbox overlay with the
    component, and a target below the component's 4: the sandbox runs MAX_INFLIGHT=1."""
    plain, queue = rendered("sandbox"), rendered("sandbox-queue")
    hpa = one(queue, "HorizontalPodAutoscaler", "llm-backend")
    target = rules.queue_target(hpa)
    assert target is not None
    config = rules.backend_config(queue, one(queue, "Deployment", "llm-backend"))
    assert int(config["MAX_INFLIGHT"]) < target < 4
    for objs in (plain, queue):
        one(objs, "HorizontalPodAutoscaler", "llm-backend")["spec"].pop("metrics")
        one(objs, "Deployment", "llm-backend")["spec"]["template"]["metadata"].pop(
            "annotations", None
        )
    assert plain == queue
