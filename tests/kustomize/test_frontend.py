"""M20: the frontend pods (components/frontend, in the minikube and sandbox overlays).

`kube-llm web` as 2 replicas: read-only, the backend's image, the cockpit's ServiceAccount and
nothing more, the backend reached by its Service's DNS name, a ClusterIP Service, a PDB that lets
one go, probes on the server's own endpoints, and a NetworkPolicy that lets browsers in on the
web port and lets out only the backend pods' port, the API server's ports and DNS. M2-M4 and
checkov cover it as every workload; this is what is particular to it. The rule also runs on
broken copies.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from tests.kustomize.manifests import OVERLAYS, Obj, container, find, one, pod_spec, rendered
from tests.kustomize.rules import COCKPIT_SA

FRONTEND = "llm-frontend"
WEB_PORT = 8080
BACKEND_POD_PORT = 8000
API_SERVER_PORTS = {443, 6443, 8443}
DNS_PORT = 53


def _flag(args: list[str], name: str) -> str | None:
    if name in args and args.index(name) + 1 < len(args):
        return args[args.index(name) + 1]
    return None


def _frontend_command(problems: list[str], ctr: Obj) -> None:
    argv = [*ctr.get("command", []), *ctr.get("args", [])]
    if argv[:4] != ["python", "-m", "tui", "web"]:
        problems.append(f"the frontend runs {argv[:4]}, not `python -m tui web`")
    if "--allow-chaos" in argv:
        problems.append("the frontend allows chaos keys (it must start read-only)")
    if _flag(argv, "--host") != "0.0.0.0":
        problems.append("the frontend does not listen beyond loopback (--host 0.0.0.0)")
    if _flag(argv, "--port") != str(WEB_PORT):
        problems.append(f"the frontend does not listen on {WEB_PORT}")
    backend_url = _flag(argv, "--backend-url") or ""
    host = urlsplit(backend_url).hostname or ""
    if not (host.startswith("llm-backend.") and host.endswith(".svc")):
        problems.append(f"--backend-url {backend_url!r} is not the backend Service's DNS name")


def _frontend_pod(problems: list[str], objs: list[Obj], deployment: Obj) -> None:
    if deployment["spec"].get("replicas") != 2:
        problems.append("the frontend does not run 2 replicas")
    spec = pod_spec(deployment)
    if spec.get("serviceAccountName") != COCKPIT_SA:
        problems.append(f"the frontend runs as {spec.get('serviceAccountName')!r}")
    if spec.get("automountServiceAccountToken") is not True:
        problems.append("the frontend pod gets no ServiceAccount token")
    ctr = container(spec, "frontend")
    backend = container(pod_spec(one(objs, "Deployment", "llm-backend")), "backend")
    if ctr.get("image") != backend.get("image"):
        problems.append(f"the frontend's image {ctr.get('image')} is not the backend's")
    _frontend_command(problems, ctr)
    ports = {p.get("name"): p.get("containerPort") for p in ctr.get("ports", [])}
    if ports != {"web": WEB_PORT}:
        problems.append(f"the frontend's ports are {ports}")
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        got = (ctr.get(probe) or {}).get("httpGet") or {}
        if (got.get("path"), got.get("port")) != (path, "web"):
            problems.append(f"the frontend's {probe} is not GET {path} on port web")


def _frontend_service_and_pdb(problems: list[str], objs: list[Obj], deployment: Obj) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    services = find(objs, "Service", FRONTEND)
    if len(services) != 1:
        problems.append("no Service llm-frontend")
    else:
        spec = services[0]["spec"]
        if spec.get("type", "ClusterIP") != "ClusterIP" or spec.get("selector") != selector:
            problems.append("the frontend Service is not a ClusterIP on the frontend's pods")
        if [p.get("targetPort") for p in spec.get("ports", [])] != ["web"]:
            problems.append("the frontend Service does not target the web port")
    pdbs = find(objs, "PodDisruptionBudget", FRONTEND)
    if len(pdbs) != 1:
        problems.append("no PodDisruptionBudget llm-frontend")
        return
    pdb = pdbs[0]["spec"]
    match = pdb.get("selector", {}).get("matchLabels", {})
    if match != selector or any(labels.get(k) != v for k, v in match.items()):
        problems.append(f"the frontend PDB selects {match}")
    if not isinstance(pdb.get("minAvailable"), int) or pdb["minAvailable"] > 1:
        problems.append("the frontend PDB does not let one of the 2 pods go")
    if pdb.get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
        problems.append("the frontend PDB keeps unhealthy pods")


def _ports(rule: Obj) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", [])}


def _frontend_network_policy(problems: list[str], objs: list[Obj], deployment: Obj) -> None:
    selector = deployment["spec"]["selector"]["matchLabels"]
    policies = [
        p
        for p in find(objs, "NetworkPolicy")
        if p["spec"].get("podSelector", {}).get("matchLabels") == selector
    ]
    if len(policies) != 1:
        problems.append(f"{len(policies)} NetworkPolicies select the frontend, not 1")
        return
    spec = policies[0]["spec"]
    if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"]:
        problems.append("the frontend NetworkPolicy does not govern both directions")
    ingress = spec.get("ingress", [])
    if [_ports(rule) for rule in ingress] != [{("TCP", WEB_PORT)}]:
        problems.append(f"the frontend lets in {[_ports(r) for r in ingress]}")
    backend_pods = {"app.kubernetes.io/name": "llm-backend"}
    allowed = {
        frozenset({("TCP", BACKEND_POD_PORT)}),
        frozenset({("TCP", port) for port in API_SERVER_PORTS}),
        frozenset({("UDP", DNS_PORT), ("TCP", DNS_PORT)}),
    }
    seen = set()
    for rule in spec.get("egress", []):
        ports = frozenset(_ports(rule))
        if ports not in allowed:
            problems.append(f"the frontend may send to ports {sorted(ports)}")
        if ports == {("TCP", BACKEND_POD_PORT)}:
            peers = [peer.get("podSelector", {}).get("matchLabels") for peer in rule.get("to", [])]
            if peers != [backend_pods]:
                problems.append(f"the frontend reaches port 8000 on {peers}, not the backend's")
        seen.add(ports)
    if seen != allowed:
        problems.append("the frontend cannot reach the backend, the API server and DNS")


def m20_frontend(objs: list[Obj]) -> list[str]:
    """M20: the frontend pods as docs/reliability.md says."""
    deployments = find(objs, "Deployment", FRONTEND)
    if len(deployments) != 1:
        return ["no Deployment llm-frontend"]
    problems: list[str] = []
    _frontend_pod(problems, objs, deployments[0])
    _frontend_service_and_pdb(problems, objs, deployments[0])
    _frontend_network_policy(problems, objs, deployments[0])
    return problems


@pytest.mark.parametrize("target", OVERLAYS)
def test_m20_frontend(target: str) -> None:
    """Every overlay runs the frontend pods, as M20 says."""
    assert m20_frontend(rendered(target)) == []


def _frontend_spec(objs: list[Obj]) -> Obj:
    return pod_spec(one(objs, "Deployment", FRONTEND))


def _frontend_args(objs: list[Obj]) -> list[str]:
    args: list[str] = container(_frontend_spec(objs), "frontend")["args"]
    return args


def _chaos_allowed(objs: list[Obj]) -> None:
    _frontend_args(objs).append("--allow-chaos")


def _through_the_api_server(objs: list[Obj]) -> None:
    args = _frontend_args(objs)
    del args[args.index("--backend-url") : args.index("--backend-url") + 2]


def _own_image(objs: list[Obj]) -> None:
    container(_frontend_spec(objs), "frontend")["image"] = "kube-llm-frontend:dev"


def _admin_account(objs: list[Obj]) -> None:
    _frontend_spec(objs)["serviceAccountName"] = "default"


def _one_replica(objs: list[Obj]) -> None:
    one(objs, "Deployment", FRONTEND)["spec"]["replicas"] = 1


def _pdb_blocks(objs: list[Obj]) -> None:
    one(objs, "PodDisruptionBudget", FRONTEND)["spec"]["minAvailable"] = 2


def _egress_anywhere(objs: list[Obj]) -> None:
    one(objs, "NetworkPolicy", FRONTEND)["spec"]["egress"].append({})


def _ingress_on_every_port(objs: list[Obj]) -> None:
    one(objs, "NetworkPolicy", FRONTEND)["spec"]["ingress"] = [{}]


def _readiness_on_healthz(objs: list[Obj]) -> None:
    probe = container(_frontend_spec(objs), "frontend")["readinessProbe"]
    probe["httpGet"]["path"] = "/healthz"


BREAKAGES: list[tuple[str, Callable[[list[Obj]], None]]] = [
    ("chaos", _chaos_allowed),
    ("api-proxy", _through_the_api_server),
    ("own-image", _own_image),
    ("account", _admin_account),
    ("replicas", _one_replica),
    ("pdb", _pdb_blocks),
    ("egress", _egress_anywhere),
    ("ingress", _ingress_on_every_port),
    ("readiness", _readiness_on_healthz),
]


@pytest.mark.parametrize(
    "breakage", [pytest.param(breakage, id=name) for name, breakage in BREAKAGES]
)
def test_m20_catches_broken_copy(breakage: Callable[[list[Obj]], None]) -> None:
    """M20 passes on the minikube render and fails on a copy broken on purpose."""
    objs = rendered("minikube")
    assert m20_frontend(objs) == []
    breakage(objs)
    assert m20_frontend(objs) != []
