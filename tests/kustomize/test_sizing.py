"""Sizing checked, not guessed (issue 15 item 5; docs/reliability.md, M18): the minikube overlay
at its maximum, plus the rolling update's surge pod, plus Minikube's own pods, fits the node the
README's `minikube start` line makes.

The scheduler places a pod on its effective request (kubernetes.io/docs/concepts/
resource-management/effective-pod-requests-limits/, from KEP-753 sidecar containers): the larger
of the init phase's peak (each regular init container plus the sidecars started before it) and
the running phase (every sidecar plus every regular container). `pod_requests` computes that.
Where each system pod's number comes from is in docs/reliability.md, "Sizing the Minikube node".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pytest
import yaml

from tests.kustomize.manifests import (
    KUSTOMIZE,
    ROOT,
    Obj,
    one,
    pod_requests,
    pod_spec,
    quantity,
    rendered,
)

MI = 2**20
GI = 2**30


@dataclass(frozen=True)
class SystemPod:
    """A pod Minikube runs on the node besides ours, with its effective requests."""

    name: str
    cpu: float
    """Cores."""
    memory: float
    """Bytes."""
    source: str


# `minikube start --cni calico --addons metrics-server` with minikube v1.38.1 (kubeadm
# bootstrapper, Kubernetes v1.35.1 by default). A pod without requests counts zero.
SYSTEM_PODS = (
    SystemPod("kube-apiserver", 0.250, 0, "kubeadm controlplane/manifests.go"),
    SystemPod("kube-controller-manager", 0.200, 0, "kubeadm controlplane/manifests.go"),
    SystemPod("kube-scheduler", 0.100, 0, "kubeadm controlplane/manifests.go"),
    SystemPod("etcd", 0.100, 100 * MI, "kubeadm etcd/local.go"),
    # kubeadm deploys two replicas; minikube scales CoreDNS to one on a single control plane.
    SystemPod("coredns", 0.100, 70 * MI, "kubeadm addons/dns/manifests.go; minikube node/start.go"),
    SystemPod("kube-proxy", 0, 0, "kubeadm addons/proxy/manifests.go"),
    SystemPod("storage-provisioner", 0, 0, "minikube deploy/addons/storage-provisioner"),
    SystemPod("calico-node", 0.250, 0, "minikube pkg/minikube/cni/calico.yaml (Calico v3.31.3)"),
    SystemPod("calico-kube-controllers", 0, 0, "minikube pkg/minikube/cni/calico.yaml"),
    SystemPod("metrics-server", 0.100, 200 * MI, "minikube deploy/addons/metrics-server"),
)


@dataclass(frozen=True)
class Node:
    """What the scheduler may hand out on the Minikube node."""

    cpu: float
    memory: float


def kernel_share(vm_memory: float) -> float:
    """Memory the guest kernel keeps out of MemTotal: 64 MiB plus 1/64 of the VM's memory (its
    page tables, `struct page` alone being 64 bytes per 4 KiB page). Minikube measured 60 MiB
    for a 1800 MB VM (kubernetes/minikube#10037); this gives 92 MiB there."""
    return 64 * MI + vm_memory / 64


def allocatable(cpus: int, memory_gib: int) -> Node:
    """Node allocatable for `minikube start --cpus N --memory Mg` on a VM driver.

    Minikube's kubelet configuration reserves nothing for the system or Kubernetes and sets hard
    eviction thresholds for disk signals only, so (the kubelet not merging its defaults) no
    memory.available threshold is subtracted either: allocatable is the capacity, which is the
    VM's CPUs and its MemTotal. The docker driver differs: the node shows the host's memory
    (kubernetes/minikube#16635), so there the limit is the container's, not the scheduler's.
    """
    memory = memory_gib * GI
    return Node(cpu=float(cpus), memory=memory - kernel_share(memory))


def minikube_section() -> str:
    """The README's 'Running on Minikube' section."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Running on Minikube")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def readme_start_line() -> tuple[int, int]:
    """CPUs and GiB of the `minikube start` line the README tells users to run."""
    match = re.search(r"minikube start --cpus (\d+) --memory (\d+)g", minikube_section())
    assert match, "no `minikube start --cpus N --memory Mg` line in the README's Minikube section"
    return int(match[1]), int(match[2])


def gateway_pod(target: str = "minikube") -> dict[str, float]:
    """The effective requests of one gateway pod of a rendered tree."""
    return pod_requests(pod_spec(one(rendered(target), "Deployment", "llm-backend")))


def peak_gateway_pods(objs: list[Obj]) -> int:
    """The HPA's maximum plus the rollout's surge pod (maxUnavailable is 0: M10)."""
    hpa = one(objs, "HorizontalPodAutoscaler", "llm-backend")
    surge = one(objs, "Deployment", "llm-backend")["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    return int(hpa["spec"]["maxReplicas"]) + int(surge)


def frontend_pods(objs: list[Obj]) -> dict[str, float]:
    """The 2 frontend pods' requests (components/frontend), outside their rollouts."""
    deployment = one(objs, "Deployment", "llm-frontend")
    pod = pod_requests(pod_spec(deployment))
    count = int(deployment["spec"]["replicas"])
    return {"cpu": count * pod["cpu"], "memory": count * pod["memory"]}


def gateway_pods_that_fit(node: Node, pod: dict[str, float]) -> int:
    """How many gateway pods the scheduler places next to Minikube's pods and the frontend's."""
    frontend = frontend_pods(rendered("minikube"))
    cpu_left = node.cpu - sum(p.cpu for p in SYSTEM_PODS) - frontend["cpu"]
    memory_left = node.memory - sum(p.memory for p in SYSTEM_PODS) - frontend["memory"]
    return max(0, math.floor(min(cpu_left / pod["cpu"], memory_left / pod["memory"])))


def frontend_peak(objs: list[Obj]) -> dict[str, float]:
    """The frontend pods' requests at their peak: replicas plus a rollout's surge pod."""
    deployment = one(objs, "Deployment", "llm-frontend")
    surge = int(deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"])
    count = int(deployment["spec"]["replicas"]) + surge
    pod = pod_requests(pod_spec(deployment))
    return {"cpu": count * pod["cpu"], "memory": count * pod["memory"]}


def test_peak_fits_the_readme_start_line() -> None:
    """6 replicas + 1 surge pod, the frontend pods (2 + 1 surge) and Minikube's pods fit the
    README's `minikube start` line."""
    objs = rendered("minikube")
    pods = peak_gateway_pods(objs)
    assert pods == 7
    pod = gateway_pod()
    node = allocatable(*readme_start_line())
    frontend = frontend_peak(objs)
    cpu = pods * pod["cpu"] + sum(p.cpu for p in SYSTEM_PODS) + frontend["cpu"]
    memory = pods * pod["memory"] + sum(p.memory for p in SYSTEM_PODS) + frontend["memory"]
    assert cpu <= node.cpu, f"{cpu:.2f} CPU requested, {node.cpu:.2f} allocatable"
    assert memory <= node.memory, f"{memory / MI:.0f} MiB requested, {node.memory / MI:.0f} MiB"
    assert gateway_pods_that_fit(node, pod) >= pods


def test_the_queue_autoscaler_peak_fits_too() -> None:
    """With components/autoscale-queue, Prometheus and prometheus-adapter (their requests from
    kustomize/monitoring's Helm values) join the node; the same peak still fits."""
    objs = rendered("minikube-queue")
    pods = peak_gateway_pods(objs)
    pod = gateway_pod("minikube-queue")
    monitoring = [
        yaml.safe_load((KUSTOMIZE / "monitoring" / name).read_text())
        for name in ("prometheus-values.yaml", "prometheus-adapter-values.yaml")
    ]
    requests = [
        monitoring[0]["server"]["resources"]["requests"],
        monitoring[1]["resources"]["requests"],
    ]
    node = allocatable(*readme_start_line())
    frontend = frontend_peak(objs)
    cpu = pods * pod["cpu"] + sum(p.cpu for p in SYSTEM_PODS) + frontend["cpu"]
    cpu += sum(quantity(r["cpu"]) for r in requests)
    memory = pods * pod["memory"] + sum(p.memory for p in SYSTEM_PODS) + frontend["memory"]
    memory += sum(quantity(r["memory"]) for r in requests)
    assert cpu <= node.cpu, f"{cpu:.3f} CPU requested, {node.cpu:.2f} allocatable"
    assert memory <= node.memory, f"{memory / MI:.0f} MiB requested, {node.memory / MI:.0f} MiB"


def test_the_overlay_pod_request_is_what_the_docs_say() -> None:
    """docs/reliability.md's arithmetic: 400m and 960 MiB per pod (engine 300m/832Mi as a
    sidecar + backend 100m/128Mi; model-pull's 50m/64Mi runs beside the engine only, 350m/896Mi)."""
    assert gateway_pod() == {"cpu": pytest.approx(0.4), "memory": 960 * MI}


def _ctr(cpu: str, memory: str, sidecar: bool = False) -> Obj:
    ctr: Obj = {"resources": {"requests": {"cpu": cpu, "memory": memory}}}
    if sidecar:
        ctr["restartPolicy"] = "Always"
    return ctr


@pytest.mark.parametrize(
    ("init", "regular", "cpu", "memory"),
    [
        # No init containers: the sum of the regular ones.
        ([], [_ctr("100m", "64Mi"), _ctr("200m", "64Mi")], 0.3, 128),
        # A plain init container larger than the app: its own request wins.
        ([_ctr("1", "1Gi")], [_ctr("100m", "64Mi")], 1.0, 1024),
        # A sidecar runs through both phases: it adds to the app and to later init containers.
        ([_ctr("300m", "832Mi", True), _ctr("50m", "64Mi")], [_ctr("100m", "128Mi")], 0.4, 960),
        # An init container before the sidecar does not run beside it.
        ([_ctr("500m", "512Mi"), _ctr("300m", "256Mi", True)], [_ctr("100m", "64Mi")], 0.5, 512),
        # An init container after the sidecar does: 300m + 400m > 300m + 100m.
        ([_ctr("300m", "256Mi", True), _ctr("400m", "64Mi")], [_ctr("100m", "64Mi")], 0.7, 320),
    ],
)
def test_effective_requests_follow_the_schedulers_rule(
    init: list[Obj], regular: list[Obj], cpu: float, memory: int
) -> None:
    """max(init peak with the sidecars started so far, sidecars + regular containers)."""
    requests = pod_requests({"initContainers": init, "containers": regular})
    assert requests == {"cpu": pytest.approx(cpu), "memory": memory * MI}


def test_kernel_share_is_not_smaller_than_minikube_measured() -> None:
    """kubernetes/minikube#10037: `--memory 1800` left 1740 MiB in `free -m`."""
    assert kernel_share(1800 * 10**6) >= 60 * MI


SMALLER = re.compile(r"`--cpus (\d+) --memory (\d+)g`: (\d+) gateway pods? fits?")


def test_readme_says_what_smaller_machines_hold() -> None:
    """Each smaller `minikube start` the README describes holds the number of pods it says,
    fewer than the peak (so the rest stay Pending)."""
    claims = SMALLER.findall(minikube_section())
    assert claims, "the README's Minikube section describes no smaller machine"
    pod = gateway_pod()
    peak = peak_gateway_pods(rendered("minikube"))
    for cpus, gib, said in claims:
        fits = gateway_pods_that_fit(allocatable(int(cpus), int(gib)), pod)
        assert fits == int(said), f"--cpus {cpus} --memory {gib}g holds {fits}, README says {said}"
        assert fits < peak
