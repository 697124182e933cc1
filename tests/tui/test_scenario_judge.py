"""Each expectation judged on a known record: held or not, and the margin in its words, each
computed here from the record's samples."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.tui.test_report import START, make_record
from tui.core.figures import CockpitRecord, LoadPhase, figures
from tui.core.model import BackendMetrics, ChatSample, Outcome, RecoveryTimeline, ReplicaPoint
from tui.scenario.judge import StepWindow, judge
from tui.scenario.spec import Expectation, parse_scenario


def expectation(text: str) -> Expectation:
    """One expectation parsed from its YAML form, as a scenario file gives it."""
    steps = "  - sleep: 0\n  - kill: {}\n  - evict: {}\n"
    scenario = parse_scenario(f"name: x\nsteps:\n{steps}expect:\n  - {text}\n", Path("x"))
    (parsed,) = scenario.expectations
    return parsed


def record_with_phases() -> CockpitRecord:
    """The report tests' record, with a load phase and the HPA going up and back."""
    base = make_record()
    replicas = (
        *base.replicas,
        ReplicaPoint(START + 150, 4, 2, 4),
        ReplicaPoint(START + 165, 2, 2, 2),
    )
    phase = LoadPhase("sustained", 8, START + 90, START + 112)
    return replace(base, replicas=replicas, phases=(phase,))


def test_latency_thresholds_hold_by_their_margin() -> None:
    record = make_record()
    p95 = figures(record).chats.ttft.p95
    assert p95 is not None
    held, words = judge(expectation(f"ttft_p95_below: {p95 + 0.25}"), record, ())
    assert held
    assert words == f"TTFT p95 {p95:.3f} s, 0.250 s under the limit"
    held, words = judge(expectation(f"ttft_p95_below: {p95 - 0.125}"), record, ())
    assert not held
    assert words == f"TTFT p95 {p95:.3f} s, 0.125 s over the limit"
    health = figures(record).health.p50
    assert health is not None
    held, words = judge(expectation("health_p50_below: 0.076"), record, ())
    assert held is (health < 0.076)
    assert words.startswith(f"health p50 {health * 1000:.3f} ms")
    empty = replace(record, chats=())
    assert judge(expectation("e2e_p95_below: 1"), empty, ()) == (
        False,
        "no end-to-end p95 measured",
    )


def test_failures_count_errors_not_shed_requests() -> None:
    record = make_record()
    chats = record.chats
    failed = sum(1 for c in chats if c.outcome is Outcome.ERROR)
    health_failed = sum(1 for h in record.healths if not h.ok)
    share = failed * 100 / len(chats)
    held, words = judge(expectation("failures_below_percent: 50"), record, ())
    assert held
    assert words.startswith(f"{failed} of {len(chats)} chats failed ({share:.2f} %)")
    held, words = judge(expectation("failures_at_most: 0"), record, ())
    assert not held
    assert words.endswith(f"{failed + health_failed} over the allowed 0")


def test_recovery_needs_a_kill_and_every_replacement_ready() -> None:
    record = make_record()
    # make_record has a replacement removed before Ready and one kill still open.
    held, words = judge(expectation("recovery_below: 30"), record, ())
    assert not held
    assert words == "2 of 3 kills had no replacement Ready"
    recovered = replace(record, recoveries=record.recoveries[:2])
    worst = recovered.recoveries[0].recovery_seconds
    assert worst is not None
    assert judge(expectation("recovery_below: 30"), recovered, ()) == (
        True,
        f"worst of 1: {worst:.1f} s to the replacement Ready, {30 - worst:.1f} s under 30 s",
    )
    none = replace(record, recoveries=())
    assert judge(expectation("recovery_below: 30"), none, ())[0] is False


