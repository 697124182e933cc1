"""docs/reliability.md M2-M13 on the rendered objects (loaded with pyyaml), for the base and every
overlay; each rule also runs once on a deliberately broken copy to show it can fail."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.kustomize import rules
from tests.kustomize.manifests import (
    OVERLAYS,
    QUEUE_TARGETS,
    TARGETS,
    Obj,
    container,
    find,
    one,
    pod_spec,
    rendered,
)

Check = Callable[[list[Obj]], list[str]]


def deployment_spec(objs: list[Obj]) -> Obj:
    """The gateway pod spec of a rendered target."""
    return pod_spec(one(objs, "Deployment", "llm-backend"))


@pytest.mark.parametrize("target", TARGETS)
def test_m2_pod_security_restricted(target: str) -> None:
    """M2: restricted Pod Security for the pod and every (init) container."""
    assert rules.m2_pod_security_restricted(rendered(target)) == []


@pytest.mark.parametrize("target", TARGETS)
def test_m3_read_only_root_and_bounded_empty_dirs(target: str) -> None:
    """M3: read-only root filesystems; every emptyDir is bounded."""
    assert rules.m3_read_only_root_and_bounded_empty_dirs(rendered(target)) == []


@pytest.mark.parametrize("target", TARGETS)
def test_m4_requests_and_memory_limits(target: str) -> None:
    """M4: CPU and memory requests and a memory limit on every container."""
    assert rules.m4_requests_and_memory_limits(rendered(target)) == []


@pytest.mark.parametrize("target", TARGETS)
def test_m5_engine_is_native_sidecar(target: str) -> None:
    """M5: the engine is a native sidecar with a startup probe."""
    assert rules.m5_engine_is_native_sidecar(rendered(target)) == []


@pytest.mark.parametrize("target", TARGETS)
def test_m6_backend_probes(target: str) -> None:
    """M6: the backend has three probes; liveness and readiness differ."""
    assert rules.m6_backend_probes(rendered(target)) == []


@pytest.mark.parametrize("target", TARGETS)
def test_m7_grace_period_covers_drain(target: str) -> None:
    """M7: the grace period covers preStop + graceful shutdown + 5 s."""
    assert rules.m7_grace_period_covers_drain(rendered(target)) == []


# M8 asks for >= 300 s in the minikube overlay; the base keeps the same, the sandbox is short on
# purpose (test_contract checks it stays short).
SCALE_DOWN_FLOOR = {
    "base": 300,
    "minikube": 300,
    "sandbox": 0,
    "minikube-queue": 300,
    "sandbox-queue": 0,
    "sandbox-minikube": 300,
}


@pytest.mark.parametrize("target", [t for t in TARGETS if t not in QUEUE_TARGETS])
def test_m8_hpa(target: str) -> None:
    """M8: HPA v2, 2-6 replicas, CPU 70 % (engine), memory 80 % (backend), no replicas field."""
    assert rules.m8_hpa(rendered(target), SCALE_DOWN_FLOOR[target]) == []


@pytest.mark.parametrize("target", QUEUE_TARGETS)
def test_m19_queue_autoscaler(target: str) -> None:
    """M19: 2-6 on chats in flight + waiting per pod, a reachable target, Prometheus let in."""
    assert rules.m19_queue_autoscaler(rendered(target), SCALE_DOWN_FLOOR[target]) == []


def test_m19_queue_component_changes_only_the_metrics_and_the_annotations() -> None:
    """The queue tree is the minikube tree with other HPA metrics and scrape annotations."""
    plain, queue = rendered("minikube"), rendered("minikube-queue")
    for objs in (plain, queue):
        one(objs, "HorizontalPodAutoscaler", "llm-backend")["spec"].pop("metrics")
        one(objs, "Deployment", "llm-backend")["spec"]["template"]["metadata"].pop(
            "annotations", None
        )
    assert plain == queue


@pytest.mark.parametrize("target", TARGETS)
def test_m9_pdb(target: str) -> None:
    """M9: the PDB matches the pods, lets one go, and evicts unhealthy pods."""
    assert rules.m9_pdb(rendered(target)) == []


@pytest.mark.parametrize("target", TARGETS)
def test_m10_rolling_update(target: str) -> None:
    """M10: RollingUpdate with maxUnavailable 0."""
    assert rules.m10_rolling_update(rendered(target)) == []


@pytest.mark.parametrize("target", TARGETS)
def test_m11_network_policy(target: str) -> None:
    """M11: default deny, only the backend port open, the engine unreachable."""
    assert rules.m11_network_policy(rendered(target)) == []


@pytest.mark.parametrize("target", TARGETS)
def test_m12_engine_settings(target: str) -> None:
    """M12: engine on loopback, explicit limits, HOME and models on volumes."""
    assert rules.m12_engine_settings(rendered(target)) == []


@pytest.mark.parametrize("target", TARGETS)
def test_m13_rbac(target: str) -> None:
    """M13: tokenless backend account; the cockpit's namespaced, exact Role."""
    assert rules.m13_rbac(rendered(target)) == []


