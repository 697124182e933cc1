"""`kube-llm scenario run` on a real sandbox: the sandbox the scenario tests share (one per
module) and how they run a scenario and read back its report.

The scenario tests are split into several modules (tests/tui/test_scenario_sandbox*.py) so
that pytest-xdist (`--dist loadfile`) runs them on several workers at once; each module
starts its own sandbox with `scenario_sandbox`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.harness import ROOT, RunningSandbox, fake_engine_cmd, start_sandbox
from tui.report.record_json import record_from_json, record_json
from tui.services.connect import DEMO_CONTEXT

ADMIN_CONTEXT = "kube-llm-sandbox"
"""The sandbox kubeconfig's own context: allowed to patch the Deployment."""


def scenario_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A sandbox whose engines burn CPU per token (load moves the HPA); HPA sync every 1 s.

    A module-scoped fixture yields from this, and the sandbox stops when the module is done.
    """
    running = start_sandbox(
        tmp_path_factory.mktemp("scenario"),
        "--hpa-sync-seconds",
        "1",
        engine_cmd=fake_engine_cmd(busy_ms_per_token=8, tokens=16, token_delay=0.01),
    )
    yield running
    assert running.stop() == 0


def run(
    sandbox: RunningSandbox,
    scenario: Path,
    tmp_path: Path,
    context: str = DEMO_CONTEXT,
    extra: tuple[str, ...] = (),
) -> tuple[int, dict[str, Any], str]:
    """`kube-llm scenario run SCENARIO --json`: exit code, the JSON printed, stderr."""
    result = subprocess.run(
        [
            sys.executable, "-m", "tui", "scenario", "run", str(scenario),
            "--kubeconfig", str(sandbox.kubeconfig), "--context", context,
            "--report-dir", str(tmp_path / "reports"), "--json", *extra,
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    data: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.returncode, data, result.stderr


def stored(data: dict[str, Any]) -> dict[str, Any]:
    """The report folder's JSON, checked: its figures are those of its samples."""
    folder = Path(data["report"])
    assert sorted(p.name for p in folder.iterdir()) == ["report.json", "report.md", "timeline.png"]
    report: dict[str, Any] = json.loads((folder / "report.json").read_text())
    record = record_from_json(report)
    assert record_json(record)["figures"] == report["figures"]
    assert report["scenario"]["verdicts"] == data["verdicts"]
    return report


def scenario_file(tmp_path: Path, text: str) -> Path:
    """A scenario written for one test."""
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path
