"""The `model-pull` init container pulls only a model the engine does not have (issue 15).

`ollama pull` asks the registry for the manifest before anything else and fails when it cannot
reach it, even with the model already on the claim; a replacement pod must start offline. Each
test renders a tree, resolves the init container's environment and its `$(VAR)` references as
the kubelet does, and runs its exact command with /bin/sh (the ollama/ollama image is Ubuntu,
whose /bin/sh is dash, as here) against a fake `ollama` first on PATH that records its calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kustomize.manifests import OVERLAYS, Obj, container, find, one, pod_spec, rendered

# What the fake engine and registry know: a folder of pulled models, a "registry down" switch.
FAKE_OLLAMA = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path

state = Path(os.environ["FAKE_OLLAMA_STATE"])
with (state / "calls.jsonl").open("a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
if os.environ.get("OLLAMA_HOST") != "127.0.0.1:11434":
    sys.exit("Error: could not connect to ollama server")
verb, name = sys.argv[1], sys.argv[2]
model = state / "models" / name.replace("/", "_")
if verb == "show":
    if model.exists():
        print("  Model\\n    architecture    llama")
        sys.exit(0)
    sys.exit(f"Error: model '{{name}}' not found")
if verb == "pull":
    if (state / "registry-down").exists():
        sys.exit("Error: pull model manifest: dial tcp: lookup registry.ollama.ai: no such host")
    model.parent.mkdir(exist_ok=True)
    model.write_text("blob")
    print("success")
    sys.exit(0)
sys.exit(f"unexpected verb {{verb}}")
"""

TARGETS = ("base", *OVERLAYS)


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """Expand `$(NAME)` references as the kubelet does for command, args and env values.

    A port of Kubernetes' third_party/forked/golang/expansion: `$$` is a literal `$`, `$(NAME)`
    is the variable's value when NAME is defined and stays as written when it is not, and any
    other `$` (as in a shell's `$1`) is left alone.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                out.append(env.get(name, f"$({name})"))
                i = close + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


def container_env(objs: list[Obj], ctr: Obj) -> dict[str, str]:
    """A container's environment as the kubelet builds it from literal values and ConfigMaps."""
    env: dict[str, str] = {}
    for source in ctr.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            env.update(one(objs, "ConfigMap", ref["name"]).get("data", {}))
    for var in ctr.get("env", []):
        if "value" in var:
            env[var["name"]] = kubelet_expand(str(var["value"]), env)
            continue
        ref = var.get("valueFrom", {}).get("configMapKeyRef")
        if ref:
            env[var["name"]] = one(objs, "ConfigMap", ref["name"])["data"][ref["key"]]
    return env


def model_pull_argv(objs: list[Obj]) -> tuple[list[str], dict[str, str]]:
    """The model-pull container's argv (after the kubelet's expansion) and its environment."""
    pull = container(pod_spec(one(objs, "Deployment", "llm-backend")), "model-pull")
    env = container_env(objs, pull)
    argv = [kubelet_expand(part, env) for part in [*pull["command"], *pull.get("args", [])]]
    return argv, env


def run_model_pull(
    objs: list[Obj], state: Path, *, model_present: bool, registry_up: bool
) -> tuple[subprocess.CompletedProcess[str], list[list[str]], str]:
    """Run the init container's command against the fake ollama: the run, the calls, MODEL."""
    argv, env = model_pull_argv(objs)
    bin_dir = state / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "ollama"
    fake.write_text(FAKE_OLLAMA)
    fake.chmod(0o755)
    models = state / "models"
    models.mkdir()
    if model_present:
        (models / env["MODEL"].replace("/", "_")).write_text("blob")
    if not registry_up:
        (state / "registry-down").write_text("")
    result = subprocess.run(
        argv,
        env={
            **env,
            "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "FAKE_OLLAMA_STATE": str(state),
        },
        cwd=state,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls_file = state / "calls.jsonl"
    lines = calls_file.read_text().splitlines() if calls_file.exists() else []
    return result, [json.loads(line) for line in lines], env["MODEL"]


def test_the_command_runs_in_a_shell_the_image_has() -> None:
    """`sh -c` with the model as a positional argument, so the shell never parses its value."""
    argv, _ = model_pull_argv(rendered("minikube"))
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["model-pull", "tinyllama"]
    assert "tinyllama" not in argv[2]


@pytest.mark.parametrize("target", TARGETS)
def test_model_on_the_volume_starts_offline_without_a_pull(target: str, tmp_path: Path) -> None:
    """Model present, registry unreachable: exit 0, one `show`, no `pull`, and it says so."""
    result, calls, model = run_model_pull(
        rendered(target), tmp_path, model_present=True, registry_up=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls == [["show", model]]
    assert f"{model} is already on the models volume; not pulling" in result.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_missing_model_is_pulled(target: str, tmp_path: Path) -> None:
    """Model missing, registry up: `show` fails, then `pull` fetches it; exit 0, and it says so."""
    result, calls, model = run_model_pull(
        rendered(target), tmp_path, model_present=False, registry_up=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls == [["show", model], ["pull", model]]
    assert f"{model} is not on the models volume; pulling it" in result.stdout
    assert f"model '{model}' not found" in result.stderr  # show's own reason, in the log


@pytest.mark.parametrize("target", TARGETS)
def test_a_failed_pull_fails_the_init_container(target: str, tmp_path: Path) -> None:
    """Model missing, registry unreachable: the pull fails and so does the container (non-zero),
    so the kubelet retries it and the backend never starts without a model."""
    result, calls, _ = run_model_pull(
        rendered(target), tmp_path, model_present=False, registry_up=False
    )
    assert result.returncode != 0
    assert [call[0] for call in calls] == ["show", "pull"]
    assert "registry.ollama.ai" in result.stderr


def test_a_model_name_is_never_run_as_shell(tmp_path: Path) -> None:
    """A MODEL with shell syntax reaches ollama as one argument and runs nothing."""
    objs = rendered("minikube")
    hostile = 'x"; touch pwned; echo "'
    for config in find(objs, "ConfigMap"):
        config["data"]["MODEL"] = hostile
    result, calls, model = run_model_pull(objs, tmp_path, model_present=True, registry_up=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls == [["show", hostile]]
    assert model == hostile
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$(MODEL)", "tinyllama"),
        ("pull $(MODEL) now", "pull tinyllama now"),
        ("$$(MODEL)", "$(MODEL)"),
        ("$(UNSET)", "$(UNSET)"),
        ('ollama show "$1"', 'ollama show "$1"'),
        ("$(", "$("),
        ("cost $", "cost $"),
        ("$$$(MODEL)", "$tinyllama"),
    ],
)
def test_kubelet_expansion(text: str, expanded: str) -> None:
    """The helper expands like the kubelet (cases from upstream's expansion tests)."""
    assert kubelet_expand(text, {"MODEL": "tinyllama"}) == expanded