@pytest.mark.parametrize("target", OVERLAYS)
def test_m14_no_latest_tag(target: str) -> None:
    """M14: every image an overlay deploys is pinned; none is `latest`."""
    assert rules.m14_pinned_images(rendered(target)) == []


def test_m14_base_images_carry_no_tag() -> None:
    """docs/design.md: the base names images without tags; overlays pin them with `images:`."""
    assert all(rules.image_tag(image) is None for image in rules.images(rendered("base")))


# ---- the same rules on broken copies ------------------------------------------------------


def _privileged_backend(objs: list[Obj]) -> None:
    container(deployment_spec(objs), "backend")["securityContext"]["privileged"] = True


def _root_engine(objs: list[Obj]) -> None:
    container(deployment_spec(objs), "engine")["securityContext"]["runAsUser"] = 0


def _host_network(objs: list[Obj]) -> None:
    deployment_spec(objs)["hostNetwork"] = True


def _keeps_capabilities(objs: list[Obj]) -> None:
    del container(deployment_spec(objs), "model-pull")["securityContext"]["capabilities"]


def _writable_root(objs: list[Obj]) -> None:
    container(deployment_spec(objs), "model-pull")["securityContext"]["readOnlyRootFilesystem"] = (
        False
    )


def _unbounded_empty_dir(objs: list[Obj]) -> None:
    volume = next(v for v in deployment_spec(objs)["volumes"] if "emptyDir" in v)
    del volume["emptyDir"]["sizeLimit"]


def _no_sidecar_memory_limit(objs: list[Obj]) -> None:
    del container(deployment_spec(objs), "engine")["resources"]["limits"]


def _no_init_cpu_request(objs: list[Obj]) -> None:
    del container(deployment_spec(objs), "model-pull")["resources"]["requests"]["cpu"]


def _engine_as_plain_init(objs: list[Obj]) -> None:
    del container(deployment_spec(objs), "engine")["restartPolicy"]


def _engine_without_startup_probe(objs: list[Obj]) -> None:
    del container(deployment_spec(objs), "engine")["startupProbe"]


def _readiness_on_healthz(objs: list[Obj]) -> None:
    container(deployment_spec(objs), "backend")["readinessProbe"]["httpGet"]["path"] = "/healthz"


def _no_startup_probe(objs: list[Obj]) -> None:
    del container(deployment_spec(objs), "backend")["startupProbe"]


def _short_grace(objs: list[Obj]) -> None:
    deployment_spec(objs)["terminationGracePeriodSeconds"] = 29


def _long_shutdown(objs: list[Obj]) -> None:
    for config in find(objs, "ConfigMap"):
        config["data"]["SHUTDOWN_TIMEOUT"] = "60"


