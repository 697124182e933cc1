"""docs/reliability.md M2-M15 and M19 as functions that list violations.

Each check takes the rendered objects of one kustomize target and returns a list of
human-readable violations (empty = the rule holds). Keeping the checks separate from the tests
lets the tests run them both on the real renders and on deliberately broken copies.
"""

from __future__ import annotations

import re
from typing import Any

from tests.kustomize.manifests import (
    Obj,
    all_containers,
    backend_config,
    container,
    env_value,
    find,
    one,
    pod_spec,
    quantity,
    workloads,
)

DEPLOYMENT = "llm-backend"
BACKEND_SA = "llm-backend"
COCKPIT_SA = "kube-llm-cockpit"
COCKPIT_ROLE = "kube-llm-cockpit"
ENGINE_PORT = 11434
BACKEND_PORT = 8000
# The backend's default SHUTDOWN_TIMEOUT (COMMON.md), used when the ConfigMap does not set it.
DEFAULT_SHUTDOWN_TIMEOUT = 20

# Capabilities Pod Security "restricted" lets a container add back.
RESTRICTED_ADDABLE_CAPS = {"NET_BIND_SERVICE"}


def _where(obj: Obj, ctr: Obj | None = None) -> str:
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    return f"{name} container {ctr['name']}" if ctr else name


def m2_pod_security_restricted(objs: list[Obj]) -> list[str]:
    """M2: Pod Security "restricted" for the pod and every container and init container."""
    problems: list[str] = []
    for obj in workloads(objs):
        spec = pod_spec(obj)
        pod_sc: dict[str, Any] = spec.get("securityContext", {})
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(host):
                problems.append(f"{_where(obj)}: {host} is set")
        for volume in spec.get("volumes", []):
            if "hostPath" in volume:
                problems.append(f"{_where(obj)}: volume {volume['name']} is a hostPath")
        pod_seccomp = pod_sc.get("seccompProfile", {}).get("type")
        if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
            problems.append(f"{_where(obj)}: pod seccomp profile is {pod_seccomp}")
        if pod_sc.get("runAsUser") == 0:
            problems.append(f"{_where(obj)}: pod runAsUser is 0")
        for ctr in all_containers(spec):
            sc: dict[str, Any] = ctr.get("securityContext", {})
            where = _where(obj, ctr)
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            if not isinstance(uid, int) or uid <= 0:
                problems.append(f"{where}: runAsUser is {uid!r}, not a non-zero uid")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            caps = sc.get("capabilities", {})
            if "ALL" not in caps.get("drop", []):
                problems.append(f"{where}: capabilities do not drop ALL")
            extra_caps = set(caps.get("add", [])) - RESTRICTED_ADDABLE_CAPS
            if extra_caps:
                problems.append(f"{where}: adds capabilities {sorted(extra_caps)}")
            seccomp = sc.get("seccompProfile", {}).get("type", pod_seccomp)
            if seccomp != "RuntimeDefault":
                problems.append(f"{where}: seccomp profile is {seccomp}, not RuntimeDefault")
            for port in ctr.get("ports", []):
                if port.get("hostPort"):
                    problems.append(f"{where}: hostPort {port['hostPort']}")
    if not workloads(objs):
        problems.append("no workload rendered")
    return problems


def m3_read_only_root_and_bounded_empty_dirs(objs: list[Obj]) -> list[str]:
    """M3: readOnlyRootFilesystem everywhere; every emptyDir has a sizeLimit."""
    problems: list[str] = []
    for obj in workloads(objs):
        spec = pod_spec(obj)
        for ctr in all_containers(spec):
            if ctr.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
                problems.append(f"{_where(obj, ctr)}: root filesystem is writable")
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume and not (volume["emptyDir"] or {}).get("sizeLimit"):
                problems.append(f"{_where(obj)}: emptyDir {volume['name']} has no sizeLimit")
    return problems


