"""Judging a scenario's expectations on what was recorded: held or not, and by how much.

`judge` is a pure function of the record (its samples, recoveries, replicas and phases) and the
step windows, so a test can judge recorded samples without a cluster.

`failures_only_on_killed_pod` states C1 for a kill precisely (docs/reliability.md): a force
delete (grace 0) has no budget to drain, so the chats running or queued on that pod may fail,
and nothing else. Every failed chat of the run must fall in the window of a kill of that kind
(from the request to the replacement Ready) and be one the killed pod held: not served by
another pod (`X-Served-By`, where the failure has one), and no more of them than the pod held,
running plus queued, in its `/metrics` sampled just before the kill (`StepWindow.pod_metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tui.core.figures import CockpitRecord, figures
from tui.core.model import BackendMetrics, ChatSample, Outcome, RecoveryTimeline
from tui.scenario.spec import Expectation


@dataclass(frozen=True)
class StepWindow:
    """When one step ran: from its start to its end (a rollout: until every pod was replaced)."""

    kind: str
    line: int
    started_at: float
    ended_at: float
    pod: str | None = None
    """The pod an `evict` or `kill` step took, if it took one."""
    pod_metrics: BackendMetrics | None = None
    """That pod's `/metrics` sampled just before the kill (what it held then), if it answered."""


def _below(name: str, value: float | None, limit: float, unit: str = "s") -> tuple[bool, str]:
    if value is None:
        return False, f"no {name} measured"
    scale, fmt = (1000.0, "ms") if unit == "ms" else (1.0, unit)
    shown = f"{name} {value * scale:.3f} {fmt}"
    margin = (limit - value) * scale
    if value < limit:
        return True, f"{shown}, {margin:.3f} {fmt} under the limit"
    return False, f"{shown}, {-margin:.3f} {fmt} over the limit"


def judge(
    expectation: Expectation, record: CockpitRecord, windows: tuple[StepWindow, ...]
) -> tuple[bool, str]:
    """Whether one expectation held on `record`, and the words saying by how much."""
    numbers = figures(record)
    get = expectation.get
    match expectation.kind:
        case "ttft_p95_below":
            return _below("TTFT p95", numbers.chats.ttft.p95, get("seconds"))
        case "e2e_p95_below":
            return _below("end-to-end p95", numbers.chats.end_to_end.p95, get("seconds"))
        case "health_p50_below":
            return _below("health p50", numbers.health.p50, get("seconds"), "ms")
        case "failures_below_percent":
            chats = numbers.chats
            if not chats.requests:
                return False, "no chat was sent"
            share = chats.failed * 100 / chats.requests
            limit = get("percent")
            words = f"{chats.failed} of {chats.requests} chats failed ({share:.2f} %)"
            if share < limit:
                return True, f"{words}, {limit - share:.2f} points under {limit:g} %"
            return False, f"{words}, {share - limit:.2f} points over {limit:g} %"
        case "failures_at_most":
            failed = numbers.chats.failed + numbers.health.failures
            limit = get("count")
            words = (
                f"{numbers.chats.failed} of {numbers.chats.requests} chats and "
                f"{numbers.health.failures} of {numbers.health.checks} health checks failed"
            )
            if failed <= limit:
                return True, f"{words}, {limit - failed} under the allowed {limit}"
            return False, f"{words}, {failed - limit} over the allowed {limit}"
        case "recovery_below":
            return _recovery(record, get("seconds"))
        case "replicas_reach":
            return _replicas_reach(record, get("replicas"), get("within"))
        case "replicas_return":
            return _replicas_return(record, get("replicas"), get("within"))
        case "no_failures_during":
            return _no_failures_during(record, windows, get("step"))
        case "failures_only_on_killed_pod":
            return failures_only_on_killed_pod(record, windows, get("step"))
    raise ValueError(f"unknown expectation {expectation.kind!r}")  # pragma: no cover


def _recovery(record: CockpitRecord, limit: float) -> tuple[bool, str]:
    kills = [t for t in record.recoveries if t.refused is None]
    if not kills:
        return False, "no pod was killed: no recovery to measure"
    times = [t.recovery_seconds for t in kills]
    if any(t is None for t in times):
        missing = sum(1 for t in times if t is None)
        return False, f"{missing} of {len(kills)} kills had no replacement Ready"
    worst = max(t for t in times if t is not None)
    words = f"worst of {len(kills)}: {worst:.1f} s to the replacement Ready"
    if worst < limit:
        return True, f"{words}, {limit - worst:.1f} s under {limit:g} s"
    return False, f"{words}, {worst - limit:.1f} s over {limit:g} s"


def _replicas_reach(record: CockpitRecord, wanted: int, within: float) -> tuple[bool, str]:
    start = min((p.started_at for p in record.phases), default=record.started_at)
    points = sorted(record.replicas, key=lambda p: p.at)
    before = [p for p in points if p.at <= start]
    if before and before[-1].current >= wanted:
        return False, (
            f"already {before[-1].current} replicas when the load began: nothing measured "
            "(wait for the replicas to come down first)"
        )
    reached = next(
        (p for p in points if start <= p.at <= start + within and p.current >= wanted), None
    )
    if reached is not None:
        after = max(0.0, reached.at - start)
        return True, f"{reached.current} replicas {after:.1f} s after the load began " + (
            f"({within - after:.1f} s to spare)"
        )
    seen = [p.current for p in points if start <= p.at <= start + within]
    peak = max([*seen, *(p.current for p in before[-1:])], default=0)
    return False, f"at most {peak} replicas within {within:g} s of the load's start, not {wanted}"