def _exec_pre_stop(objs: list[Obj]) -> None:
    container(deployment_spec(objs), "backend")["lifecycle"]["preStop"] = {
        "exec": {"command": ["sleep", "5"]}
    }


def _fixed_replicas(objs: list[Obj]) -> None:
    one(objs, "Deployment", "llm-backend")["spec"]["replicas"] = 2


def _pod_cpu_metric(objs: list[Obj]) -> None:
    one(objs, "HorizontalPodAutoscaler", "llm-backend")["spec"]["metrics"][0] = {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
    }


def _short_scale_down(objs: list[Obj]) -> None:
    hpa = one(objs, "HorizontalPodAutoscaler", "llm-backend")
    hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = 60


def _seven_replicas(objs: list[Obj]) -> None:
    one(objs, "HorizontalPodAutoscaler", "llm-backend")["spec"]["maxReplicas"] = 7


def _pdb_blocks_all(objs: list[Obj]) -> None:
    find(objs, "PodDisruptionBudget")[0]["spec"]["minAvailable"] = 2


def _pdb_wrong_selector(objs: list[Obj]) -> None:
    find(objs, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"] = {"app": "other"}


def _pdb_if_healthy(objs: list[Obj]) -> None:
    find(objs, "PodDisruptionBudget")[0]["spec"]["unhealthyPodEvictionPolicy"] = "IfHealthyBudget"


def _max_unavailable(objs: list[Obj]) -> None:
    one(objs, "Deployment", "llm-backend")["spec"]["strategy"]["rollingUpdate"][
        "maxUnavailable"
    ] = "25%"


def _recreate(objs: list[Obj]) -> None:
    one(objs, "Deployment", "llm-backend")["spec"]["strategy"] = {"type": "Recreate"}


def _no_default_deny(objs: list[Obj]) -> None:
    objs.remove(one(objs, "NetworkPolicy", "default-deny"))


def _engine_port_open(objs: list[Obj]) -> None:
    policy = one(objs, "NetworkPolicy", "llm-backend")
    policy["spec"]["ingress"][0]["ports"].append({"protocol": "TCP", "port": 11434})


def _all_ports_open(objs: list[Obj]) -> None:
    del one(objs, "NetworkPolicy", "llm-backend")["spec"]["ingress"][0]["ports"]


def _engine_on_all_interfaces(objs: list[Obj]) -> None:
    for var in container(deployment_spec(objs), "engine")["env"]:
        if var["name"] == "OLLAMA_HOST":
            var["value"] = "0.0.0.0:11434"


def _implicit_keep_alive(objs: list[Obj]) -> None:
    engine = container(deployment_spec(objs), "engine")
    engine["env"] = [v for v in engine["env"] if v["name"] != "OLLAMA_KEEP_ALIVE"]


def _models_on_root_fs(objs: list[Obj]) -> None:
    engine = container(deployment_spec(objs), "engine")
    engine["volumeMounts"] = [m for m in engine["volumeMounts"] if m["mountPath"] != "/models"]


def _backend_token(objs: list[Obj]) -> None:
    one(objs, "ServiceAccount", "llm-backend")["automountServiceAccountToken"] = True


def _backend_bound(objs: list[Obj]) -> None:
    binding = one(objs, "RoleBinding", "kube-llm-cockpit")
    binding["subjects"].append({"kind": "ServiceAccount", "name": "llm-backend"})


def _cockpit_exec(objs: list[Obj]) -> None:
    one(objs, "Role", "kube-llm-cockpit")["rules"].append(
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}
    )


def _cockpit_secrets(objs: list[Obj]) -> None:
    one(objs, "Role", "kube-llm-cockpit")["rules"].append(
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    )


def _cockpit_wildcard(objs: list[Obj]) -> None:
    one(objs, "Role", "kube-llm-cockpit")["rules"][0]["verbs"] = ["*"]


def _cockpit_cannot_evict(objs: list[Obj]) -> None:
    role = one(objs, "Role", "kube-llm-cockpit")
    role["rules"] = [r for r in role["rules"] if r["resources"] != ["pods/eviction"]]