def test_replicas_reach_and_return_are_timed_from_the_load() -> None:
    record = record_with_phases()
    # Wants 4 at +100, has 4 at +101: 11 s after the load began at +90.
    held, words = judge(expectation("replicas_reach: {replicas: 4, within: 30}"), record, ())
    assert held
    assert words == "4 replicas 11.0 s after the load began (19.0 s to spare)"
    held, words = judge(expectation("replicas_reach: {replicas: 4, within: 5}"), record, ())
    assert not held
    assert words == "at most 2 replicas within 5 s of the load's start, not 4"
    # Back at 2 at +165, 53 s after the load stopped at +112.
    held, words = judge(expectation("replicas_return: {replicas: 2, within: 60}"), record, ())
    assert held
    assert words == "2 replicas 53.0 s after the load stopped (7.0 s to spare)"
    held, words = judge(expectation("replicas_return: {replicas: 2, within: 40}"), record, ())
    assert not held
    assert words == "still 4 replicas 40 s after the load stopped, not 2"
    # Already there when the load began: nothing was measured.
    late = replace(record, phases=(LoadPhase("burst", 5, START + 120, START + 130),))
    held, words = judge(expectation("replicas_reach: {replicas: 4, within: 30}"), late, ())
    assert not held
    assert words.startswith("already 4 replicas when the load began")


def test_no_failures_during_a_step_counts_the_chats_that_overlap_it() -> None:
    record = make_record()
    window = StepWindow("rollout_restart", 9, START + 200, START + 260)
    overlapping = [
        c for c in record.chats if c.started_at <= START + 260 and c.ended_at >= START + 200
    ]
    failed = [c for c in overlapping if c.outcome is Outcome.ERROR]
    held, words = judge(expectation("no_failures_during: rollout_restart"), record, (window,))
    assert held is (not failed)
    if failed:
        assert words.startswith(f"{len(failed)} failed (")
    assert f"of {len(overlapping)} chats during 60.0 s of rollout_restart" in words
    assert judge(expectation("no_failures_during: rollout_restart"), record, ()) == (
        False,
        "no rollout_restart step ran: nothing to judge",
    )
    quiet = StepWindow("rollout_restart", 9, START + 10_000, START + 10_001)
    assert judge(expectation("no_failures_during: rollout_restart"), record, (quiet,)) == (
        False,
        "no chat overlapped the rollout_restart: nothing was measured",
    )


@pytest.mark.parametrize("kind", ["kill", "evict"])
def test_no_failures_during_a_kill_spans_the_kill_to_its_replacement_ready(kind: str) -> None:
    record = make_record()
    action = "delete" if kind == "kill" else "evict"
    spans = [
        (t.requested_at, t.replacement_ready_at or t.closed_at or record.ended_at)
        for t in record.recoveries
        if t.action == action and t.refused is None
    ]
    during = [
        c for c in record.chats if any(c.started_at <= e and c.ended_at >= s for s, e in spans)
    ]
    held, words = judge(expectation(f"no_failures_during: {kind}"), record, ())
    failed = sum(1 for c in during if c.outcome is Outcome.ERROR)
    assert held is (failed == 0)
    assert f"of {len(during)} chats during" in words


# -- failures_only_on_killed_pod: C1 for a force delete, over recorded samples -----------------

KILLED, SURVIVOR = "llm-backend-7f9c-aaaa", "llm-backend-7f9c-bbbb"
KILL_AT = START + 100


def kill_record(*failures: ChatSample) -> tuple[CockpitRecord, tuple[StepWindow, ...]]:
    """Two pods under load, `KILLED` force-deleted at `KILL_AT` (replacement Ready 20 s later),
    holding 1 running + 2 queued chats in its /metrics 0.2 s before; `failures` added."""
    ok = [
        ChatSample(START + t, "load", Outcome.OK, 200, pod=pod, ttft=0.3, e2e=2.0)
        for t in range(0, 200, 5)
        for pod in (KILLED, SURVIVOR)
    ]
    timeline = RecoveryTimeline(
        KILLED, "delete", KILL_AT, gone_at=KILL_AT + 2, replacement="llm-backend-7f9c-cccc",
        replacement_ready_at=KILL_AT + 20, complete=True, closed_at=KILL_AT + 25,
    )  # fmt: skip
    record = CockpitRecord(
        started_at=START, ended_at=START + 200, context="kube-llm-sandbox-cockpit",
        namespace="kube-llm", backend="service proxy",
        chats=tuple(sorted([*ok, *failures], key=lambda c: c.ended_at)), recoveries=(timeline,),
    )  # fmt: skip
    held = BackendMetrics(KILLED, KILL_AT - 0.2, 1.0, 40.0, 8.0, 40.0, 600.0, queued=2.0)
    window = StepWindow("kill", 12, KILL_AT - 0.25, KILL_AT + 1.0, KILLED, held)
    return record, (window,)


