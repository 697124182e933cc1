"""Issue 16's first "done when": the wheel and the sdist as a user gets them, installed with the
`llm` extra into a fresh virtual environment outside the checkout, and run from an empty folder.

Slow because it builds, creates a virtual environment and installs every dependency into it
(from pip's cache when it has them; `KUBE_LLM_LLAMA_WHEELHOUSE`, when set, holds a built
llama-cpp-python so it is not compiled again). The sandbox runs the fake engine
(`tests/fakes/engine.py`, run as a script by the installed Python: it imports only Starlette and
uvicorn), so the test does not depend on the embedded model's CPU support.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.kustomize.manifests import ROOT, rendered, rendered_text
from tests.kustomize.test_render import kubernetes_validate
from tests.sandbox.harness import NAMESPACE, SELECTOR, wait_for

pytestmark = [
    pytest.mark.slow(
        reason="builds the wheel and the sdist, installs them into a fresh venv "
        "and starts a sandbox"
    ),
    pytest.mark.timeout(1800),
]

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
NEVER_SHIPPED = ("tests/", "bench/", ".ci/")
FAKE_ENGINE = (
    f"python {ROOT / 'tests' / 'fakes' / 'engine.py'} --host 127.0.0.1 --port {{port}} "
    "--model {model} --tokens 8"
)


@dataclass(frozen=True)
class Install:
    """A fresh virtual environment with the built wheel installed, and an empty folder."""

    wheel: Path
    sdist: Path
    venv: Path
    empty: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`kube-llm ARGS` from the empty folder, with nothing of the checkout on the path."""
        return subprocess.run(
            [str(self.venv / "bin" / "kube-llm"), *args],
            capture_output=True,
            text=True,
            cwd=self.empty,
            env=self.env,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )


def _checked(command: list[str], timeout: float = 600) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"


def build_and_install(work: Path) -> Install:
    """Build the sdist and, from it, the wheel; install the wheel with the llm extra."""
    dist = work / "dist"
    # --no-isolation: hatchling comes from the dev extra, so the build fetches nothing.
    _checked([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)])
    (wheel,) = dist.glob("kube_llm-*.whl")
    (sdist,) = dist.glob("kube_llm-*.tar.gz")
    venv = work / "venv"
    _checked([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off"]
    wheelhouse = os.environ.get("KUBE_LLM_LLAMA_WHEELHOUSE")
    if wheelhouse:
        pip += ["--find-links", wheelhouse]
    _checked([*pip, f"{wheel}[llm]"], timeout=1500)
    empty = work / "empty"
    empty.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "VIRTUAL_ENV", "KUBECONFIG"}
    }
    env |= {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "XDG_STATE_HOME": str(work / "state"),
        "PYTHONUNBUFFERED": "1",
    }
    return Install(wheel, sdist, venv, empty, env)


def check_contents(installed: Install) -> None:
    """Neither the wheel nor the sdist holds tests/, bench/ or .ci/; both hold the data."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        in_wheel = wheel.namelist()
    with tarfile.open(installed.sdist) as sdist:
        # The sdist's members sit under kube_llm-VERSION/.
        in_sdist = [name.split("/", 1)[1] for name in sdist.getnames() if "/" in name]
    for names in (in_wheel, in_sdist):
        assert not [name for name in names if name.startswith(NEVER_SHIPPED)]
    assert "kube_llm_data/kustomize/overlays/minikube/kustomization.yaml" in in_wheel
    assert "kube_llm_data/scenarios/poster.yaml" in in_wheel
    assert f"kube_llm-{VERSION}.dist-info/licenses/LICENSE" in in_wheel
    assert {"kustomize/base/kustomization.yaml", "scenarios/poster.yaml", "LICENSE"} <= set(
        in_sdist
    )


def check_version_and_scenarios(installed: Install) -> None:
    """`--version`, `scenario list` and `scenario run poster --dry-run` from the empty folder."""
    version = installed.run("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"kube-llm {VERSION}"
    listing = installed.run("scenario", "list")
    assert listing.returncode == 0, listing.stderr
    names = [line.split()[0] for line in listing.stdout.splitlines()[1:]]
    assert names == sorted(path.stem for path in (ROOT / "scenarios").glob("*.yaml"))
    plan = installed.run("scenario", "run", "poster", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    # The shipped file, inside the installed package, not the checkout's.
    assert plan.stdout.startswith(f"scenario poster ({installed.venv}")


def check_manifests(installed: Install, tmp_path: Path) -> None:
    """`kube-llm manifests minikube` is what the overlay renders to, and validates as it does."""
    result = installed.run("manifests", "minikube")
    assert result.returncode == 0, result.stderr
    assert result.stdout == rendered_text("minikube")
    manifest = tmp_path / "minikube.yaml"
    manifest.write_text(result.stdout)
    validated = kubernetes_validate(manifest)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    passed = [line for line in validated.stdout.splitlines() if " passed for resource " in line]
    assert len(passed) == len(rendered("minikube"))
    folder = Path(installed.run("manifests", "minikube", "--path").stdout.strip())
    assert folder.is_relative_to(installed.venv)
    assert (folder / "kustomization.yaml").is_file()


@contextlib.contextmanager
def sandbox(installed: Install) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`kube-llm sandbox` from the empty folder, its output in a file; stopped after."""
    output = installed.empty.parent / "sandbox.out"
    with output.open("w") as sink:
        process = subprocess.Popen(
            [str(installed.venv / "bin" / "kube-llm"), "sandbox", "--engine-cmd", FAKE_ENGINE],
            cwd=installed.empty,
            env=installed.env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        yield process, output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def check_sandbox(installed: Install, process: subprocess.Popen[str], output: Path) -> None:
    """`kube-llm sandbox` from the empty folder: state in the XDG folder, two Ready pods."""
    state = Path(installed.env["XDG_STATE_HOME"]) / "kube-llm"
    kubeconfig = state / "kubeconfig"

    def banner() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the sandbox exited early:\n{output.read_text()}")
        return kubeconfig.exists() and "kubectl --kubeconfig" in output.read_text()

    wait_for(banner, 60, "the sandbox's banner")
    printed = output.read_text()
    assert f"kube-llm sandbox: state folder {state}" in printed  # said at start
    assert str(installed.venv / "lib") in printed  # the overlay kube-llm ships
    assert not any(installed.empty.iterdir()), "nothing is written where the user stands"
    api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))

    def ready_pods() -> list[str]:
        pods = api.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items
        return [
            str(pod.metadata and pod.metadata.name)
            for pod in pods
            if pod.status is not None
            and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        ]

    def two_ready() -> list[str] | None:
        found = ready_pods()
        return found if len(found) >= 2 else None

    ready = wait_for(two_ready, 120, "two Ready pods")
    assert len(ready) == 2
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(60) == 0, output.read_text()
    assert "no process left behind" in output.read_text()


def test_slow_the_built_wheel_installed_into_a_fresh_venv_works_from_an_empty_folder(
    tmp_path: Path,
) -> None:
    """Slow: a build, a fresh virtual environment and every dependency installed into it (one
    test, so a parallel run never builds and installs it twice)."""
    installed = build_and_install(tmp_path)
    check_contents(installed)
    check_version_and_scenarios(installed)
    check_manifests(installed, tmp_path)
    with sandbox(installed) as (process, output):
        check_sandbox(installed, process, output)
