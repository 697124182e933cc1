"""Scenarios on a real sandbox, what a run says: a failing expectation exits 1 and says which,
several files run in order with one summary, and `--dry-run` reads the live HPA.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.harness import ROOT, RunningSandbox
from tests.tui.scenario_runs import scenario_file, scenario_sandbox
from tui.services.connect import DEMO_CONTEXT

pytestmark = pytest.mark.slow(reason="a sandbox for the module; each scenario runs for real")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """The module's sandbox: engines that burn CPU per token, HPA sync every 1 s."""
    yield from scenario_sandbox(tmp_path_factory)


def test_a_failing_expectation_exits_1_and_says_which(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    scenario = scenario_file(
        tmp_path,
        "name: too-strict\n"
        "settings: {max_tokens: 8}\n"
        "steps:\n"
        "  - burst: {users: 2, chats_per_user: 1}\n"
        "expect:\n"
        "  - ttft_p95_below: 0.000001\n"
        "  - failures_at_most: 0\n",
    )
    result = subprocess.run(
        [
            sys.executable, "-m", "tui", "scenario", "run", str(scenario),
            "--kubeconfig", str(sandbox.kubeconfig), "--context", DEMO_CONTEXT,
            "--report-dir", str(tmp_path / "reports"),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL  line 6   chat TTFT p95 below 1e-06 s: TTFT p95 ")
    assert lines[0].endswith("s over the limit")
    assert lines[1].startswith("PASS  line 7   at most 0 failed chats and health checks")
    assert lines[2] == "scenario too-strict: FAILED"
    folder = Path(lines[3].removeprefix("report: "))
    markdown = (folder / "report.md").read_text()
    assert "## Scenario too-strict: FAILED" in markdown
    assert "| **no** | 6 | chat TTFT p95 below 1e-06 s |" in markdown


def test_several_files_run_in_order_with_one_summary(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    first = tmp_path / "first.yaml"
    first.write_text("name: first\nsteps:\n  - sleep: 0.1\n")
    second = tmp_path / "second.yaml"
    second.write_text(
        "name: second\nsettings: {max_tokens: 4}\n"
        "steps:\n  - burst: {users: 1, chats_per_user: 1}\n"
        "expect:\n  - e2e_p95_below: 0.000001\n"
    )
    result = subprocess.run(
        [
            sys.executable, "-m", "tui", "scenario", "run", str(first), str(second),
            "--kubeconfig", str(sandbox.kubeconfig), "--context", DEMO_CONTEXT,
            "--report-dir", str(tmp_path / "reports"),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stdout.index("scenario first: passed") < result.stdout.index(
        "scenario second: FAILED"
    )
    summary = result.stdout.split("scenario second: FAILED")[1].splitlines()
    (one,) = [line for line in summary if line.startswith(str(first))]
    assert one.split()[1:4] == ["first", "passed", "0/0"]
    (two,) = [line for line in summary if line.startswith(str(second))]
    assert two.split()[1:4] == ["second", "FAILED", "0/1"]
    assert summary[-1] == "1 of 2 scenarios passed"
    assert len(list((tmp_path / "reports").iterdir())) == 2
    as_json = subprocess.run(
        [
            sys.executable, "-m", "tui", "scenario", "run", str(first), str(second),
            "--kubeconfig", str(sandbox.kubeconfig), "--context", DEMO_CONTEXT,
            "--no-report", "--json",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert as_json.returncode == 1, as_json.stderr
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(d["name"], d["passed"]) for d in lines] == [("first", True), ("second", False)]


def test_dry_run_reads_the_live_hpa(sandbox: RunningSandbox, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "tui", "scenario", "run", str(ROOT / "scenarios" / "poster.yaml"),
            "--dry-run", "--kubeconfig", str(sandbox.kubeconfig), "--context", DEMO_CONTEXT,
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "behaviour, minReplicas and maxReplicas: the live HPA llm-backend" in result.stdout
    assert "metrics resolution 1 s: the pods' metrics.k8s.io windows" in result.stdout
    assert "scale down: window 30 s" in result.stdout
