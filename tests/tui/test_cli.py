"""The `kube-llm` console script, run as a real process."""

from __future__ import annotations

import os
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


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_kube_llm(), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_help_lists_every_subcommand() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("positional arguments")[-1].split()
    for command in ("tui", "demo", "sandbox", "load", "scenario", "report"):
        assert command in listed


def test_tui_takes_kubectl_flags() -> None:
    result = run("tui", "--help")
    assert result.returncode == 0, result.stderr
    for flag in ("--kubeconfig", "--context", "-n", "--namespace", "--backend-url", "--read-only"):
        assert flag in result.stdout


def test_no_command_opens_the_cockpit_and_a_missing_kubeconfig_is_a_clear_error(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nowhere" / "config"
    env = {**os.environ, "KUBECONFIG": str(missing)}
    for args in ((), ("-n", "kube-llm")):
        result = run(*args, env=env)
        assert result.returncode == 2
        assert str(missing) in result.stderr
        assert "make demo" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_malformed_kubeconfig_names_the_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("apiVersion: v1\nclusters:\n  - name: a\n    cluster: [unclosed\n")
    result = run("tui", "--kubeconfig", str(config))
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "line" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_context_lists_the_known_ones(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: here\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: secret-token-value}}]\n"
        "contexts: [{name: here, context: {cluster: c, user: u}}]\n"
    )
    result = run("tui", "--kubeconfig", str(config), "--context", "there")
    assert result.returncode == 2
    assert "'there'" in result.stderr
    assert "here" in result.stderr
    assert "secret-token-value" not in result.stderr + result.stdout


def test_a_bad_backend_url_is_a_clear_error(tmp_path: Path) -> None:
    result = run("tui", "--backend-url", "ftp://nope", "--kubeconfig", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "--backend-url" in result.stderr
    assert "Traceback" not in result.stderr


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


@pytest.mark.parametrize("value", ["0", "-5", "3601", "soon"])
def test_compare_refuses_a_sync_period_that_is_not_positive_before_any_sandbox_starts(
    tmp_path: Path, value: str
) -> None:
    state = tmp_path / "state"
    result = run(
        "scenario", "compare", "poster", "--hpa-sync-seconds", value, "--state-dir", str(state)
    )
    assert result.returncode == 2
    assert "--hpa-sync-seconds" in result.stderr
    assert "Traceback" not in result.stderr
    assert not state.exists()  # refused by the parser, as `scenario run` refuses it


def test_the_sandbox_flags_say_the_same_in_demo_and_compare() -> None:
    demo = run("demo", "--help")
    compare = run("scenario", "compare", "--help")
    assert demo.returncode == compare.returncode == 0
    demo_help = " ".join(demo.stdout.split())
    compare_help = " ".join(compare.stdout.split())
    assert "--autoscaler {cpu,queue}" in demo_help
    assert "pass ARG to the sandbox (repeat;" in demo_help
    assert "pass ARG to both sandboxes (repeat;" in compare_help
    assert "--autoscalers AUTOSCALERS" in compare_help
    assert "(Kubernetes: 15)" in compare_help
