"""`kube-llm load` end to end: the real CLI, session and Kubernetes client on a real sandbox
with the fake engine, acting as the cockpit's ServiceAccount; and its bad inputs."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.sandbox.harness import (
    NAMESPACE,
    ROOT,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)
from tui.core.figures import figures
from tui.core.model import Outcome
from tui.gateway.client import parse_backend_metrics
from tui.headless.terminal import ProgressLine
from tui.report.record_json import record_from_json, record_json
from tui.services.connect import DEMO_CONTEXT


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


@pytest.mark.slow(reason="runs `kube-llm load` on the module's sandbox until it gives up")
def test_a_kubeconfig_without_credentials_fails_at_once_and_says_so(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    # Every user of the kubeconfig stripped of its credentials: the API server (the sandbox as
    # a cluster with its default anonymous access) takes the requests for system:anonymous and
    # RBAC answers 403, which no wait can change. It used to wait 60 s for a Ready pod.
    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {}
    anonymous = tmp_path / "kubeconfig"
    anonymous.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    result = kube_llm("load", "--kubeconfig", str(anonymous), "-u", "1", "-d", "5", "--no-report")
    took = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    assert "system:anonymous" in result.stderr
    assert "has no credentials" in result.stderr
    assert "Traceback" not in result.stderr
    assert took < 40, f"gave up after {took:.0f} s (the wait for a Ready pod is 60 s)"


@pytest.mark.slow(reason="runs `kube-llm load` on the module's sandbox for seconds")
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


@pytest.mark.slow(reason="runs `kube-llm load` on the module's sandbox for seconds")
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


@pytest.mark.slow(reason="runs `kube-llm load` on the module's sandbox for seconds")
def test_load_without_streaming_shows_no_ttft(sandbox: RunningSandbox, tmp_path: Path) -> None:
    result = kube_llm(
        "load", "--kubeconfig", str(sandbox.kubeconfig), "--context", DEMO_CONTEXT,
        "--users", "2", "--chats-per-user", "2", "--max-tokens", "8", "--no-stream",
        "--report-dir", str(tmp_path / "reports"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    ttft = next(line for line in lines if "time to first token" in line)
    assert "n/a (not streamed)" in ttft
    assert "n/a (not streamed)" in next(line for line in lines if "inter-token gap" in line)
    folder = Path(lines[-1].removeprefix("report: "))
    record = record_from_json(report_of(folder))
    assert len(record.chats) == 4
    assert all(c.outcome is Outcome.OK and not c.streamed for c in record.chats), record.chats
    # Output tokens come from the backend's usage on each whole reply.
    assert all(c.output_tokens == 8 and c.tokens_from_usage for c in record.chats)
    assert all(c.ttft is None and c.e2e is not None for c in record.chats)
    assert "n/a (not streamed)" in (folder / "report.md").read_text()


def _start_load(sandbox: RunningSandbox, tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    """`kube-llm load` for 60 s of sustained load, output piped, as a process to interrupt."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "tui", "load", "--kubeconfig", str(sandbox.kubeconfig),
            "--context", DEMO_CONTEXT, "--users", "3", "--duration", "60", "--max-tokens", "200",
            "--report-dir", str(tmp_path / "reports"), *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _wait_for_load(process: subprocess.Popen[str]) -> list[str]:
    """Read stderr until the load has begun; the lines read."""
    assert process.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        assert line, f"kube-llm ended before the load began: {seen}"
        seen.append(line)
        if line.startswith("load: "):
            return seen
    raise AssertionError(f"no load after 60 s: {seen}")


