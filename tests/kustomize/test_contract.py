"""The manifest contract shared with the backend and the sandbox (notes/COMMON.md), and what
each overlay promises on top of the base (issue 3)."""

from __future__ import annotations

import pytest

from tests.kustomize.manifests import (
    OVERLAYS,
    TARGETS,
    Obj,
    backend_config,
    container,
    find,
    one,
    pod_spec,
    quantity,
    rendered,
)

SELECTOR = {"app.kubernetes.io/name": "llm-backend"}
MODEL = {
    "base": "tinyllama",
    "minikube": "tinyllama",
    "sandbox": "smollm2:135m",
    "minikube-queue": "tinyllama",
    "sandbox-queue": "smollm2:135m",
    "sandbox-minikube": "smollm2:135m",
}
MI = 2**20


def deployment(objs: list[Obj]) -> Obj:
    """The gateway Deployment."""
    return one(objs, "Deployment", "llm-backend")


@pytest.mark.parametrize("target", TARGETS)
def test_deployment_contract(target: str) -> None:
    """Names, order and wiring the sandbox and the backend rely on."""
    objs = rendered(target)
    dep = deployment(objs)
    assert dep["spec"]["selector"] == {"matchLabels": SELECTOR}
    spec = pod_spec(dep)
    assert [c["name"] for c in spec["initContainers"]] == ["engine", "model-pull"]
    assert [c["name"] for c in spec["containers"]] == ["backend"]

    engine = container(spec, "engine")
    assert engine["restartPolicy"] == "Always"
    assert "exec" in engine["startupProbe"]

    pull = container(spec, "model-pull")
    assert "restartPolicy" not in pull
    assert "$(MODEL)" in pull["command"] + pull["args"]

    backend = container(spec, "backend")
    assert backend["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    for kind in ("startupProbe", "livenessProbe"):
        assert backend[kind]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert backend["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    pod_name = next(v for v in backend["env"] if v["name"] == "POD_NAME")
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


@pytest.mark.parametrize("target", TARGETS)
def test_generated_config(target: str) -> None:
    """Backend settings come from the generated, hash-suffixed llm-backend-config."""
    objs = rendered(target)
    dep = deployment(objs)
    backend = container(pod_spec(dep), "backend")
    [source] = backend["envFrom"]
    name = source["configMapRef"]["name"]
    # The hash suffix makes a settings change roll the pods.
    assert name.startswith("llm-backend-config-")
    assert len(name) > len("llm-backend-config-")
    config = backend_config(objs, dep)
    assert config["MODEL"] == MODEL[target]
    assert config["ENGINE_URL"] == "http://127.0.0.1:11434"
    assert config["PORT"] == "8000"
    # Ready only once the engine has the model in memory (Ollama loads it on its first chat).
    assert config["WARMUP"] == "true"
    model_ref = next(
        v for v in container(pod_spec(dep), "model-pull")["env"] if v["name"] == "MODEL"
    )
    assert model_ref["valueFrom"]["configMapKeyRef"] == {"name": name, "key": "MODEL"}
    assert len(find(objs, "ConfigMap")) == 1


@pytest.mark.parametrize("target", TARGETS)
def test_service_contract(target: str) -> None:
    """Service llm-backend: ClusterIP, port 80 named http to the named container port."""
    service = one(rendered(target), "Service", "llm-backend")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == SELECTOR
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]


def test_selectors_hold_only_the_identity_label() -> None:
    """docs/design.md: `labels:` reaches metadata and templates, never a selector."""
    objs = rendered("minikube")
    dep = deployment(objs)
    assert dep["spec"]["selector"]["matchLabels"] == SELECTOR
    assert dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kube-llm"
    assert one(objs, "Service", "llm-backend")["spec"]["selector"] == SELECTOR


@pytest.mark.parametrize("target", OVERLAYS)
def test_overlay_images(target: str) -> None:
    """Both overlays run the same released Ollama and the locally built backend image."""
    spec = pod_spec(deployment(rendered(target)))
    engine_image = container(spec, "engine")["image"]
    assert engine_image.startswith("ollama/ollama:0.")
    assert container(spec, "model-pull")["image"] == engine_image
    assert container(spec, "backend")["image"] == "kube-llm-backend:dev"


def test_minikube_uses_the_image_built_into_minikube() -> None:
    """`minikube image build` puts the backend image in the node; it is never pulled."""
    spec = pod_spec(deployment(rendered("minikube")))
    assert container(spec, "backend")["imagePullPolicy"] == "Never"


def test_minikube_namespace_enforces_restricted_pod_security() -> None:
    """The Namespace makes the API server itself refuse pods that break M2."""
    namespace = one(rendered("minikube"), "Namespace", "kube-llm")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_minikube_keeps_models_on_a_claim() -> None:
    """The models-pvc component swaps the models emptyDir for a PersistentVolumeClaim."""
    objs = rendered("minikube")
    claim = one(objs, "PersistentVolumeClaim", "llm-models")
    models = next(v for v in pod_spec(deployment(objs))["volumes"] if v["name"] == "models")
    assert models == {"name": "models", "persistentVolumeClaim": {"claimName": "llm-models"}}
    assert quantity(claim["spec"]["resources"]["requests"]["storage"]) >= 2 * 2**30


def test_minikube_scale_down_is_slow() -> None:
    """As on the poster: 300 s of quiet before a pod goes."""
    hpa = one(rendered("minikube"), "HorizontalPodAutoscaler", "llm-backend")
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_sandbox_requests_let_psutil_load_move_the_hpa() -> None:
    """The sandbox measures processes against requests: small requests, roomy memory limit."""
    objs = rendered("sandbox")
    spec = pod_spec(deployment(objs))
    engine = container(spec, "engine")["resources"]
    backend = container(spec, "backend")["resources"]
    # One busy llama.cpp thread (1 CPU) must read well above the 70 % CPU target.
    assert quantity(engine["requests"]["cpu"]) <= 0.25
    # A python backend at rest (60-80 MB) stays under the 80 % memory target, and the limit
    # leaves room for a real memory climb to be measured rather than OOM-killed.
    assert 100 * MI <= quantity(backend["requests"]["memory"]) <= 160 * MI
    assert quantity(backend["limits"]["memory"]) >= 4 * quantity(backend["requests"]["memory"])


def test_sandbox_demo_timings_are_short() -> None:
    """A demo sees the pods go back to 2 within a minute, and pods come up within seconds."""
    objs = rendered("sandbox")
    hpa = one(objs, "HorizontalPodAutoscaler", "llm-backend")
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] <= 60
    backend = container(pod_spec(deployment(objs)), "backend")
    assert backend["startupProbe"]["periodSeconds"] <= 2
    assert backend["readinessProbe"]["periodSeconds"] <= 2


def test_overlays_pin_the_same_engine_release() -> None:
    """One Ollama release for every overlay, so the sandbox and Minikube behave alike."""
    tags = {
        container(pod_spec(deployment(rendered(target))), "engine")["image"] for target in OVERLAYS
    }
    assert len(tags) == 1, tags
