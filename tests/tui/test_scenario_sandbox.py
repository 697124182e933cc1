"""Scenarios end to end: `kube-llm scenario run` on a real sandbox with the fake engine.

`poster.yaml` as shipped must pass here within the test budget (the sandbox's HPA syncs every
second; its scale-down window is 30 s). Every step kind runs against the sandbox; a rollout
restart with the cockpit's own context is refused with words that say what to do; a failing
expectation exits 1 and says which; every figure of the written report recomputes from its JSON.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.harness import ROOT, RunningSandbox, fake_engine_cmd, start_sandbox
from tui.core.figures import figures
from tui.core.model import Outcome
from tui.report.record_json import record_from_json, record_json
from tui.services.connect import DEMO_CONTEXT

pytestmark = pytest.mark.slow(reason="a sandbox for the module; each scenario runs for real")
ADMIN_CONTEXT = "kube-llm-sandbox"
"""The sandbox kubeconfig's own context: allowed to patch the Deployment."""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A sandbox whose engines burn CPU per token (load moves the HPA); HPA sync every 1 s."""
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


@pytest.mark.serial
def test_poster_passes_on_the_sandbox(sandbox: RunningSandbox, tmp_path: Path) -> None:
    began = time.monotonic()
    code, data, stderr = run(sandbox, ROOT / "scenarios" / "poster.yaml", tmp_path)
    took = time.monotonic() - began
    assert code == 0, (data, stderr, sandbox.diagnosis())
    assert data["passed"] is True
    assert took < 150, f"poster.yaml took {took:.0f} s"
    kinds = [(v["source"], v["line"]) for v in data["verdicts"]]
    # Four waits (the minimum, up, the replacement, back down), then the five expectations.
    assert kinds == [
        ("step", 18), ("step", 21), ("step", 23), ("step", 26),
        ("expect", 28), ("expect", 29), ("expect", 30), ("expect", 31), ("expect", 32),
    ]  # fmt: skip
    # `within: auto` from the live HPA: its metrics resolution read from metrics.k8s.io.
    assert "metrics resolution 1 s: the pods' metrics.k8s.io windows" in data["bounds"]
    autos = [line for line in data["bounds"] if line.startswith("line 3") and " auto " in line]
    assert [line.split(":")[0] for line in autos] == ["line 31", "line 32"], data["bounds"]
    assert "-> 2 replicas: at most" in autos[1]
    record = record_from_json(stored(data))
    numbers = figures(record)
    assert numbers.chats.failed == 0
    assert numbers.health.failures == 0
    assert numbers.most_users_without_failure == 10
    (kill,) = record.recoveries
    assert kill.action == "evict"
    assert kill.recovery_seconds is not None
    assert kill.recovery_seconds < 30
    assert [p.kind for p in record.phases] == ["burst", "sustained"]
    sustained = numbers.phases[1]
    assert sustained.back_to_min_after_stop is not None
    assert max(p.current for p in record.replicas) >= 3


def test_every_step_kind_runs_on_the_sandbox(sandbox: RunningSandbox, tmp_path: Path) -> None:
    scenario = scenario_file(
        tmp_path,
        "name: steps\n"
        "settings: {max_tokens: 8, first_chat_wait: 2}\n"
        "steps:\n"
        "  - rate: {per_second: 4, duration: 3, users: 4}\n"
        "  - burst: {users: 2, chats_per_user: 2, background: true}\n"
        "  - sleep: 0.5\n"
        "  - kill: {}\n"
        "  - wait_for: {ready_pods: 2, within: 45}\n"
        "  - evict: {}\n"
        "  - wait_for: {ready_pods: 2, within: 45}\n"
        "  - stop_load: {}\n"
        "  - scale: {replicas: 3}\n"
        "  - wait_for: {replicas: 3, within: 30}\n",
    )
    code, data, stderr = run(sandbox, scenario, tmp_path, context=ADMIN_CONTEXT)
    assert code == 0, (data["verdicts"], stderr)
    assert [v["held"] for v in data["verdicts"]] == [True, True, True]
    report = stored(data)
    record = record_from_json(report)
    assert sorted(t.action for t in record.recoveries) == ["delete", "evict"]
    assert sorted(p.kind for p in record.phases) == ["burst", "rate"]
    burst = next(p for p in record.phases if p.kind == "burst")
    assert sum(1 for c in record.chats if c.started_at >= burst.started_at) >= 4
    assert any("scaled deployment to 3 replicas" in text for _, text in record.events)
    kinds = [w["kind"] for w in data["windows"]]
    assert kinds == [
        "rate", "burst", "sleep", "kill", "wait_for", "evict", "wait_for", "stop_load", "scale",
        "wait_for",
    ]  # fmt: skip


