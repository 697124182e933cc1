"""A load phase on a session: a burst (users x chats each), sustained users for a duration
(closed loop), or a rate of new chats for a duration (open loop). `run_phase` runs a `LoadPlan`
on a session and returns the `LoadPhase` it was; `load` and `scenario run` both use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tui.core.figures import LoadPhase
from tui.services.load import LoadEngine, LoadError
from tui.services.prompts import PROMPTS
from tui.services.session import Session


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