@pytest.mark.serial
@pytest.mark.slow(reason="runs `kube-llm load` on the module's sandbox for seconds")
def test_ctrl_c_stops_the_load_and_reports_what_was_done(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    process = _start_load(sandbox, tmp_path)
    try:
        _wait_for_load(process)
        time.sleep(2.5)  # long replies (200 tokens): some are mid-reply at the Ctrl+C
        pressed = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
        took = time.monotonic() - pressed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted (Ctrl+C)" in stderr
    assert took < 15
    lines = stdout.splitlines()
    assert lines[0].startswith("requests ")
    assert "time to first token" in stdout
    folder = Path(lines[-1].removeprefix("report: "))
    data = report_of(folder)
    assert data["interrupted"] is True
    record = record_from_json(data)
    (phase,) = record.phases
    assert phase.ended_at is not None
    assert "interrupted by Ctrl+C" in phase.label
    assert phase.ended_at - phase.started_at < 30  # not the 60 s asked for
    # The chats open at the Ctrl+C are in the record as cancelled, not as failures.
    cancelled = [c for c in record.chats if c.outcome is Outcome.CANCELLED]
    assert 1 <= len(cancelled) <= 3
    assert not [c for c in record.chats if c.outcome is Outcome.ERROR]
    assert f"cancelled (load stopped) {len(cancelled)}" in lines[0]
    assert "**Interrupted (Ctrl+C):**" in (folder / "report.md").read_text()
    # Written again from its JSON, the report still says it was interrupted.
    again = kube_llm("report", str(folder / "report.json"), "--report-dir", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    refolder = Path(again.stdout.strip().removeprefix("report: "))
    assert "**Interrupted (Ctrl+C):**" in (refolder / "report.md").read_text()
    # Every pod's slots are free again: the streams were closed, not left running.
    wait_for(lambda: _inflight(sandbox) == 0, 5, "no chat in flight on any pod")


@pytest.mark.slow(reason="runs `kube-llm load` on the module's sandbox for seconds")
@pytest.mark.parametrize(
    ("signal_number", "words"),
    [(signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP (terminal closed)")],
)
def test_sigterm_and_sighup_stop_the_load_like_a_first_ctrl_c(
    sandbox: RunningSandbox, tmp_path: Path, signal_number: signal.Signals, words: str
) -> None:
    process = _start_load(sandbox, tmp_path)
    try:
        _wait_for_load(process)
        time.sleep(2.0)
        process.send_signal(signal_number)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal_number, stderr
    assert "Traceback" not in stderr
    assert f"kube-llm: {words}: stopping the load" in stderr
    assert f"interrupted ({words})" in stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("requests ")
    folder = Path(lines[-1].removeprefix("report: "))
    data = report_of(folder)
    assert data["interrupted"] is True
    assert data["interrupted_by"] == words
    record = record_from_json(data)
    (phase,) = record.phases
    assert phase.ended_at is not None
    assert phase.ended_at - phase.started_at < 30
    assert f"interrupted by {words}" in phase.label
    assert not [c for c in record.chats if c.outcome is Outcome.ERROR]
    assert f"**Interrupted ({words}):**" in (folder / "report.md").read_text()
    # Written again from its JSON, the report still names what stopped it.
    again = kube_llm("report", str(folder / "report.json"), "--report-dir", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    refolder = Path(again.stdout.strip().removeprefix("report: "))
    assert f"**Interrupted ({words}):**" in (refolder / "report.md").read_text()
    wait_for(lambda: _inflight(sandbox) == 0, 5, "no chat in flight on any pod")


def _inflight(sandbox: RunningSandbox) -> float:
    """Chats in flight on all the Ready pods, from their /metrics through the pod proxy."""
    total = 0.0
    with sandbox.http() as http:
        for pod in sandbox.ready_pods():
            path = f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}:8000/proxy/metrics"
            text = http.get(path).raise_for_status().text
            total += parse_backend_metrics(pod, text, 0.0).inflight
    return total


@pytest.mark.serial
@pytest.mark.slow(reason="runs `kube-llm load` on the module's sandbox for seconds")
def test_a_second_ctrl_c_quits_at_once(sandbox: RunningSandbox, tmp_path: Path) -> None:
    process = _start_load(sandbox, tmp_path)
    try:
        _wait_for_load(process)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        time.sleep(0.05)
        pressed = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - pressed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "stopped at once (a second Ctrl+C)" in stderr
    assert "Traceback" not in stderr
    assert took < 2