def m4_requests_and_memory_limits(objs: list[Obj]) -> list[str]:
    """M4: every container, the sidecar included, has CPU and memory requests and a memory limit."""
    problems: list[str] = []
    for obj in workloads(objs):
        for ctr in all_containers(pod_spec(obj)):
            resources = ctr.get("resources", {})
            for resource in ("cpu", "memory"):
                if not resources.get("requests", {}).get(resource):
                    problems.append(f"{_where(obj, ctr)}: no {resource} request")
            if not resources.get("limits", {}).get("memory"):
                problems.append(f"{_where(obj, ctr)}: no memory limit")
    return problems


def m5_engine_is_native_sidecar(objs: list[Obj]) -> list[str]:
    """M5: the engine is an init container with restartPolicy Always and a startup probe."""
    problems: list[str] = []
    spec = pod_spec(one(objs, "Deployment", DEPLOYMENT))
    engines = [c for c in spec.get("initContainers", []) if c["name"] == "engine"]
    if any(c["name"] == "engine" for c in spec.get("containers", [])):
        problems.append("engine is a regular container, not a native sidecar")
    if len(engines) != 1:
        return [*problems, "no init container named engine"]
    engine = engines[0]
    if engine.get("restartPolicy") != "Always":
        problems.append("engine init container lacks restartPolicy: Always")
    if not engine.get("startupProbe"):
        problems.append("engine has no startup probe")
    init_names = [c["name"] for c in spec.get("initContainers", [])]
    if "model-pull" not in init_names or init_names.index("model-pull") < init_names.index(
        "engine"
    ):
        problems.append("model-pull must be an init container after the engine")
    return problems


def _http_path(probe: Obj | None) -> str | None:
    if not probe:
        return None
    get = probe.get("httpGet")
    return None if get is None else str(get.get("path"))


def m6_backend_probes(objs: list[Obj]) -> list[str]:
    """M6: startup, readiness and liveness probes; liveness and readiness on different paths."""
    backend = container(pod_spec(one(objs, "Deployment", DEPLOYMENT)), "backend")
    problems = [
        f"backend has no {kind}"
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        if not backend.get(kind)
    ]
    liveness = _http_path(backend.get("livenessProbe"))
    readiness = _http_path(backend.get("readinessProbe"))
    if liveness is None or readiness is None:
        problems.append("liveness and readiness must be httpGet probes with a path")
    elif liveness == readiness:
        problems.append(f"liveness and readiness share the path {liveness}")
    return problems


