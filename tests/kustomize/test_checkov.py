"""M14 (checkov passes on every rendered tree, apart from the skip list below) and M15 (the
backend Dockerfile: checkov's Dockerfile checks and a numeric non-root USER).

checkov lives in a virtual environment of its own (its pins drag the project's dependencies
back years), made by `make checkov`; `make test` passes its path in KUBE_LLM_CHECKOV.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kustomize import rules
from tests.kustomize.manifests import ROOT, TARGETS, Obj, container, one, pod_spec, rendered

DOCKERFILE = ROOT / "backend" / "Dockerfile"

# Skipped checkov checks, each with the reason it does not apply here.
SKIP_ALWAYS: dict[str, str] = {
    # CPU limits: deliberately absent. A CFS quota throttles inference mid-token and inflates
    # latency; the HPA scales on CPU against the request, and M4 asks for memory limits only.
    "CKV_K8S_11": "no CPU limits on purpose (throttling; HPA scales on requests)",
    # Digests: images are pinned to released tags (M14 forbids `latest`); the backend image
    # is built into Minikube by `minikube image build` and has no registry digest.
    "CKV_K8S_43": "tags pinned; the locally built backend image has no registry digest",
    # Pull policy Always: the minikube backend image exists only in the node's runtime
    # (imagePullPolicy Never), and a pinned Ollama tag needs no re-pull (IfNotPresent).
    "CKV_K8S_15": "local image (Never) and a pinned tag (IfNotPresent)",
    # Docker HEALTHCHECK: Kubernetes ignores it; the kubelet's startup, readiness and liveness
    # probes (deployment.yaml) do this job.
    "CKV_DOCKER_2": "Kubernetes ignores HEALTHCHECK; the pod has kubelet probes",
    # Base image tag: checkov does not resolve `FROM ${PYTHON_IMAGE}` through the ARG default,
    # so it cannot see the tag; test_m14_dockerfile_base_images_are_pinned checks it instead.
    "CKV_DOCKER_7": "checkov cannot resolve FROM ${ARG}; our own test checks the ARG default",
}
# The base is not deployed on its own: it has no namespace and no image tags by design
# (docs/design.md, Conventions); every overlay sets both, and the overlays are checked without
# these skips.
SKIP_BASE_ONLY: dict[str, str] = {
    "CKV_K8S_21": "the base carries no namespace; overlays set kube-llm",
    "CKV_K8S_14": "the base carries no image tag; overlays pin tags with `images:`",
}


def checkov_bin() -> Path:
    """checkov from its own environment; a clear failure (never a skip) when it is missing."""
    value = os.environ.get("KUBE_LLM_CHECKOV")
    if not value:
        pytest.fail(
            "KUBE_LLM_CHECKOV is not set: run the suite with `make test` (or `make pytest`), "
            "which builds checkov's own virtual environment (.checkov-venv) and passes its path"
        )
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"KUBE_LLM_CHECKOV={value} does not exist: run `make checkov`")
    return path


@dataclass(frozen=True)
class Checked:
    """checkov's results for one file of a run."""

    failed: tuple[str, ...]
    """The failed checks as `CHECK_ID resource` strings."""
    passed: tuple[str, ...]
    """The ids of the checks that passed, one per resource checked."""

    def without(self, checks: Collection[str]) -> Checked:
        """The results as if checkov had skipped these checks (`--skip-check`) for this file."""
        return Checked(
            tuple(f for f in self.failed if f.split()[0] not in checks),
            tuple(p for p in self.passed if p not in checks),
        )


def run_checkov(files: dict[str, Path], skips: dict[str, str]) -> dict[str, Checked]:
    """Run checkov once, offline, on several files; each file's results under its name.

    One run for every file because each checkov start loads all its policies (about ten
    seconds); its results carry each file's absolute path, so they split back per file.
    """
    command = [str(checkov_bin())]
    for file in files.values():
        command += ["--file", str(file)]
    command += [
        "--framework", "kubernetes", "dockerfile",
        "--output", "json",
        "--compact",
        # Offline: no policy download from Prisma Cloud.
        "--skip-download",
    ]  # fmt: skip
    if skips:
        command += ["--skip-check", ",".join(sorted(skips))]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_NO_OUTPUT_COLOR": "true"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert result.returncode in (0, 1), result.stderr
    output = json.loads(result.stdout)
    reports: list[dict[str, Any]] = output if isinstance(output, list) else [output]
    failed: dict[Path, list[str]] = {}
    passed: dict[Path, list[str]] = {}
    for report in reports:
        for check in report["results"]["failed_checks"]:
            where = Path(check["file_abs_path"])
            failed.setdefault(where, []).append(f"{check['check_id']} {check['resource']}")
        for check in report["results"]["passed_checks"]:
            passed.setdefault(Path(check["file_abs_path"]), []).append(check["check_id"])
    return {
        name: Checked(tuple(failed.get(file.resolve(), ())), tuple(passed.get(file.resolve(), ())))
        for name, file in files.items()
    }


def write_manifest(path: Path, objs: list[Obj]) -> Path:
    """Write rendered objects as one YAML stream."""
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return path


def broken_manifest() -> list[Obj]:
    """The sandbox render made privileged, on the host network, with no memory limit."""
    objs = rendered("sandbox")
    spec = pod_spec(one(objs, "Deployment", "llm-backend"))
    spec["hostNetwork"] = True
    backend = container(spec, "backend")
    backend["securityContext"]["privileged"] = True
    del backend["resources"]["limits"]
    return objs


ROOT_DOCKERFILE = "FROM python:3.12-slim\nCOPY . /app\nUSER root\n"
"""An image that ends as root: checkov's Dockerfile checks must fail it."""