def _latest_engine(objs: list[Obj]) -> None:
    container(deployment_spec(objs), "engine")["image"] = "ollama/ollama:latest"


def _untagged_backend(objs: list[Obj]) -> None:
    container(deployment_spec(objs), "backend")["image"] = "kube-llm-backend"


BREAKAGES: list[tuple[str, Check, Callable[[list[Obj]], None]]] = [
    ("m2-privileged", rules.m2_pod_security_restricted, _privileged_backend),
    ("m2-root", rules.m2_pod_security_restricted, _root_engine),
    ("m2-host-network", rules.m2_pod_security_restricted, _host_network),
    ("m2-capabilities", rules.m2_pod_security_restricted, _keeps_capabilities),
    ("m3-writable-root", rules.m3_read_only_root_and_bounded_empty_dirs, _writable_root),
    ("m3-empty-dir", rules.m3_read_only_root_and_bounded_empty_dirs, _unbounded_empty_dir),
    ("m4-sidecar-limit", rules.m4_requests_and_memory_limits, _no_sidecar_memory_limit),
    ("m4-init-cpu", rules.m4_requests_and_memory_limits, _no_init_cpu_request),
    ("m5-plain-init", rules.m5_engine_is_native_sidecar, _engine_as_plain_init),
    ("m5-startup-probe", rules.m5_engine_is_native_sidecar, _engine_without_startup_probe),
    ("m6-same-path", rules.m6_backend_probes, _readiness_on_healthz),
    ("m6-startup-probe", rules.m6_backend_probes, _no_startup_probe),
    ("m7-short-grace", rules.m7_grace_period_covers_drain, _short_grace),
    ("m7-long-shutdown", rules.m7_grace_period_covers_drain, _long_shutdown),
    ("m7-exec-prestop", rules.m7_grace_period_covers_drain, _exec_pre_stop),
    ("m8-replicas", lambda objs: rules.m8_hpa(objs, 300), _fixed_replicas),
    ("m8-pod-metric", lambda objs: rules.m8_hpa(objs, 300), _pod_cpu_metric),
    ("m8-scale-down", lambda objs: rules.m8_hpa(objs, 300), _short_scale_down),
    ("m8-max", lambda objs: rules.m8_hpa(objs, 300), _seven_replicas),
    ("m9-blocks-all", rules.m9_pdb, _pdb_blocks_all),
    ("m9-selector", rules.m9_pdb, _pdb_wrong_selector),
    ("m9-unhealthy", rules.m9_pdb, _pdb_if_healthy),
    ("m10-unavailable", rules.m10_rolling_update, _max_unavailable),
    ("m10-recreate", rules.m10_rolling_update, _recreate),
    ("m11-no-deny", rules.m11_network_policy, _no_default_deny),
    ("m11-engine-port", rules.m11_network_policy, _engine_port_open),
    ("m11-all-ports", rules.m11_network_policy, _all_ports_open),
    ("m11-engine-bind", rules.m11_network_policy, _engine_on_all_interfaces),
    ("m12-engine-bind", rules.m12_engine_settings, _engine_on_all_interfaces),
    ("m12-keep-alive", rules.m12_engine_settings, _implicit_keep_alive),
    ("m12-models-volume", rules.m12_engine_settings, _models_on_root_fs),
    ("m13-token", rules.m13_rbac, _backend_token),
    ("m13-backend-bound", rules.m13_rbac, _backend_bound),
    ("m13-exec", rules.m13_rbac, _cockpit_exec),
    ("m13-secrets", rules.m13_rbac, _cockpit_secrets),
    ("m13-wildcard", rules.m13_rbac, _cockpit_wildcard),
    ("m13-missing-grant", rules.m13_rbac, _cockpit_cannot_evict),
    ("m14-latest", rules.m14_pinned_images, _latest_engine),
    ("m14-untagged", rules.m14_pinned_images, _untagged_backend),
]


