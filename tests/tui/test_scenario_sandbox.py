"""Scenarios end to end: `kube-llm scenario run` on a real sandbox with the fake engine; the
shipped scenarios and every step kind.

`poster.yaml` as shipped must pass here within the test budget (the sandbox's HPA syncs every
second; its scale-down window is 30 s), and `rolling-update.yaml` fails no request. Every step
kind runs against the sandbox; a rollout restart with the cockpit's own context is refused with
words that say what to do. The other scenario tests on the sandbox are in
test_scenario_sandbox_*.py (split so that they run on several pytest-xdist workers at once).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.harness import ROOT, RunningSandbox
from tests.tui.scenario_runs import ADMIN_CONTEXT, run, scenario_file, scenario_sandbox, stored
from tui.core.figures import figures
from tui.report.record_json import record_from_json
from tui.services.connect import DEMO_CONTEXT

pytestmark = pytest.mark.slow(reason="a sandbox for the module; each scenario runs for real")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """The module's sandbox: engines that burn CPU per token, HPA sync every 1 s."""
    yield from scenario_sandbox(tmp_path_factory)


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
