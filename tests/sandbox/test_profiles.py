"""The sandbox's profiles: `--profile minikube` has Minikube's timings and start costs.

The flags are checked as `python -m sandbox` parses them; the start costs on running sandboxes
with the fake engine: a pod shows `Init:1/2` while `model-pull` fetches a missing model, later
pods find it on the (shared) models volume, and with the registry unreachable a missing model
fails the init container as `ollama pull` does (`kustomize/base/deployment.yaml`'s command; the
same cases as tests/kustomize/test_model_pull.py, which runs that command for real).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox.__main__ import parse_args
from sandbox.cluster import PROFILES
from sandbox.kubelet.containers import StartCosts
from tests.sandbox.harness import (
    NAMESPACE,
    ROOT,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)


def test_the_demo_profile_is_what_the_sandbox_always_was() -> None:
    options = parse_args([])
    assert options.profile == "demo"
    assert options.overlay.name == "sandbox"
    assert options.hpa_sync_seconds == 15
    assert options.resolved_metrics_resolution == 5
    assert options.start_costs == StartCosts()
    assert not options.start_costs.simulated


def test_the_minikube_profile_has_minikubes_timings() -> None:
    options = parse_args(["--profile", "minikube"])
    assert options.overlay.name == "sandbox-minikube"
    assert options.hpa_sync_seconds == 15  # kube-controller-manager's default
    assert options.resolved_metrics_resolution == 60  # Minikube's metrics-server addon
    costs = options.start_costs
    assert costs.image_pull_seconds > 0
    assert costs.model_pull_seconds > 0
    assert not costs.model_on_volume
    assert not costs.registry_unreachable
    assert options.overlay.exists()


def test_flags_override_the_profile() -> None:
    options = parse_args(
        [
            "--profile", "minikube", "--hpa-sync-seconds", "2",
            "--metrics-resolution-seconds", "7", "--image-pull-seconds", "0",
            "--model-pull-seconds", "1.5", "--model-on-volume", "--registry-unreachable",
            "--overlay", "kustomize/overlays/sandbox",
        ]
    )  # fmt: skip
    assert options.profile == "minikube"
    assert options.hpa_sync_seconds == 2
    assert options.resolved_metrics_resolution == 7
    assert options.start_costs == StartCosts(0.0, 1.5, True, True)
    assert options.overlay.name == "sandbox"
    assert set(PROFILES) == {"demo", "minikube"}


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--metrics-resolution-seconds", "0", "must be positive"),
        ("--hpa-sync-seconds", "-1", "must be positive"),
        ("--model-pull-seconds", "-2", "between 0 and 3600"),
        ("--image-pull-seconds", "99999", "between 0 and 3600"),
        ("--profile", "kind", "invalid choice"),
    ],
)
def test_bad_profile_flags_say_so(flag: str, value: str, words: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", flag, value],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr


# -- running sandboxes --------------------------------------------------------------------------


def _statuses(sandbox: RunningSandbox) -> dict[str, str]:
    """Pod -> STATUS, as `kubectl get pods` prints it."""
    result = sandbox.kubectl("get", "pods", "-n", NAMESPACE, "--no-headers")
    return {line.split()[0]: line.split()[2] for line in result.stdout.splitlines() if line}


def _events(sandbox: RunningSandbox, pod: str | None) -> list[dict[str, Any]]:
    """The events of one pod (None: of the namespace)."""
    selector = [] if pod is None else ["--field-selector", f"involvedObject.name={pod}"]
    result = sandbox.kubectl("get", "events", "-n", NAMESPACE, "-o", "json", *selector)
    items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return items


def _pull_log(sandbox: RunningSandbox, pod: str) -> str:
    result = sandbox.kubectl("logs", "-n", NAMESPACE, pod, "-c", "model-pull")
    return result.stdout + result.stderr


@pytest.mark.slow(reason="a sandbox on the Minikube profile, with its image and model pull costs")
def test_minikube_profile_pulls_the_model_once_and_shows_init_1_of_2(tmp_path: Path) -> None:
    sandbox = start_sandbox(
        tmp_path,
        "--profile", "minikube", "--image-pull-seconds", "1", "--model-pull-seconds", "6",
        "--metrics-resolution-seconds", "3",
        engine_cmd=fake_engine_cmd(),
        ready_pods=0,
    )  # fmt: skip
    try:
        # The engine's image, then the engine starts, then model-pull fetches the model.
        pulling = wait_for(
            lambda: [p for p, s in _statuses(sandbox).items() if s == "Init:1/2"],
            60,
            "a pod in Init:1/2 while its model is pulled",
        )
        first = pulling[0]
        wait_for(lambda: first in sandbox.ready_pods(), 90, f"{first} Ready after its pull")
        log = _pull_log(sandbox, first)
        assert "smollm2:135m is not on the models volume; pulling it" in log
        assert "success" in log
        # One pull of the engine's image on the node; every other start finds it there.
        pulls = [e["message"] for e in _events(sandbox, None) if e["reason"] == "Pulling"]
        assert pulls == ['Pulling image "ollama/ollama:0.21.2"'], pulls
        # A replacement finds the model on the shared volume and the images on the node. (The
        # other first pod may have pulled too, if it started before the model landed: only a
        # pod created after the deletion is a replacement.)
        originals = {p["metadata"]["name"] for p in sandbox.pods()}
        assert sandbox.kubectl("delete", "pod", "-n", NAMESPACE, first).returncode == 0

        def replacement() -> str | None:
            ready = [p for p in sandbox.ready_pods() if p not in originals]
            return ready[0] if ready else None

        fresh = wait_for(replacement, 90, "a Ready replacement")
        assert "already on the models volume; not pulling" in _pull_log(sandbox, fresh)
        messages = [e["message"] for e in _events(sandbox, fresh) if e["reason"] == "Pulled"]
        assert messages
        assert all("already present on machine" in m for m in messages), messages
        assert not [e for e in _events(sandbox, fresh) if e["reason"] == "Pulling"]
    finally:
        assert sandbox.stop() == 0


@pytest.mark.slow(reason="a sandbox on the Minikube profile, with its image and model pull costs")
def test_registry_unreachable_fails_a_missing_model_and_starts_a_present_one(
    tmp_path: Path,
) -> None:
    missing = start_sandbox(
        tmp_path / "missing",
        "--profile", "minikube", "--image-pull-seconds", "0", "--registry-unreachable",
        engine_cmd=fake_engine_cmd(),
        ready_pods=0,
    )  # fmt: skip
    try:
        failing = wait_for(
            lambda: [
                p
                for p, s in _statuses(missing).items()
                if s in ("Init:Error", "Init:CrashLoopBackOff")
            ],
            60,
            "model-pull failing with the registry unreachable",
        )
        log = _pull_log(missing, failing[0])
        assert "Error: pull model manifest" in log
        assert "lookup registry.ollama.ai: no such host" in log
        assert not missing.ready_pods()
    finally:
        assert missing.stop() == 0
    present = start_sandbox(
        tmp_path / "present",
        "--profile", "minikube", "--image-pull-seconds", "0", "--registry-unreachable",
        "--model-on-volume",
        engine_cmd=fake_engine_cmd(),
    )  # fmt: skip
    try:
        pod = present.ready_pods()[0]
        assert "already on the models volume; not pulling" in _pull_log(present, pod)
    finally:
        assert present.stop() == 0


def test_kube_llm_demo_profiles_are_the_sandboxs() -> None:
    """`kube-llm demo --profile NAME` starts the sandbox with that profile (the demo's own HPA
    sync of 5 s only on the quick one), and the cockpit's status line is told which."""
    from tui.cli.cockpit import DEMO_SANDBOX_ARGS, PROFILE_SANDBOX_ARGS
    from tui.cli.main import SANDBOX_PROFILES, build_parser, settings_from

    assert set(SANDBOX_PROFILES) == set(PROFILES) == set(PROFILE_SANDBOX_ARGS)
    for name, args in PROFILE_SANDBOX_ARGS.items():
        options = parse_args([*DEMO_SANDBOX_ARGS, *args])
        assert options.profile == name
        assert options.hpa_sync_seconds == (5 if name == "demo" else 15)
        parsed = build_parser().parse_args(["demo", "--profile", name])
        assert settings_from(parsed).profile == name
    assert settings_from(build_parser().parse_args(["demo"])).profile == "demo"
    assert settings_from(build_parser().parse_args(["tui"])).profile is None