def failed(at: float, pod: str | None, kind: str = "truncated") -> ChatSample:
    """A chat that began at `at` and failed 1.5 s later, served by `pod` (None: unknown)."""
    return ChatSample(at, "load", Outcome.ERROR, None, kind, pod=pod, e2e=1.5)


ONLY_OWN = expectation("failures_only_on_killed_pod: kill")
HELD = "(1 running + 2 queued, sampled 0.2 s before)"


def test_the_killed_pods_own_chats_may_fail_up_to_what_it_held() -> None:
    # Its running stream cut at SIGKILL, two queued chats that lost their connection (no
    # X-Served-By: the headers never came).
    record, windows = kill_record(
        failed(KILL_AT - 1, KILLED), failed(KILL_AT - 0.5, None, "connect"),
        failed(KILL_AT - 0.4, None, "connect"),
    )  # fmt: skip
    assert judge(ONLY_OWN, record, windows) == (
        True,
        f"{KILLED} (line 12): 3 failed (connect, truncated; 2 with no serving pod known) of the "
        f"3 it held at the kill {HELD}, 0 to spare; none on another pod",
    )
    fewer, _ = kill_record(failed(KILL_AT - 1, KILLED))
    assert judge(ONLY_OWN, fewer, windows) == (
        True,
        f"{KILLED} (line 12): 1 failed (truncated) of the 3 it held at the kill {HELD}, "
        "2 to spare; none on another pod",
    )
    # The same run judged by a share of all chats fails, although only the killed pod lost any.
    assert judge(expectation("failures_below_percent: 1"), record, windows)[0] is False


def test_a_failure_on_a_survivor_fails_it_even_within_the_bound() -> None:
    record, windows = kill_record(failed(KILL_AT + 3, SURVIVOR, "http_504"))
    assert judge(ONLY_OWN, record, windows) == (
        False,
        f"{KILLED} (line 12): 0 failed of the 3 it held at the kill {HELD}, 3 to spare; "
        f"1 failed on another pod during the kill ({SURVIVOR}: http_504)",
    )


def test_more_failures_than_the_killed_pod_held_fail_it() -> None:
    lost = [failed(KILL_AT - 1 + i / 10, None, "connect") for i in range(4)]
    record, windows = kill_record(*lost)
    assert judge(ONLY_OWN, record, windows) == (
        False,
        f"{KILLED} (line 12): 4 failed (connect; 4 with no serving pod known) of the 3 it held "
        f"at the kill {HELD}, 1 more than it held; none on another pod",
    )


def test_a_failure_outside_the_kill_fails_it() -> None:
    record, windows = kill_record(failed(KILL_AT - 1, KILLED), failed(START + 30, KILLED))
    held, words = judge(ONLY_OWN, record, windows)
    assert not held
    assert words.endswith("none on another pod; 1 failed outside every kill's window (truncated)")


def test_without_a_sample_of_what_the_pod_held_nothing_may_fail() -> None:
    record, (window,) = kill_record(failed(KILL_AT - 1, KILLED))
    unsampled = (replace(window, pod_metrics=None),)
    assert judge(ONLY_OWN, record, unsampled) == (
        False,
        f"{KILLED} (line 12): 1 failed (truncated); no /metrics sample of it before the kill, "
        "so 0 may fail; none on another pod",
    )
    metrics = window.pod_metrics
    assert metrics is not None
    no_queue = (replace(window, pod_metrics=replace(metrics, queued=None)),)
    held, words = judge(ONLY_OWN, record, no_queue)
    assert held is True
    assert "of the 1 it held at the kill (1 running + 0 queued, queue depth not reported" in words
    clean, _ = kill_record()
    assert judge(ONLY_OWN, clean, ()) == (False, "no kill step took a pod: nothing to judge")
    assert judge(expectation("failures_only_on_killed_pod: evict"), clean, (window,))[0] is False
