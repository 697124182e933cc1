"""The `kube-llm` console script, run as a real process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _kube_llm() -> list[str]:
    script = Path(sys.executable).with_name("kube-llm")
    if script.exists():
        return [str(script)]
    found = shutil.which("kube-llm")
    if found is None:
        pytest.fail("the kube-llm console script is not installed: run `make test`")
    return [found]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_kube_llm(), *args], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )


def test_help_lists_only_existing_subcommands() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    assert "sandbox" in result.stdout
    for missing in ("scenario", "report", "load"):
        assert missing not in result.stdout.split("positional arguments")[-1].split()


def test_no_command_prints_help() -> None:
    result = run()
    assert result.returncode == 0
    assert "usage: kube-llm" in result.stdout


def test_unknown_command_is_a_clear_error_without_traceback() -> None:
    result = run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


def test_sandbox_subcommand_hands_over_to_the_sandbox() -> None:
    result = run("sandbox", "--help")
    assert result.returncode == 0, result.stderr
    # The sandbox's own help, not the top-level one, says what it is.
    assert "test bench" in result.stdout
    assert "--engine-cmd" in result.stdout


def test_kubectl_plugin_name_is_installed() -> None:
    plugin = Path(sys.executable).with_name("kubectl-llm")
    assert plugin.exists(), "kubectl-llm must be installed so `kubectl llm` works"
