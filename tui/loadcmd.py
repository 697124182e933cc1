"""`kube-llm load`: the cockpit's load engine without a screen, then the table and the report.

A `LoadPlan` is one load phase: a burst (users x chats each), sustained users for a duration
(closed loop), or a rate of new chats for a duration (open loop). `run_phase` runs it on a
session and returns the `LoadPhase` it was; `load_table` and `load_summary` are what the
command prints at the end (text for people, JSON for machines), both from `tui.figures`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.figures import ChatFigures, CockpitRecord, LoadPhase, Percentiles, figures
from tui.load import LoadEngine, LoadError
from tui.prompts import PROMPTS
from tui.report import NOT_STREAMED
from tui.session import Session


@dataclass(frozen=True)
class LoadPlan:
    """One load phase: `duration` None is a burst of `users` x `chats_per_user`; with a
    `duration`, sustained users (or, with `rate`, that many new chats a second)."""

    users: int = 10
    chats_per_user: int = 3
    duration: float | None = None
    rate: float | None = None
    label: str = ""

    @property
    def kind(self) -> str:
        """`burst`, `sustained` or `rate`."""
        if self.rate is not None:
            return "rate"
        return "burst" if self.duration is None else "sustained"

    def check(self) -> None:
        """`LoadError` in words when the plan cannot run."""
        if self.rate is not None and self.duration is None:
            raise LoadError("rate load needs a duration")
        if self.duration is not None and not self.duration > 0:
            raise LoadError(f"the duration must be positive, not {self.duration!r}")

    def describe(self) -> str:
        """The plan in words."""
        if self.kind == "burst":
            return f"burst: {self.users} users x {self.chats_per_user} chats"
        if self.kind == "rate":
            return f"rate: {self.rate:g} new chats/s for {self.duration:g} s (<= {self.users} open)"
        return f"sustained: {self.users} users chatting back to back for {self.duration:g} s"


def read_prompts(path: Path) -> tuple[str, ...]:
    """A prompt set: one prompt a line, blank lines and `#` comments skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LoadError(f"cannot read the prompts in {path}: {error}") from None
    prompts = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    if not prompts:
        raise LoadError(f"{path} holds no prompt (one a line)")
    return prompts


def use_prompts(
    session: Session, prompts: Sequence[str] | None, max_tokens: int, *, stream: bool = True
) -> None:
    """Give the session a load engine with this prompt set (None: the built-in one, which the
    cockpit's engine has) and streaming on or off; its samples go where the session's own
    engine sends them."""
    # The session's sample handler is what its own engine reports to: recorder and tracker.
    session.load = LoadEngine(
        session.gateway,
        session._on_sample,
        prompts=PROMPTS if prompts is None else tuple(prompts),
        max_tokens=max_tokens,
        stream=stream,
    )


async def run_phase(
    session: Session, plan: LoadPlan, clock: Callable[[], float] = time.time
) -> LoadPhase:
    """Run `plan` on the session's load engine until it ends; the phase it was."""
    plan.check()
    started = clock()
    engine = session.load
    if plan.kind == "burst":
        await engine.burst(plan.users, plan.chats_per_user)
    elif plan.kind == "rate":
        assert plan.rate is not None
        assert plan.duration is not None
        await engine.run_rate(plan.rate, plan.duration)
    else:
        assert plan.duration is not None
        await engine.run_sustained(plan.users, plan.duration)
    return LoadPhase(plan.kind, plan.users, started, clock(), plan.label or plan.describe())


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
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def load_summary(record: CockpitRecord, report: Path | None) -> dict[str, Any]:
    """The end-of-run figures as JSON values, for machines (`--json`)."""
    from tui.reportjson import record_json

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
    "LoadPlan",
    "load_summary",
    "load_table",
    "progress_text",
    "read_prompts",
    "run_phase",
    "use_prompts",
    "wait_quietly",
]
