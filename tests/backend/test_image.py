"""The backend image: its Dockerfile's rules, and a requirements file covering every import."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[2] / "backend"


def _stages(text: str) -> list[list[str]]:
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_slim_non_root_and_runs_the_backend() -> None:
    stages = _stages((BACKEND / "Dockerfile").read_text())
    assert len(stages) >= 2
    final = stages[-1]
    assert "slim" in (BACKEND / "Dockerfile").read_text().split("ARG PYTHON_IMAGE=")[1].split()[0]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)
    entrypoint = [line for line in final if line.upper().startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint[-1].split(None, 1)[1]) == ["python", "-m", "backend"]
    final_text = "\n".join(final)
    for tool in ("apt-get", "gcc", "build-essential", "pip install"):
        assert tool not in final_text, f"{tool} in the final stage"


def _third_party_imports() -> set[str]:
    names: set[str] = set()
    for path in BACKEND.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "backend"}


def test_requirements_cover_every_import_of_the_backend() -> None:
    pinned = {}
    for line in (BACKEND / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = re.split(r"==", line)
            pinned[name.lower().replace("-", "_")] = version
    assert _third_party_imports() <= set(pinned), _third_party_imports() - set(pinned)
    # The loop and parser uvicorn is told to use must be in the image too.
    assert {"uvloop", "httptools"} <= set(pinned)