def m7_grace_period_covers_drain(objs: list[Obj]) -> list[str]:
    """M7: grace >= preStop sleep + SHUTDOWN_TIMEOUT + 5 s; preStop uses the sleep action."""
    deployment = one(objs, "Deployment", DEPLOYMENT)
    spec = pod_spec(deployment)
    backend = container(spec, "backend")
    pre_stop = backend.get("lifecycle", {}).get("preStop", {})
    if set(pre_stop) != {"sleep"}:
        return [f"preStop must be exactly the sleep action, got {sorted(pre_stop)}"]
    sleep = int(pre_stop["sleep"]["seconds"])
    shutdown = float(
        backend_config(objs, deployment).get("SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT)
    )
    grace = int(spec.get("terminationGracePeriodSeconds", 30))
    needed = sleep + shutdown + 5
    if grace < needed:
        return [f"grace period {grace} s < preStop {sleep} + shutdown {shutdown} + 5 s"]
    return []


def _metric_target(hpa: Obj, resource: str, ctr: str) -> int | None:
    for metric in hpa["spec"].get("metrics", []):
        if metric.get("type") != "ContainerResource":
            continue
        source = metric["containerResource"]
        if source["name"] == resource and source["container"] == ctr:
            target = source["target"]
            if target.get("type") == "Utilization":
                return int(target["averageUtilization"])
    return None


def _hpa_shape(objs: list[Obj], min_scale_down_window: int) -> tuple[Obj | None, list[str]]:
    """What every HPA here holds to, whatever it scales on: no replicas on the Deployment, HPA
    v2 on the Deployment, 2-6 pods, explicit behaviour and a slow enough scale-down."""
    problems: list[str] = []
    deployment = one(objs, "Deployment", DEPLOYMENT)
    if "replicas" in deployment["spec"]:
        problems.append("the Deployment sets spec.replicas (the HPA owns it)")
    hpas = find(objs, "HorizontalPodAutoscaler", DEPLOYMENT)
    if len(hpas) != 1:
        return None, [*problems, "no HorizontalPodAutoscaler llm-backend"]
    hpa = hpas[0]
    spec = hpa["spec"]
    if hpa["apiVersion"] != "autoscaling/v2":
        problems.append(f"HPA apiVersion is {hpa['apiVersion']}")
    ref = spec["scaleTargetRef"]
    if (ref.get("kind"), ref.get("name")) != ("Deployment", DEPLOYMENT):
        problems.append(f"HPA targets {ref}")
    if (spec.get("minReplicas"), spec.get("maxReplicas")) != (2, 6):
        problems.append(f"HPA range {spec.get('minReplicas')}-{spec.get('maxReplicas')}, not 2-6")
    behavior = spec.get("behavior", {})
    if "scaleUp" not in behavior or "scaleDown" not in behavior:
        problems.append("the HPA behaviour is not explicit for both directions")
    window = behavior.get("scaleDown", {}).get("stabilizationWindowSeconds")
    if window is None or window < min_scale_down_window:
        problems.append(f"scale-down stabilisation {window} s < {min_scale_down_window} s")
    return hpa, problems


def m8_hpa(objs: list[Obj], min_scale_down_window: int) -> list[str]:
    """M8: no replicas on the Deployment; HPA v2, 2-6, CPU 70 % engine, memory 80 % backend."""
    hpa, problems = _hpa_shape(objs, min_scale_down_window)
    if hpa is None:
        return problems
    if _metric_target(hpa, "cpu", "engine") != 70:
        problems.append("no ContainerResource CPU 70 % target on the engine")
    if _metric_target(hpa, "memory", "backend") != 80:
        problems.append("no ContainerResource memory 80 % target on the backend")
    if len(hpa["spec"].get("metrics", [])) != 2:
        problems.append("the HPA has metrics beyond the two of the poster")
    return problems


# The queue autoscaler's metric (components/autoscale-queue): chats in flight plus chats waiting,
# per pod, as prometheus-adapter (kustomize/monitoring) and the sandbox serve it.
QUEUE_METRIC = "kube_llm_chats_active"
# The backend's defaults (backend/settings.py), used when the ConfigMap does not set them.
DEFAULT_MAX_INFLIGHT = 4
DEFAULT_MAX_QUEUE = 16
# Where the README installs Prometheus (the prometheus-community/prometheus chart's server pod).
PROMETHEUS_NAMESPACE = "monitoring"
PROMETHEUS_POD_LABELS = {
    "app.kubernetes.io/name": "prometheus",
    "app.kubernetes.io/component": "server",
    "app.kubernetes.io/instance": "prometheus",
}


def queue_target(hpa: Obj) -> float | None:
    """The AverageValue target of the HPA's kube_llm_chats_active Pods metric, if it has one."""
    for metric in hpa["spec"].get("metrics", []):
        source = metric.get("pods", {})
        if metric.get("type") == "Pods" and source.get("metric", {}).get("name") == QUEUE_METRIC:
            target = source.get("target", {})
            if target.get("type") == "AverageValue" and "averageValue" in target:
                return quantity(target["averageValue"])
    return None


def _peer_matches(peer: Obj, namespace_labels: dict[str, str], pod_labels: dict[str, str]) -> bool:
    """A NetworkPolicy `from` entry against a pod in another namespace (ipBlock never matches a
    pod here; an entry with only a podSelector means the policy's own namespace)."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" not in peer:
        return False

    def selects(selector: Obj | None, labels: dict[str, str]) -> bool:
        if selector is None:
            return True
        if selector.get("matchExpressions"):
            return False
        return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())

    return selects(peer["namespaceSelector"], namespace_labels) and selects(
        peer.get("podSelector"), pod_labels
    )


def ingress_allowed(
    objs: list[Obj], port: int, namespace: str, peer_pod_labels: dict[str, str]
) -> bool:
    """Whether the rendered NetworkPolicies let a pod of another namespace reach the gateway
    pods on a port: no policy selecting them for Ingress, or a rule whose peers and ports match."""
    deployment = one(objs, "Deployment", DEPLOYMENT)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    named_ports = {
        p["name"]: int(p["containerPort"])
        for ctr in all_containers(pod_spec(deployment))
        for p in ctr.get("ports", [])
        if "name" in p
    }
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    isolating = [
        policy
        for policy in find(objs, "NetworkPolicy")
        if _selects_backend(policy, pod_labels)
        and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
    ]
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy["spec"].get("ingress", []) or []:
            peers = rule.get("from")
            if peers and not any(
                _peer_matches(peer, namespace_labels, peer_pod_labels) for peer in peers
            ):
                continue
            ports = rule.get("ports")
            if not ports or any(
                _resolve_port(p.get("port", port), named_ports) == port for p in ports
            ):
                return True
    return False


def m19_queue_autoscaler(objs: list[Obj], min_scale_down_window: int) -> list[str]:
    """M19: the queue autoscaler's HPA (2-6, the same behaviour) scales on chats in flight plus
    waiting per pod with a target a pod reaches before it refuses chats, and Prometheus finds and
    may scrape every gateway pod's /metrics."""
    hpa, problems = _hpa_shape(objs, min_scale_down_window)
    if hpa is None:
        return problems
    deployment = one(objs, "Deployment", DEPLOYMENT)
    metrics = hpa["spec"].get("metrics", [])
    target = queue_target(hpa)
    if target is None or len(metrics) != 1:
        problems.append(f"the HPA's metrics are not exactly one Pods {QUEUE_METRIC} AverageValue")
    else:
        config = backend_config(objs, deployment)
        inflight = int(config.get("MAX_INFLIGHT", DEFAULT_MAX_INFLIGHT))
        capacity = inflight + int(config.get("MAX_QUEUE", DEFAULT_MAX_QUEUE))
        if not 0 < target < capacity:
            problems.append(
                f"target {target} per pod is not within (0, {capacity}): MAX_INFLIGHT + "
                "MAX_QUEUE chats is where a pod starts refusing them"
            )
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    backend = container(pod_spec(deployment), "backend")
    ports = {str(p["containerPort"]) for p in backend.get("ports", [])}
    if annotations.get("prometheus.io/scrape") != "true":
        problems.append("the pod template is not annotated prometheus.io/scrape: 'true'")
    if annotations.get("prometheus.io/port") not in ports or str(BACKEND_PORT) not in ports:
        problems.append(f"prometheus.io/port is {annotations.get('prometheus.io/port')!r}")
    if annotations.get("prometheus.io/path") != "/metrics":
        problems.append(f"prometheus.io/path is {annotations.get('prometheus.io/path')!r}")
    if not ingress_allowed(objs, BACKEND_PORT, PROMETHEUS_NAMESPACE, PROMETHEUS_POD_LABELS):
        problems.append(f"Prometheus in {PROMETHEUS_NAMESPACE} may not reach :{BACKEND_PORT}")
    return problems


def m9_pdb(objs: list[Obj]) -> list[str]:
    """M9: the PDB selects exactly the pod labels, minAvailable <= minReplicas - 1, AlwaysAllow."""
    problems: list[str] = []
    deployment = one(objs, "Deployment", DEPLOYMENT)
    # The backend's; the frontend's (components/frontend) is M20's.
    pdbs = find(objs, "PodDisruptionBudget", DEPLOYMENT)
    if len(pdbs) != 1:
        return [f"expected one PodDisruptionBudget {DEPLOYMENT}, found {len(pdbs)}"]
    spec = pdbs[0]["spec"]
    selector = spec.get("selector", {})
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    if selector.get("matchExpressions"):
        problems.append("the PDB selector uses matchExpressions")
    match = selector.get("matchLabels", {})
    if match != deployment["spec"]["selector"]["matchLabels"]:
        problems.append(f"PDB selector {match} differs from the Deployment selector")
    if not match or any(pod_labels.get(key) != value for key, value in match.items()):
        problems.append(f"PDB selector {match} does not match the pod labels {pod_labels}")
    if "maxUnavailable" in spec or not isinstance(spec.get("minAvailable"), int):
        problems.append("the PDB must set an integer minAvailable")
    else:
        hpa = one(objs, "HorizontalPodAutoscaler", DEPLOYMENT)
        if spec["minAvailable"] > hpa["spec"]["minReplicas"] - 1:
            problems.append(
                f"minAvailable {spec['minAvailable']} > minReplicas - 1 "
                f"({hpa['spec']['minReplicas'] - 1}): no pod could ever be evicted"
            )
    if spec.get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
        problems.append("unhealthyPodEvictionPolicy is not AlwaysAllow")
    return problems


def m10_rolling_update(objs: list[Obj]) -> list[str]:
    """M10: rolling update with maxUnavailable 0."""
    strategy = one(objs, "Deployment", DEPLOYMENT)["spec"].get("strategy", {})
    if strategy.get("type") != "RollingUpdate":
        return [f"strategy is {strategy.get('type')}, not RollingUpdate"]
    unavailable = strategy.get("rollingUpdate", {}).get("maxUnavailable")
    if unavailable not in (0, "0", "0%"):
        return [f"maxUnavailable is {unavailable!r}, not 0"]
    return []


def _selects_backend(policy: Obj, pod_labels: dict[str, str]) -> bool:
    selector = policy["spec"].get("podSelector", {})
    if selector.get("matchExpressions"):
        return True  # be conservative: treat any expression selector as possibly matching
    return all(pod_labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _resolve_port(port: int | str, named_ports: dict[str, int]) -> int | None:
    if isinstance(port, int):
        return port
    return named_ports.get(port)


def m11_network_policy(objs: list[Obj]) -> list[str]:
    """M11: default deny plus an allow for the backend port only; 11434 reachable from nowhere."""
    problems: list[str] = []
    policies = find(objs, "NetworkPolicy")
    default_deny = [
        p
        for p in policies
        if p["spec"].get("podSelector") in ({}, None)
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not default_deny:
        problems.append("no default-deny NetworkPolicy (empty podSelector, Ingress and Egress)")
    deployment = one(objs, "Deployment", DEPLOYMENT)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    spec = pod_spec(deployment)
    named_ports = {
        p["name"]: int(p["containerPort"])
        for ctr in all_containers(spec)
        for p in ctr.get("ports", [])
        if "name" in p
    }
    allowed: set[int | None] = set()
    for policy in policies:
        if not _selects_backend(policy, pod_labels):
            continue
        for rule in policy["spec"].get("ingress", []) or []:
            ports = rule.get("ports")
            if not ports:
                problems.append(f"NetworkPolicy {policy['metadata']['name']} allows every port")
                continue
            for port in ports:
                if "port" not in port or "endPort" in port:
                    problems.append(f"NetworkPolicy {policy['metadata']['name']}: port range")
                    continue
                allowed.add(_resolve_port(port["port"], named_ports))
    if allowed != {BACKEND_PORT}:
        problems.append(f"ingress allowed to ports {allowed}, expected only {BACKEND_PORT}")
    engine = container(spec, "engine")
    if any(int(p["containerPort"]) == ENGINE_PORT for p in engine.get("ports", [])):
        problems.append("the engine declares containerPort 11434")
    host = env_value(engine, "OLLAMA_HOST") or ""
    if not host.startswith("127.0.0.1:"):
        problems.append(f"the engine binds to {host!r}, not loopback")
    for service in find(objs, "Service"):
        for port in service["spec"].get("ports", []):
            target = _resolve_port(port.get("targetPort", port["port"]), named_ports)
            if target == ENGINE_PORT or port["port"] == ENGINE_PORT:
                problems.append(f"Service {service['metadata']['name']} exposes 11434")
    return problems


def m12_engine_settings(objs: list[Obj]) -> list[str]:
    """M12: OLLAMA_HOST loopback, explicit parallel/queue/keep-alive; HOME and models on volumes."""
    problems: list[str] = []
    spec = pod_spec(one(objs, "Deployment", DEPLOYMENT))
    engine = container(spec, "engine")
    if env_value(engine, "OLLAMA_HOST") != "127.0.0.1:11434":
        problems.append("OLLAMA_HOST is not 127.0.0.1:11434")
    for name in ("OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_QUEUE", "OLLAMA_KEEP_ALIVE"):
        if not env_value(engine, name):
            problems.append(f"{name} is not set explicitly")
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in engine.get("volumeMounts", [])}
    volumes = {v["name"] for v in spec.get("volumes", [])}
    for name in ("HOME", "OLLAMA_MODELS"):
        path = (env_value(engine, name) or "").rstrip("/")
        if not path:
            problems.append(f"{name} is not set")
        elif path not in mounts or mounts[path] not in volumes:
            problems.append(f"{name}={path} is not a volume mount")
    return problems


def _rule_grants(role: Obj) -> set[tuple[str, str, str]]:
    grants: set[tuple[str, str, str]] = set()
    for rule in role.get("rules", []):
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    grants.add((group, resource, verb))
    return grants


# The cockpit's Role, grant by grant (M13), plus two grants the cockpit needs on a real cluster
# (see kustomize/base/cockpit-role.yaml): `create` on services/proxy, because the API server
# authorises a POST through a proxy as `create` (the chat is a POST), and get/list on
# metrics.k8s.io pods for the CPU and memory columns.
COCKPIT_GRANTS = {
    *{("", "pods", verb) for verb in ("get", "list", "watch", "delete")},
    *{("autoscaling", "horizontalpodautoscalers", verb) for verb in ("get", "list", "watch")},
    *{("apps", "deployments", verb) for verb in ("get", "list", "watch")},
    *{("", "events", verb) for verb in ("get", "list", "watch")},
    ("", "pods/eviction", "create"),
    ("", "services/proxy", "get"),
    ("", "pods/proxy", "get"),
    ("", "services/proxy", "create"),
    ("metrics.k8s.io", "pods", "get"),
    ("metrics.k8s.io", "pods", "list"),
}
FORBIDDEN_RESOURCES = {"secrets", "pods/exec", "pods/attach", "pods/portforward"}


def m13_rbac(objs: list[Obj]) -> list[str]:
    """M13: tokenless, unbound backend SA; the cockpit's Role is namespaced and exact."""
    problems: list[str] = []
    backend_sa = one(objs, "ServiceAccount", BACKEND_SA)
    if backend_sa.get("automountServiceAccountToken") is not False:
        problems.append("the backend ServiceAccount automounts its token")
    spec = pod_spec(one(objs, "Deployment", DEPLOYMENT))
    if spec.get("serviceAccountName") != BACKEND_SA:
        problems.append(f"the pod runs as {spec.get('serviceAccountName')!r}")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("the pod spec does not turn off the token mount")
    bindings = find(objs, "RoleBinding") + find(objs, "ClusterRoleBinding")
    for binding in bindings:
        for subject in binding.get("subjects", []):
            if subject.get("kind") == "ServiceAccount" and subject["name"] == BACKEND_SA:
                problems.append(f"{_where(binding)} binds the backend ServiceAccount")
    if find(objs, "ClusterRole") or find(objs, "ClusterRoleBinding"):
        problems.append("cluster-wide RBAC objects are rendered")
    for role in find(objs, "Role"):
        for rule in role.get("rules", []):
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                if "*" in rule.get(key, []):
                    problems.append(f"{_where(role)} has a wildcard in {key}")
            for resource in set(rule.get("resources", [])) & FORBIDDEN_RESOURCES:
                problems.append(f"{_where(role)} grants access to {resource}")
    roles = find(objs, "Role", COCKPIT_ROLE)
    if len(roles) != 1:
        return [*problems, "no cockpit Role"]
    grants = _rule_grants(roles[0])
    if grants != COCKPIT_GRANTS:
        extra = sorted(grants - COCKPIT_GRANTS)
        missing = sorted(COCKPIT_GRANTS - grants)
        problems.append(f"cockpit Role grants extra {extra} and misses {missing}")
    cockpit_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": COCKPIT_ROLE}
    cockpit_bindings = [
        b
        for b in find(objs, "RoleBinding")
        if b["roleRef"] == cockpit_ref
        and any(
            s.get("kind") == "ServiceAccount" and s["name"] == COCKPIT_SA
            for s in b.get("subjects", [])
        )
    ]
    if len(cockpit_bindings) != 1:
        problems.append("the cockpit Role is not bound to the cockpit ServiceAccount exactly once")
    if not find(objs, "ServiceAccount", COCKPIT_SA):
        problems.append("no cockpit ServiceAccount")
    return problems


def images(objs: list[Obj]) -> list[str]:
    """Every container image reference in the rendered objects."""
    return [ctr["image"] for obj in workloads(objs) for ctr in all_containers(pod_spec(obj))]


_TAG = re.compile(r"^(?P<repo>(?:[^/]+/)*[^/:@]+)(?::(?P<tag>[\w][\w.-]*))?(?:@(?P<digest>.+))?$")


def image_tag(image: str) -> str | None:
    """The tag of an image reference (None when it has no tag)."""
    match = _TAG.match(image)
    assert match, f"not an image reference: {image}"
    return match["tag"]


def m14_pinned_images(objs: list[Obj]) -> list[str]:
    """M14 (tag part): every image carries an explicit tag (or digest) and none is `latest`."""
    problems = []
    for image in images(objs):
        tag = image_tag(image)
        if "@" not in image and tag is None:
            problems.append(f"{image} has no tag")
        if tag == "latest":
            problems.append(f"{image} uses latest")
    return problems


def m15_dockerfile_user(dockerfile: str) -> list[str]:
    """M15: the final stage of the Dockerfile switches to a numeric non-root USER."""
    final_stage_users: list[str] = []
    for raw in _dockerfile_instructions(dockerfile):
        keyword, _, rest = raw.partition(" ")
        if keyword.upper() == "FROM":
            final_stage_users = []
        elif keyword.upper() == "USER":
            final_stage_users.append(rest.strip())
    if not final_stage_users:
        return ["the final stage has no USER instruction"]
    user = final_stage_users[-1]
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    if not match:
        return [f"USER {user} is not numeric (uid[:gid])"]
    if int(match[1]) == 0:
        return ["USER is root (uid 0)"]
    return []


def dockerfile_base_images(dockerfile: str) -> list[str]:
    """The images the FROM lines name, with ARG defaults substituted; earlier stages skipped."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    bases: list[str] = []
    for raw in _dockerfile_instructions(dockerfile):
        keyword, _, rest = raw.partition(" ")
        if keyword.upper() == "ARG" and "=" in rest:
            name, _, default = rest.strip().partition("=")
            args.setdefault(name.strip(), default.strip().strip("\"'"))
        elif keyword.upper() == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            if not words:
                bases.append("")
                continue
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), words[0])
            if image.lower() not in stages:
                bases.append(image)
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
    return bases


def m14_dockerfile_pinned_bases(dockerfile: str) -> list[str]:
    """M14 for the image: every base image (ARG defaults resolved) has a tag that is not latest."""
    problems = []
    bases = dockerfile_base_images(dockerfile)
    if not bases:
        problems.append("no FROM instruction")
    for image in bases:
        if not image or "$" in image:
            problems.append(f"FROM {image!r}: not resolvable (an ARG without a default?)")
        elif "@" not in image and image_tag(image) in (None, "latest"):
            problems.append(f"FROM {image}: not pinned to a tag")
    return problems


def _dockerfile_instructions(dockerfile: str) -> list[str]:
    """Instructions with comments dropped and backslash continuations joined."""
    instructions: list[str] = []
    current = ""
    for line in dockerfile.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current:
            instructions.append(current)
        current = ""
    if current:
        instructions.append(current)
    return instructions