@pytest.mark.parametrize(
    ("check", "breakage"),
    [pytest.param(check, breakage, id=name) for name, check, breakage in BREAKAGES],
)
def test_rule_catches_broken_copy(check: Check, breakage: Callable[[list[Obj]], None]) -> None:
    """Each rule passes on the real minikube render and fails on a copy broken on purpose."""
    objs = rendered("minikube")
    assert check(objs) == []
    breakage(objs)
    assert check(objs) != []


# ---- M19 on broken copies of the queue tree ---------------------------------------------------


def _queue_metric(objs: list[Obj]) -> Obj:
    hpa = one(objs, "HorizontalPodAutoscaler", "llm-backend")
    metric: Obj = hpa["spec"]["metrics"][0]["pods"]
    return metric


def _other_metric_name(objs: list[Obj]) -> None:
    _queue_metric(objs)["metric"]["name"] = "kube_llm_inflight"


def _zero_target(objs: list[Obj]) -> None:
    _queue_metric(objs)["target"]["averageValue"] = "0"


def _unreachable_target(objs: list[Obj]) -> None:
    _queue_metric(objs)["target"]["averageValue"] = "20"


def _value_target(objs: list[Obj]) -> None:
    _queue_metric(objs)["target"] = {"type": "Value", "value": "4"}


def _cpu_as_well(objs: list[Obj]) -> None:
    one(objs, "HorizontalPodAutoscaler", "llm-backend")["spec"]["metrics"].append(
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        }
    )


def _annotations(objs: list[Obj]) -> Obj:
    meta: Obj = one(objs, "Deployment", "llm-backend")["spec"]["template"]["metadata"]
    annotations: Obj = meta["annotations"]
    return annotations


def _not_scraped(objs: list[Obj]) -> None:
    del _annotations(objs)["prometheus.io/scrape"]


def _engine_port_scraped(objs: list[Obj]) -> None:
    _annotations(objs)["prometheus.io/port"] = "11434"


def _wrong_path(objs: list[Obj]) -> None:
    _annotations(objs)["prometheus.io/path"] = "/healthz"


def _ingress_from_own_namespace_only(objs: list[Obj]) -> None:
    policy = one(objs, "NetworkPolicy", "llm-backend")
    policy["spec"]["ingress"][0]["from"] = [{"podSelector": {}}]


def _ingress_from_another_namespace(objs: list[Obj]) -> None:
    policy = one(objs, "NetworkPolicy", "llm-backend")
    policy["spec"]["ingress"][0]["from"] = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]


def _max_eight(objs: list[Obj]) -> None:
    one(objs, "HorizontalPodAutoscaler", "llm-backend")["spec"]["maxReplicas"] = 8


QUEUE_BREAKAGES: list[tuple[str, Callable[[list[Obj]], None]]] = [
    ("other-metric", _other_metric_name),
    ("zero-target", _zero_target),
    ("unreachable-target", _unreachable_target),
    ("value-target", _value_target),
    ("cpu-as-well", _cpu_as_well),
    ("not-scraped", _not_scraped),
    ("engine-port", _engine_port_scraped),
    ("wrong-path", _wrong_path),
    ("own-namespace-only", _ingress_from_own_namespace_only),
    ("another-namespace", _ingress_from_another_namespace),
    ("max-eight", _max_eight),
]


@pytest.mark.parametrize(
    "breakage", [pytest.param(breakage, id=name) for name, breakage in QUEUE_BREAKAGES]
)
def test_m19_catches_broken_copy(breakage: Callable[[list[Obj]], None]) -> None:
    """M19 passes on the real minikube-queue render and fails on a copy broken on purpose."""
    objs = rendered("minikube-queue")
    assert rules.m19_queue_autoscaler(objs, 300) == []
    breakage(objs)
    assert rules.m19_queue_autoscaler(objs, 300) != []
