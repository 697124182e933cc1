"""`kube-llm load`: the cockpit's load engine without a screen, then the table and the report.

The phase itself is `tui.services.phase`; `load_table` and `load_summary` are what the
command prints at the end (text for people, JSON for machines), both from `tui.core.figures`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tui.core.figures import ChatFigures, CockpitRecord, Percentiles, figures
from tui.report.cost import replica_seconds_text
from tui.report.record_json import record_json
from tui.report.writer import NOT_STREAMED
from tui.services.explain import explain, metric_reading
from tui.services.session import Session


def progress_text(session: Session, started: float, now: float) -> str:
    """The live line: requests done, rate, errors, shed, TTFT p50 over the last 10 s."""
    status = session.load.status
    done = status.ok + status.errors
    elapsed = max(now - started, 1e-9)
    ttft = session.recorder.summary(10.0, now).ttft_p50
    ttft_text = "n/a" if ttft is None else f"{ttft * 1000:.0f} ms"
    if not session.load.stream:
        ttft_text = "n/a (not streamed)"
    return (
        f"{elapsed:5.0f} s  done {done}  {done / elapsed:.1f}/s  errors {status.errors}  "
        f"shed {status.shed}  in flight {status.in_flight}  TTFT p50 (10 s) {ttft_text}"
    )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f}"


def _row(name: str, values: Percentiles) -> str:
    return (
        f"  {name:<22}{_ms(values.p50):>9}{_ms(values.p95):>9}{_ms(values.p99):>9}{values.count:>8}"
    )


def _streamed_row(name: str, values: Percentiles, chats: ChatFigures) -> str:
    """A TTFT or gap row; for chats that were all asked with `stream: false`, it says so
    rather than show numbers that cannot exist."""
    if values.count == 0 and chats.unstreamed:
        return f"  {name:<22}{NOT_STREAMED:>27}{values.count:>8}"
    return _row(name, values)


def _requests_per_second(record: CockpitRecord, chats: ChatFigures) -> float | None:
    spans = [p.ended_at - p.started_at for p in record.phases if p.ended_at is not None]
    span = sum(spans) if spans else record.ended_at - record.started_at
    return chats.requests / span if span > 0 else None


def load_table(record: CockpitRecord) -> str:
    """The end-of-run table, for people."""
    numbers = figures(record)
    chats = numbers.chats
    rps = _requests_per_second(record, chats)
    unit = "chunks" if chats.tokens_are_chunks else "tokens"
    lines = [
        f"requests {chats.requests}   ok {chats.ok}   failed {chats.failed}   "
        f"shed (429, retried) {chats.shed}"
        + (f"   cancelled (load stopped) {chats.cancelled}" if chats.cancelled else ""),
    ]
    if chats.failures_by_kind:
        lines.append("failures: " + ", ".join(f"{k} {n}" for k, n in chats.failures_by_kind))
    lines += [
        f"  {'ms':<22}{'p50':>9}{'p95':>9}{'p99':>9}{'count':>8}",
        _streamed_row("time to first token", chats.ttft, chats),
        _streamed_row("inter-token gap", chats.inter_token, chats),
        _row("end to end", chats.end_to_end),
        f"output {unit}/s {_num(chats.tokens_per_second)}   requests/s {_num(rps)}   "
        f"health p50 {_ms(numbers.health.p50)} ms ({numbers.health.checks} checks, "
        f"{numbers.health.failures} failed)",
    ]
    if chats.unstreamed and chats.ttft.count:
        lines.append(f"{chats.unstreamed} chats were not streamed: in end to end and tokens only")
    if chats.served_by:
        total = sum(n for _, n in chats.served_by)
        lines.append(
            "served by: "
            + ", ".join(f"{pod} {n * 100 / total:.0f} %" for pod, n in chats.served_by)
        )
    if record.hpa is not None:
        readings = "; ".join(metric_reading(m, with_target=True) for m in record.hpa.metrics)
        lines.append(f"HPA: {readings or 'no metrics'}: {explain(record.hpa, record.ended_at)}")
    cost = numbers.cost
    if cost is not None and cost.span_seconds > 0:
        ratio = "n/a" if cost.ratio is None else f"{cost.ratio:.2f}"
        lines.append(
            f"cost: {replica_seconds_text(cost.replica_seconds)} over {cost.span_seconds:.0f} s "
            f"(fixed at the maximum {replica_seconds_text(cost.fixed_at_max)}, ratio {ratio}, "
            f"per successful chat {_num(cost.per_chat)})"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def load_summary(record: CockpitRecord, report: Path | None) -> dict[str, Any]:
    """The end-of-run figures as JSON values, for machines (`--json`)."""
    data = record_json(record)
    chats = figures(record).chats
    return {
        "report": None if report is None else str(report),
        "requests_per_second": _requests_per_second(record, chats),
        "figures": data["figures"],
        "phases": data["record"]["phases"],
    }


async def wait_quietly(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it, whatever it raised on the way out."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


__all__ = [
    "load_summary",
    "load_table",
    "progress_text",
    "wait_quietly",
]
