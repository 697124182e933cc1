"""`kube-llm load` end to end: the real CLI, session and Kubernetes client on a real sandbox
with the fake engine, acting as the cockpit's ServiceAccount; and its bad inputs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.harness import ROOT, RunningSandbox, fake_engine_cmd, start_sandbox
from tui.figures import figures
from tui.headless import ProgressLine
from tui.reportjson import record_from_json, record_json
from tui.run import DEMO_CONTEXT


def kube_llm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `kube-llm ARGS` as a user would, output piped."""
    return subprocess.run(
        [sys.executable, "-m", "tui", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_progress_line_is_quiet_when_piped_and_redraws_on_a_terminal() -> None:
    piped = io.StringIO()
    line = ProgressLine(piped)
    line.show("done 3")
    line.clear()
    assert piped.getvalue() == ""  # StringIO is not a terminal
    shown = io.StringIO()
    line = ProgressLine(shown, enabled=True)
    line.show("done 10  errors 0")
    line.show("done 11")
    line.clear()
    # Each redraw returns to the line's start and pads over the longer text before it.
    assert shown.getvalue() == (
        "\rdone 10  errors 0" + "\rdone 11" + " " * 10 + "\r" + " " * 7 + "\r"
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--rate", "2"], "rate load needs a duration"),
        (["--duration", "-1"], "duration must be positive"),
        (["--backend-url", "ftp://x"], "--backend-url"),
    ],
)
def test_bad_flags_are_a_clear_error(args: list[str], words: str, tmp_path: Path) -> None:
    result = kube_llm("load", "--kubeconfig", str(tmp_path / "none"), *args)
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_kubeconfig_or_prompt_set_is_a_clear_error(tmp_path: Path) -> None:
    result = kube_llm("load", "--kubeconfig", str(tmp_path / "none"))
    assert result.returncode == 2
    assert str(tmp_path / "none") in result.stderr
    empty = tmp_path / "prompts.txt"
    empty.write_text("# only a comment\n\n")
    result = kube_llm("load", "--prompts", str(empty), "--kubeconfig", str(tmp_path / "none"))
    assert result.returncode == 2
    assert "holds no prompt" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A sandbox with the fake engine."""
    running = start_sandbox(
        tmp_path_factory.mktemp("load"),
        engine_cmd=fake_engine_cmd(busy_ms_per_token=2, tokens=12, token_delay=0.005),
    )
    yield running
    assert running.stop() == 0


def report_of(folder: Path) -> dict[str, object]:
    """The report folder's JSON, after checking the folder holds all three parts."""
    assert sorted(p.name for p in folder.iterdir()) == ["report.json", "report.md", "timeline.png"]
    assert (folder / "timeline.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    data: dict[str, object] = json.loads((folder / "report.json").read_text())
    return data


@pytest.mark.slow
def test_load_burst_json_through_the_service_proxy(sandbox: RunningSandbox, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hi.\nName a colour.\n")
    result = kube_llm(
        "load", "--kubeconfig", str(sandbox.kubeconfig), "--context", DEMO_CONTEXT,
        "--users", "3", "--chats-per-user", "2", "--max-tokens", "8", "--prompts", str(prompts),
        "--report-dir", str(tmp_path / "reports"), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr  # piped: no progress line
    summary = json.loads(result.stdout)
    chats = summary["figures"]["chats"]
    assert chats["requests"] == 6
    assert chats["ok"] + chats["failed"] == 6
    assert chats["failed"] == 0
    assert summary["phases"][0]["kind"] == "burst"
    assert summary["phases"][0]["users"] == 3
    # Every chat went to a pod of the sandbox, and the table's shares add up.
    pods = {p["metadata"]["name"] for p in sandbox.pods()}
    assert {pod for pod, _ in chats["served_by"]} <= pods
    folder = Path(summary["report"])
    data = report_of(folder)
    record = record_from_json(data)
    assert len(record.chats) == 6
    # The stored figures are those of the stored samples, recomputed.
    assert record_json(record)["figures"] == data["figures"]
    assert summary["figures"] == data["figures"]
    markdown = (folder / "report.md").read_text()
    assert "![latency and replicas over time](timeline.png)" in markdown
    assert "## Load phases and scaling reaction" in markdown


@pytest.mark.slow
def test_load_sustained_table(sandbox: RunningSandbox, tmp_path: Path) -> None:
    result = kube_llm(
        "load", "--kubeconfig", str(sandbox.kubeconfig), "--context", DEMO_CONTEXT,
        "--users", "2", "--duration", "3", "--max-tokens", "8",
        "--report-dir", str(tmp_path / "reports"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    folder = Path(lines[-1].removeprefix("report: "))
    record = record_from_json(report_of(folder))
    numbers = figures(record)
    # The table is the figures of the samples the report stored.
    assert lines[0].split()[:6] == [
        "requests", str(numbers.chats.requests), "ok", str(numbers.chats.ok),
        "failed", str(numbers.chats.failed),
    ]  # fmt: skip
    assert numbers.chats.requests >= 4  # two users, back to back, for 3 s
    phase = record.phases[0]
    assert phase.kind == "sustained"
    assert phase.ended_at is not None
    assert 3.0 <= phase.ended_at - phase.started_at < 10
    assert "time to first token" in result.stdout
    assert "served by:" in result.stdout
