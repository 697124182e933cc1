"""The sandbox's Minikube profile renders an HPA that scales as the minikube overlay's does."""

from __future__ import annotations

from tests.kustomize.manifests import container, one, pod_spec, rendered


def deployment(target: str) -> dict[str, object]:
    """The rendered Deployment of a tree."""
    return one(rendered(target), "Deployment", "llm-backend")


def _hpa_spec(target: str) -> dict[str, object]:
    return one(rendered(target), "HorizontalPodAutoscaler", "llm-backend")["spec"]


def test_sandbox_minikube_hpa_behaves_as_the_minikube_overlay() -> None:
    """Behaviour, bounds and metrics equal the minikube overlay's, so the profile's scaling
    takes as long as Minikube's (the 300 s window, one pod a minute)."""
    profile, minikube = _hpa_spec("sandbox-minikube"), _hpa_spec("minikube")
    for field in ("behavior", "minReplicas", "maxReplicas", "metrics"):
        assert profile[field] == minikube[field], field


def test_demo_profile_stays_quick() -> None:
    """The demo's sandbox overlay keeps its short scale-down, unlike the minikube profile."""
    down = _hpa_spec("sandbox")["behavior"]["scaleDown"]  # type: ignore[index]
    assert down["stabilizationWindowSeconds"] < 300


def test_sandbox_minikube_pulls_images_as_the_minikube_overlay() -> None:
    """The image pull policies the profile's start costs follow are the minikube overlay's."""
    for name in ("engine", "model-pull", "backend"):
        assert container(pod_spec(deployment("sandbox-minikube")), name).get(
            "imagePullPolicy"
        ) == container(pod_spec(deployment("minikube")), name).get("imagePullPolicy"), name