@pytest.fixture(scope="module")
def checkov(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Checked]:
    """checkov's results, from a single run, for every render, the broken manifest, the
    backend Dockerfile and a root one: keyed by target name, `broken`, `Dockerfile` and
    `root Dockerfile`. Every file is checked with SKIP_ALWAYS; the base's test takes its
    own skips off its results."""
    folder = tmp_path_factory.mktemp("checkov")
    files = {
        target: write_manifest(folder / f"{target}.yaml", rendered(target)) for target in TARGETS
    }
    files["broken"] = write_manifest(folder / "broken.yaml", broken_manifest())
    (folder / "root").mkdir()
    files["root Dockerfile"] = folder / "root" / "Dockerfile"
    files["root Dockerfile"].write_text(ROOT_DOCKERFILE)
    if DOCKERFILE.is_file():  # its test fails with words of its own when it is missing
        files["Dockerfile"] = DOCKERFILE
    return run_checkov(files, SKIP_ALWAYS)


@pytest.mark.slow(reason="starts checkov, which loads all its policies")
@pytest.mark.parametrize("target", TARGETS)
def test_m14_checkov_passes_on_rendered_manifests(target: str, checkov: dict[str, Checked]) -> None:
    """M14: checkov's Kubernetes checks pass on every render, apart from the skip list."""
    checked = checkov[target].without(SKIP_BASE_ONLY if target == "base" else {})
    assert checked.failed == (), f"checkov fails the {target} render: {checked.failed}"
    # It really ran its checks on our objects.
    assert len(checked.passed) >= 50, f"checkov passed only {len(checked.passed)} on {target}"


@pytest.mark.slow(reason="starts checkov, which loads all its policies")
def test_checkov_catches_a_broken_manifest(checkov: dict[str, Checked]) -> None:
    """checkov with the same skip list still fails a privileged, host-network, unbounded pod."""
    failed = {check.split()[0] for check in checkov["broken"].failed}
    assert {"CKV_K8S_16", "CKV_K8S_19", "CKV_K8S_13"} <= failed


def backend_dockerfile() -> str:
    """backend/Dockerfile (the backend issue writes it); a clear failure while it is missing."""
    if not DOCKERFILE.is_file():
        pytest.fail(f"{DOCKERFILE.relative_to(ROOT)} is missing (the backend issue writes it)")
    return DOCKERFILE.read_text()


@pytest.mark.slow(reason="starts checkov, which loads all its policies")
def test_m15_checkov_dockerfile_checks(checkov: dict[str, Checked]) -> None:
    """M14/M15: checkov's Dockerfile checks pass on backend/Dockerfile."""
    backend_dockerfile()
    checked = checkov["Dockerfile"]
    assert checked.failed == ()
    assert len(checked.passed) >= 5


@pytest.mark.slow(reason="starts checkov, which loads all its policies")
def test_checkov_catches_a_root_dockerfile(checkov: dict[str, Checked]) -> None:
    """checkov's Dockerfile checks fail an image that ends as root."""
    assert "CKV_DOCKER_8" in {check.split()[0] for check in checkov["root Dockerfile"].failed}


def test_m15_dockerfile_has_numeric_non_root_user() -> None:
    """M15: the final stage of backend/Dockerfile runs as a numeric non-root uid."""
    assert rules.m15_dockerfile_user(backend_dockerfile()) == []


@pytest.mark.parametrize(
    ("dockerfile", "ok"),
    [
        ("FROM python:3.12-slim\nUSER 10001\n", True),
        ('FROM python:3.12-slim\nUSER 10001:10001\nCMD ["python"]\n', True),
        ("FROM python:3.12-slim AS build\nUSER 0\nFROM python:3.12-slim\nUSER 10001\n", True),
        ("FROM python:3.12-slim\n", False),
        ("FROM python:3.12-slim\nUSER app\n", False),
        ("FROM python:3.12-slim\nUSER 0\n", False),
        ("FROM python:3.12-slim\nUSER 0:0\n", False),
        ("FROM python:3.12-slim\n# USER 10001\n", False),
        ("FROM python:3.12-slim AS build\nUSER 10001\nFROM python:3.12-slim\n", False),
    ],
)
def test_m15_rule_on_sample_dockerfiles(dockerfile: str, ok: bool) -> None:
    """The M15 rule accepts numeric non-root users in the final stage only."""
    assert (rules.m15_dockerfile_user(dockerfile) == []) is ok


def test_m14_dockerfile_base_images_are_pinned() -> None:
    """M14: every base image of backend/Dockerfile (ARG defaults resolved) has a non-latest tag."""
    assert rules.m14_dockerfile_pinned_bases(backend_dockerfile()) == []


@pytest.mark.parametrize(
    ("dockerfile", "ok"),
    [
        ("ARG PYTHON_IMAGE=python:3.11-slim-bookworm\nFROM ${PYTHON_IMAGE}\n", True),
        ("FROM python:3.12-slim AS build\nFROM build\n", True),
        ("FROM --platform=linux/amd64 python:3.12-slim\n", True),
        ("FROM python\n", False),
        ("FROM python:latest\n", False),
        ("ARG PYTHON_IMAGE=python:latest\nFROM $PYTHON_IMAGE\n", False),
        ("ARG PYTHON_IMAGE\nFROM ${PYTHON_IMAGE}\n", False),
    ],
)
def test_m14_base_image_rule_on_sample_dockerfiles(dockerfile: str, ok: bool) -> None:
    """The base-image rule resolves ARG defaults and refuses untagged or `latest` bases."""
    assert (rules.m14_dockerfile_pinned_bases(dockerfile) == []) is ok