def test_a_rollout_restart_with_the_cockpits_role_says_what_to_do(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    scenario = scenario_file(
        tmp_path, "name: restart\nsteps:\n  - sleep: 0.1\n  - rollout_restart: {}\n"
    )
    code, data, _ = run(sandbox, scenario, tmp_path, context=DEMO_CONTEXT)
    assert code == 2
    assert data["passed"] is False
    aborted = data["aborted"]
    assert aborted.startswith("line 4: 403: context 'kube-llm-sandbox-cockpit' may not patch")
    assert "The cockpit's Role does not allow it" in aborted
    assert "`kube-llm-sandbox`" in aborted


def test_the_rolling_update_fails_no_request(sandbox: RunningSandbox, tmp_path: Path) -> None:
    code, data, stderr = run(
        sandbox, ROOT / "scenarios" / "rolling-update.yaml", tmp_path, context=ADMIN_CONTEXT
    )
    assert code == 0, (data, stderr)
    restart, during, total = data["verdicts"]
    assert restart["held"]
    assert "pods replaced, all Ready" in restart["detail"]
    assert during["detail"].startswith("0 failed of ")
    record = record_from_json(stored(data))
    window = next(w for w in data["windows"] if w["kind"] == "rollout_restart")
    overlapping = [
        c for c in record.chats
        if c.started_at <= window["ended_at"] and c.ended_at >= window["started_at"]
    ]  # fmt: skip
    assert f"0 failed of {len(overlapping)} chats" in during["detail"]
    assert total["held"]


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


def test_a_fixed_wait_shorter_than_the_hpa_fails_before_anything_runs(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Issue 15: the old poster's 90 s on Minikube; here 5 s against the sandbox's 30 s window."""
    scenario = scenario_file(
        tmp_path,
        "name: short\n"
        "steps:\n"
        "  - sustained: {users: 1, duration: 2}\n"
        "  - stop_load: {}\n"
        "  - wait_for: {replicas_at_most: 2, within: 5}\n"
        "expect:\n"
        "  - replicas_return: {replicas: 2, within: 5}\n",
    )
    began = time.monotonic()
    code, data, stderr = run(sandbox, scenario, tmp_path, extra=("--hpa-sync-seconds", "1"))
    assert code == 2, (data, stderr)
    assert time.monotonic() - began < 30
    assert data["aborted"] == "fixed waits shorter than the HPA can possibly scale (above)"
    assert [(v["line"], v["held"]) for v in data["verdicts"]] == [(7, False), (5, False)]
    for verdict in data["verdicts"]:
        assert (
            "5 s is shorter than the HPA can possibly scale 3 -> 2 replicas: at least 29 s"
            in (verdict["detail"])
        )
    assert not data["windows"]  # no step ran


def test_a_fixed_wait_the_hpa_cannot_meet_fails_at_once_mid_run(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    scenario = scenario_file(
        tmp_path,
        "name: mid\n"
        "settings: {max_tokens: 8}\n"
        "steps:\n"
        "  - scale: {replicas: 3}\n"
        "  - wait_for: {replicas: 3, within: 30}\n"
        "  - burst: {users: 1, chats_per_user: 1}\n"
        "  - wait_for: {replicas_at_most: 2, within: 3}\n",
    )
    code, data, stderr = run(
        sandbox, scenario, tmp_path, context=ADMIN_CONTEXT, extra=("--hpa-sync-seconds", "1")
    )
    assert code == 1, (data, stderr)
    *_, short = data["verdicts"]
    assert short["line"] == 7
    assert short["held"] is False
    # From 3 replicas, or more if an earlier test left the HPA higher.
    assert re.search(
        r"^3 s is shorter than the HPA can possibly scale [3-6] -> 2 ", short["detail"]
    )
    (window,) = [w for w in data["windows"] if w["line"] == 7]
    assert window["ended_at"] - window["started_at"] < 1.0  # failed at once, not after 3 s


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


def test_auto_reads_the_resolution_again_once_the_pods_have_metrics(tmp_path: Path) -> None:
    """A run that starts before metrics-server (here every 40 s) has measured the new pods
    assumes Minikube's 60 s, then reads the pods' windows when it needs the bound (a pod's
    first window runs from its start, as metrics-server's does)."""
    fresh = start_sandbox(
        tmp_path / "fresh",
        "--hpa-sync-seconds", "1", "--metrics-resolution-seconds", "40",
        engine_cmd=fake_engine_cmd(),
    )  # fmt: skip
    try:
        scenario = scenario_file(
            tmp_path,
            "name: fresh\n"
            "steps:\n"
            "  - sleep: 45\n"
            "  - wait_for: {replicas_at_most: 2, within: auto}\n",
        )
        code, data, stderr = run(fresh, scenario, tmp_path)
        assert code == 0, (data, stderr)
        assert any("metrics resolution 60 s: assumed" in line for line in data["bounds"])
        again = [line for line in data["bounds"] if line.startswith("read again: metrics")]
        assert len(again) == 1, data["bounds"]
        assert again[0].endswith("s: the pods' metrics.k8s.io windows")
    finally:
        assert fresh.stop() == 0
