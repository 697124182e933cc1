"""Scenarios on a real sandbox, faults and runs cut short: a force-killed pod fails only the
chats it held (C1), and Ctrl+C or SIGHUP stops a run and reports what was done.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.harness import ROOT, RunningSandbox
from tests.tui.scenario_runs import run, scenario_file, scenario_sandbox, stored
from tui.core.model import Outcome
from tui.report.record_json import record_from_json, record_json
from tui.services.connect import DEMO_CONTEXT

pytestmark = pytest.mark.slow(
    reason="a sandbox for the module; pods are killed and runs stopped under load"
)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """The module's sandbox: engines that burn CPU per token, HPA sync every 1 s."""
    yield from scenario_sandbox(tmp_path_factory)


def test_a_force_kill_fails_only_the_chats_its_pod_held(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    # C1 for a force delete: 6 users on 2 pods with MAX_INFLIGHT=1, so the killed pod holds a
    # running chat and a queue; those may fail, nothing else.
    scenario = scenario_file(
        tmp_path,
        "name: kill-own\n"
        "settings: {max_tokens: 16, first_chat_wait: 2}\n"
        "steps:\n"
        "  - sustained: {users: 6, duration: 60}\n"
        "  - sleep: 2\n"
        "  - kill: {}\n"
        "  - wait_for: {ready_pods: 2, within: 45}\n"
        "  - sleep: 1\n"
        "  - stop_load: {}\n"
        "expect:\n"
        "  - failures_only_on_killed_pod: kill\n",
    )
    code, data, stderr = run(sandbox, scenario, tmp_path)
    assert code == 0, (data["verdicts"], stderr)
    *_, verdict = data["verdicts"]
    assert verdict["line"] == 11
    assert verdict["held"] is True
    (window,) = [w for w in data["windows"] if w["kind"] == "kill"]
    pod, sample = window["pod"], window["pod_metrics"]
    assert sample is not None
    assert sample["pod"] == pod
    assert sample["queued"] is not None
    held = int(sample["inflight"] + sample["queued"])
    # Recomputed from the stored samples: every failed chat is the killed pod's (or has no
    # serving pod known), within the kill's span, and no more than it held.
    record = record_from_json(stored(data))
    (kill,) = record.recoveries
    assert kill.pod == pod
    end = kill.replacement_ready_at or kill.closed_at or record.ended_at
    failed = [c for c in record.chats if c.outcome is Outcome.ERROR]
    assert all(c.pod in {None, pod} for c in failed), failed
    assert all(c.started_at <= end and c.ended_at >= kill.requested_at for c in failed), failed
    assert len(failed) <= held
    assert verdict["detail"].startswith(f"{pod} (line 6): {len(failed)} failed")
    assert f"of the {held} it held at the kill" in verdict["detail"]
    assert verdict["detail"].endswith("none on another pod")


@pytest.mark.parametrize(
    ("signal_number", "words"),
    [(signal.SIGINT, "Ctrl+C"), (signal.SIGHUP, "SIGHUP (terminal closed)")],
)
def test_ctrl_c_or_sighup_stops_a_scenario_and_reports_what_was_done(
    sandbox: RunningSandbox, tmp_path: Path, signal_number: signal.Signals, words: str
) -> None:
    # SIGHUP (the terminal closed) and SIGTERM stop it as a first Ctrl+C does, exit 128 + signal.
    # Whole replies (`stream: false`) here, so the setting runs on the sandbox too.
    scenario = scenario_file(
        tmp_path,
        "name: cut-short\n"
        "settings: {max_tokens: 8, stream: false}\n"
        "steps:\n"
        "  - sustained: {users: 2, duration: 120}\n"
        "  - sleep: 120\n"
        "expect:\n"
        "  - failures_at_most: 0\n",
    )
    process = subprocess.Popen(
        [
            sys.executable, "-m", "tui", "scenario", "run", str(scenario),
            "--kubeconfig", str(sandbox.kubeconfig), "--context", DEMO_CONTEXT,
            "--report-dir", str(tmp_path / "reports"),
        ],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        seen: list[str] = []
        while not any("line 5: sleep" in line for line in seen):
            line = process.stderr.readline()
            assert line, f"the scenario ended before its sleep: {seen}"
            seen.append(line)
        time.sleep(2.0)
        process.send_signal(signal_number)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal_number, stderr
    assert "Traceback" not in stderr
    lines = stdout.splitlines()
    # Nothing is judged on a run cut short: no PASS or FAIL, and it says where it stopped.
    assert lines[0] == f"STOPPED  line 5: interrupted by {words}"
    assert lines[1] == "scenario cut-short: interrupted"
    folder = Path(lines[2].removeprefix("report: "))
    report = json.loads((folder / "report.json").read_text())
    assert report["scenario"]["interrupted"] is True
    assert report["scenario"]["interrupted_by"] == words
    assert report["scenario"]["verdicts"] == []
    record = record_from_json(report)
    assert record_json(record)["figures"] == report["figures"]
    assert record.chats
    assert all(not c.streamed for c in record.chats)
    assert {c.outcome for c in record.chats} <= {Outcome.OK, Outcome.CANCELLED}
    assert any(c.outcome is Outcome.OK and c.tokens_from_usage for c in record.chats)
    (phase,) = record.phases
    assert phase.ended_at is not None
    assert phase.ended_at - phase.started_at < 60  # stopped, not the 120 s asked for
    assert f"## Scenario cut-short: interrupted ({words})" in (folder / "report.md").read_text()