def _replicas_return(record: CockpitRecord, wanted: int, within: float) -> tuple[bool, str]:
    ends = [p.ended_at for p in record.phases if p.ended_at is not None]
    if not ends:
        return False, "no load phase ended"
    stop = max(ends)
    points = sorted(record.replicas, key=lambda p: p.at)
    back = next((p for p in points if stop <= p.at <= stop + within and p.current <= wanted), None)
    if back is None:
        last = [p.current for p in points if p.at <= stop + within]
        now = last[-1] if last else "unknown"
        return False, f"still {now} replicas {within:g} s after the load stopped, not {wanted}"
    after = back.at - stop
    return True, f"{back.current} replicas {after:.1f} s after the load stopped " + (
        f"({within - after:.1f} s to spare)"
    )


def _no_failures_during(
    record: CockpitRecord, windows: tuple[StepWindow, ...], kind: str
) -> tuple[bool, str]:
    spans: list[tuple[float, float]] = []
    if kind in {"kill", "evict"}:
        action = "delete" if kind == "kill" else "evict"
        for timeline in record.recoveries:
            if timeline.action == action and timeline.refused is None:
                end = timeline.replacement_ready_at or timeline.closed_at or record.ended_at
                spans.append((timeline.requested_at, end))
    else:
        spans = [(w.started_at, w.ended_at) for w in windows if w.kind == kind]
    if not spans:
        return False, f"no {kind} step ran: nothing to judge"
    during = [
        c for c in record.chats if any(c.started_at <= e and c.ended_at >= s for s, e in spans)
    ]
    if not during:
        return False, f"no chat overlapped the {kind}: nothing was measured"
    failed = [c for c in during if c.outcome is Outcome.ERROR]
    shed = sum(1 for c in during if c.outcome is Outcome.SHED)
    seconds = sum(e - s for s, e in spans)
    words = f"{len(during)} chats during {seconds:.1f} s of {kind}, {shed} shed (429)"
    if failed:
        kinds = sorted({c.error_kind or "error" for c in failed})
        return False, f"{len(failed)} failed ({', '.join(kinds)}) of {words}"
    return True, f"0 failed of {words}"


def _kill_span(
    record: CockpitRecord, window: StepWindow, action: str
) -> tuple[float, float, RecoveryTimeline | None]:
    """From the kill's request to its replacement Ready (the timeline's close, the record's end
    before that); the step's own window when no timeline matches."""
    for timeline in record.recoveries:
        if (
            (timeline.pod, timeline.action) == (window.pod, action)
            and timeline.refused is None
            and window.started_at <= timeline.requested_at <= window.ended_at
        ):
            end = timeline.replacement_ready_at or timeline.closed_at or record.ended_at
            return timeline.requested_at, end, timeline
    return window.started_at, window.ended_at, None


def _kinds(chats: list[ChatSample]) -> str:
    return ", ".join(sorted({c.error_kind or "error" for c in chats}))


def failures_only_on_killed_pod(
    record: CockpitRecord, windows: tuple[StepWindow, ...], kind: str
) -> tuple[bool, str]:
    """Every failed chat was one a `kind` step's pod held at the kill; see the module doc."""
    action = "delete" if kind == "kill" else "evict"
    kills = [w for w in windows if w.kind == kind and w.pod is not None]
    if not kills:
        return False, f"no {kind} step took a pod: nothing to judge"
    spans = [(w, *_kill_span(record, w, action)) for w in kills]
    own: dict[int, list[ChatSample]] = {i: [] for i in range(len(spans))}
    elsewhere: list[ChatSample] = []
    outside: list[ChatSample] = []
    for chat in (c for c in record.chats if c.outcome is Outcome.ERROR):
        overlapping = [
            i
            for i, (_, start, end, _) in enumerate(spans)
            if start <= chat.ended_at
            if chat.started_at <= end
        ]
        if not overlapping:
            outside.append(chat)
            continue
        mine = [i for i in overlapping if chat.pod is None or chat.pod == spans[i][0].pod]
        if mine:
            own[mine[0]].append(chat)
        else:
            elsewhere.append(chat)
    held = True
    parts: list[str] = []
    for i, (window, _, _, timeline) in enumerate(spans):
        failed = own[i]
        unknown = sum(1 for c in failed if c.pod is None)
        why = _kinds(failed) + (f"; {unknown} with no serving pod known" if unknown else "")
        lost = f"{len(failed)} failed" + (f" ({why})" if failed else "")
        sample = window.pod_metrics
        if sample is None:
            held = held and not failed
            parts.append(
                f"{window.pod} (line {window.line}): {lost}; no /metrics sample of it before "
                "the kill, so 0 may fail"
            )
            continue
        queued = sample.queued or 0.0
        bound = round(sample.inflight + queued)
        before = (timeline.requested_at if timeline else window.started_at) - sample.at
        words = (
            f"{window.pod} (line {window.line}): {lost} of the {bound} it held at the kill "
            f"({sample.inflight:g} running + {queued:g} queued"
            + ("" if sample.queued is not None else ", queue depth not reported")
            + f", sampled {max(before, 0.0):.1f} s before)"
        )
        if len(failed) <= bound:
            parts.append(f"{words}, {bound - len(failed)} to spare")
        else:
            held = False
            parts.append(f"{words}, {len(failed) - bound} more than it held")
    if elsewhere:
        held = False
        pods = ", ".join(sorted({c.pod or "?" for c in elsewhere}))
        parts.append(
            f"{len(elsewhere)} failed on another pod during the {kind} ({pods}: "
            f"{_kinds(elsewhere)})"
        )
    else:
        parts.append("none on another pod")
    if outside:
        held = False
        parts.append(f"{len(outside)} failed outside every {kind}'s window ({_kinds(outside)})")
    return held, "; ".join(parts)


__all__ = ["StepWindow", "failures_only_on_killed_pod", "judge"]
