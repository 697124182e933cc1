"""The load engine: bursts, sustained users and rate load on the gateway.

Nothing here knows about a UI: the cockpit runs these in Textual async workers, and
`kube-llm load` runs them headless under `asyncio.run`. Every sample goes to a callback as it
happens. Load is bounded (T5): users, chats per burst, and how long a burst or sustained load
may run are capped by `LoadLimits`, and the engine only talks to the gateway it was given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tui.core.model import ChatSample, Outcome
from tui.gateway.chatcall import ChatCancelled
from tui.gateway.port import GatewayPort
from tui.services.prompts import PROMPTS, prompt_for

__all__ = ["LoadEngine", "LoadError", "LoadLimits", "LoadStatus"]

# After a failed chat, a sustained user waits before its next one (doubling up to the cap), so
# a dead gateway is not hammered by a tight loop of refused connections.
_ERROR_BACKOFF_START = 0.25
_ERROR_BACKOFF_CAP = 5.0


class LoadError(ValueError):
    """Load that cannot start: beyond the limits, or a burst while one is running."""


@dataclass(frozen=True)
class LoadLimits:
    """The bounds of any load the engine will generate."""

    max_users: int = 64
    max_chats_per_user: int = 100
    max_burst_chats: int = 1000
    max_burst_seconds: float = 600.0
    max_sustained_seconds: float = 600.0
    """Sustained and rate load stop by themselves after this long (10 minutes by default)."""
    max_rate_per_second: float = 50.0
    max_retries_after_429: int = 5
    max_retry_wait_seconds: float = 30.0
    """A longer `Retry-After` is cut to this; a 429 without one waits `default_retry_wait`."""
    default_retry_wait_seconds: float = 1.0

    def __post_init__(self) -> None:
        """Refuse limits that would not bound anything."""
        for name in ("max_users", "max_chats_per_user", "max_burst_chats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in (
            "max_burst_seconds",
            "max_sustained_seconds",
            "max_retry_wait_seconds",
            "max_rate_per_second",
        ):
            if not 0 < getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a positive, finite number")
        if self.max_retries_after_429 < 0 or self.default_retry_wait_seconds < 0:
            raise ValueError("retries and waits cannot be negative")


@dataclass(frozen=True)
class LoadStatus:
    """What the load engine is doing, for a status line."""

    burst_running: bool = False
    burst_done: int = 0
    """Chats of the current (or last) burst that have ended, shed ones retried included."""
    burst_total: int = 0
    sustained_users: int = 0
    sustained_ends_at: float | None = None
    """Wall-clock moment the sustained load stops by itself."""
    rate_per_second: float | None = None
    """New chats started each second by rate load, while it runs."""
    rate_ends_at: float | None = None
    in_flight: int = 0
    ok: int = 0
    shed: int = 0
    """429s, each one counted (also the ones retried)."""
    errors: int = 0
    retries_after_429: int = 0
    cancelled: int = 0
    """Chats closed mid-reply because the load was stopped (not failures)."""


class LoadEngine:
    """Simulated users chatting with the gateway: bursts, sustained load, and rate load.

    A burst is N users at once, M chats each; sustained load is N users chatting back to back
    (a closed loop: the next chat waits for the answer); rate load starts chats at a fixed rate
    whatever the answers (an open loop), at most `limits.max_users` open at once. A chat the
    engine itself closes mid-reply (on `stop()`) is a `CANCELLED` sample with what it had got
    so far: the user stopped it, so it is neither a failure nor a success of the service.
    With `stream=False` every chat asks for its reply in one piece (no TTFT, no gaps).

    Each finished chat and each 429 goes to `on_sample` (a 429 is a `SHED` sample; the chat is
    retried after its `Retry-After`, at most `limits.max_retries_after_429` times, and the final
    sample carries the count in `retries_after_429`). Times in a sample are those of its own
    attempt, so waits for a retry are not in its TTFT or end to end.
    """

    def __init__(
        self,
        gateway: GatewayPort,
        on_sample: Callable[[ChatSample], None],
        prompts: tuple[str, ...] = PROMPTS,
        max_tokens: int = 64,
        limits: LoadLimits | None = None,
        *,
        stream: bool = True,
    ) -> None:
        """Generate load against `gateway`, reporting every sample to `on_sample`; with
        `stream=False` the gateway must take `stream` in its `chat` (`tui.gateway.client.Gateway`
        does)."""
        if not prompts:
            raise LoadError("the prompt set is empty")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise LoadError(f"max_tokens must be a positive integer, not {max_tokens!r}")
        self.gateway = gateway
        self.on_sample = on_sample
        self.prompts = prompts
        self.max_tokens = max_tokens
        self.limits = limits or LoadLimits()
        self.stream = stream
        self._burst_tasks: set[asyncio.Task[None]] = set()
        self._burst_running = False
        self._burst_done = 0
        self._burst_total = 0
        self._sustained: dict[int, asyncio.Task[None]] = {}
        self._sustained_timer: asyncio.Task[None] | None = None
        self._sustained_ends_at: float | None = None
        self._sustained_stopped: asyncio.Event | None = None
        self._rate: float | None = None
        self._rate_ends_at: float | None = None
        self._rate_task: asyncio.Task[None] | None = None
        self._rate_chats: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._ok = 0
        self._shed = 0
        self._errors = 0
        self._retries = 0
        self._cancelled = 0
        self._failures: list[BaseException] = []
        # All load together (bursts, sustained and rate) has at most max_users chats open.
        self._open = asyncio.Semaphore(self.limits.max_users)

    @property
    def status(self) -> LoadStatus:
        """A snapshot of what is running and what came of it so far."""
        return LoadStatus(
            burst_running=self._burst_running,
            burst_done=self._burst_done,
            burst_total=self._burst_total,
            sustained_users=len(self._sustained),
            sustained_ends_at=self._sustained_ends_at if self._sustained else None,
            rate_per_second=self._rate,
            rate_ends_at=self._rate_ends_at,
            in_flight=self._in_flight,
            ok=self._ok,
            shed=self._shed,
            errors=self._errors,
            retries_after_429=self._retries,
            cancelled=self._cancelled,
        )

    @property
    def running(self) -> bool:
        """Whether any burst, sustained user or rate load is running."""
        return self._burst_running or bool(self._sustained) or self._rate_task is not None

    def _check_users(self, users: int) -> None:
        if not isinstance(users, int) or not 1 <= users <= self.limits.max_users:
            raise LoadError(f"users must be within 1 and {self.limits.max_users}, not {users!r}")

    async def burst(self, users: int = 10, chats_per_user: int = 3) -> tuple[ChatSample, ...]:
        """`users` users at once, each sending `chats_per_user` chats one after the other.

        Returns the final sample of every chat (429s that were retried are only reported to
        `on_sample`). `stop()` or the burst's time cap ends it early with what was done.
        """
        self._check_users(users)
        limits = self.limits
        if not isinstance(chats_per_user, int) or not 1 <= chats_per_user <= (
            limits.max_chats_per_user
        ):
            raise LoadError(
                f"chats per user must be within 1 and {limits.max_chats_per_user}, "
                f"not {chats_per_user!r}"
            )
        if users * chats_per_user > limits.max_burst_chats:
            raise LoadError(
                f"a burst of {users} x {chats_per_user} chats is more than the "
                f"{limits.max_burst_chats} allowed"
            )
        if self._burst_running:
            raise LoadError(
                f"a burst is already running ({self._burst_done}/{self._burst_total} done)"
            )
        self._burst_running = True
        self._burst_done = 0
        self._burst_total = users * chats_per_user
        results: list[ChatSample] = []
        tasks = [
            asyncio.create_task(self._burst_user(user, chats_per_user, results))
            for user in range(users)
        ]
        self._burst_tasks = set(tasks)
        try:
            async with asyncio.timeout(limits.max_burst_seconds):
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    raise outcome
        except TimeoutError:
            pass  # the time cap: the burst ends with what it did
        finally:
            await _cancel_all(tasks)
            self._burst_tasks = set()
            self._burst_running = False
        return tuple(results)

    async def _burst_user(self, user: int, chats: int, results: list[ChatSample]) -> None:
        for turn in range(chats):
            results.append(await self._one_chat(user, turn))
            self._burst_done += 1

    def start_sustained(self, users: int, duration: float | None = None) -> None:
        """Keep `users` users chatting back to back until stopped, or for `duration` seconds
        (at most `limits.max_sustained_seconds`, the default). Called again, it changes the
        number of users and restarts the clock. Needs a running event loop."""
        self._check_users(users)
        duration = self._check_duration(duration)
        for index in sorted(self._sustained)[users:]:
            self._sustained.pop(index).cancel()
        for index in range(users):
            if index not in self._sustained:
                task = asyncio.create_task(self._sustained_user(index))
                task.add_done_callback(self._sustained_user_ended)
                self._sustained[index] = task
        if self._sustained_timer is not None:
            self._sustained_timer.cancel()
        if self._sustained_stopped is None:
            self._sustained_stopped = asyncio.Event()
        self._sustained_ends_at = time.time() + duration
        self._sustained_timer = asyncio.create_task(self._expire(duration))

    async def run_sustained(self, users: int, duration: float) -> None:
        """Headless: sustained load for `duration` seconds; returns once it has stopped.
        Cancelling this stops the load too."""
        self.start_sustained(users, duration)
        stopped = self._sustained_stopped
        assert stopped is not None
        try:
            await stopped.wait()
        finally:
            if not stopped.is_set():
                await self.stop_sustained()
        self._raise_failures()

    def _check_duration(self, duration: float | None) -> float:
        cap = self.limits.max_sustained_seconds
        if duration is None:
            return cap
        if not 0 < duration <= cap:
            raise LoadError(f"load lasts more than 0 and at most {cap:g} s, not {duration!r}")
        return duration

    def _sustained_user_ended(self, task: asyncio.Task[None]) -> None:
        for index, running in list(self._sustained.items()):
            if running is task:
                del self._sustained[index]
        self._note_failure(task)

    def _note_failure(self, task: asyncio.Task[None]) -> None:
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            # Kept for the stop to raise: a bug (in on_sample, say) is not swallowed.
            self._failures.append(failure)

    def _raise_failures(self) -> None:
        failures, self._failures = self._failures, []
        if failures:
            raise failures[0]

    async def _expire(self, duration: float) -> None:
        await asyncio.sleep(duration)
        self._sustained_timer = None  # this task is ending; stop_sustained must not await it
        await self.stop_sustained()

    async def _sustained_user(self, user: int) -> None:
        turn = 0
        backoff = _ERROR_BACKOFF_START
        while True:
            sample = await self._one_chat(user, turn)
            turn += 1
            if sample.outcome is Outcome.ERROR:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _ERROR_BACKOFF_CAP)
            else:
                backoff = _ERROR_BACKOFF_START

    async def stop_sustained(self) -> None:
        """Stop the sustained users (their open chats are closed) and wait for them."""
        timer, self._sustained_timer = self._sustained_timer, None
        users = list(self._sustained.values())
        self._sustained_ends_at = None
        # The users count as running until their open chats have reported (as cancelled), so
        # no sample arrives after the load says it has stopped.
        await _cancel_all([*users, *([timer] if timer is not None else [])])
        for index, task in list(self._sustained.items()):
            if task in users:
                del self._sustained[index]
        stopped, self._sustained_stopped = self._sustained_stopped, None
        if stopped is not None:
            stopped.set()
        self._raise_failures()

    def start_rate(self, per_second: float, duration: float | None = None) -> None:
        """Start `per_second` new chats each second, whatever the answers, for `duration`
        seconds (at most `limits.max_sustained_seconds`, the default) or until stopped. Each
        chat is a new simulated user; at most `limits.max_users` are open at once, and past
        that new ones wait for a free slot. Needs a running event loop."""
        cap = self.limits.max_rate_per_second
        if not isinstance(per_second, int | float) or not 0 < per_second <= cap:
            raise LoadError(f"the rate must be more than 0 and at most {cap:g}/s")
        duration = self._check_duration(duration)
        if self._rate_task is not None:
            raise LoadError(f"rate load is already running ({self._rate:g}/s)")
        self._rate = float(per_second)
        self._rate_ends_at = time.time() + duration
        self._rate_task = asyncio.create_task(self._arrivals(float(per_second), duration))

    async def _arrivals(self, per_second: float, duration: float) -> None:
        """Start chats on schedule until `duration` ends, then wait for the last ones."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        slots = asyncio.Semaphore(self.limits.max_users)
        number = 0
        try:
            # Arrival n is due at n / rate after the start: a late one does not shift the rest.
            while (due := start + number / per_second) < start + duration:
                await asyncio.sleep(max(0.0, due - loop.time()))
                await slots.acquire()
                task = asyncio.create_task(self._rate_chat(number, slots))
                self._rate_chats.add(task)
                task.add_done_callback(self._rate_chat_ended)
                number += 1
            if self._rate_chats:
                await asyncio.wait(set(self._rate_chats))
        finally:
            self._rate = None
            self._rate_ends_at = None
            if self._rate_task is asyncio.current_task():
                self._rate_task = None

    async def _rate_chat(self, number: int, slots: asyncio.Semaphore) -> None:
        try:
            await self._one_chat(number, 0)
        finally:
            slots.release()

    def _rate_chat_ended(self, task: asyncio.Task[None]) -> None:
        self._rate_chats.discard(task)
        self._note_failure(task)

    async def run_rate(self, per_second: float, duration: float) -> None:
        """Headless: rate load for `duration` seconds; returns when its last chat has ended.
        Cancelling this stops the load too."""
        self.start_rate(per_second, duration)
        task = self._rate_task
        assert task is not None
        try:
            await asyncio.wait({task})
        finally:
            await self.stop_rate()

    async def stop_rate(self) -> None:
        """Stop rate load: no new chats, and the open ones are closed."""
        task = self._rate_task
        # Rate load counts as running until its open chats have reported (as cancelled).
        await _cancel_all([*([task] if task is not None else []), *self._rate_chats])
        if self._rate_task is task:
            self._rate_task = None
        self._raise_failures()

    async def stop(self) -> None:
        """Stop everything (on quit): bursts, sustained users and rate load, chats closed."""
        await _cancel_all(list(self._burst_tasks))
        await self.stop_rate()
        await self.stop_sustained()

    async def _one_chat(self, user: int, turn: int) -> ChatSample:
        """One user's chat, retried after 429s within the limits; its final sample."""
        limits = self.limits
        messages = [{"role": "user", "content": prompt_for(user, turn, self.prompts)}]
        retries = 0
        while True:
            async with self._open:
                self._in_flight += 1
                try:
                    sample = await self._chat(messages)
                except ChatCancelled as cancelled:
                    # Stopped mid-reply: what the user had got so far is a sample too.
                    self._report(dataclasses.replace(cancelled.sample, retries_after_429=retries))
                    raise
                finally:
                    self._in_flight -= 1
            if sample.outcome is Outcome.SHED and retries < limits.max_retries_after_429:
                self._report(dataclasses.replace(sample, retries_after_429=retries))
                wait = sample.retry_after
                if wait is None:
                    wait = limits.default_retry_wait_seconds
                await asyncio.sleep(min(wait, limits.max_retry_wait_seconds))
                retries += 1
                self._retries += 1
                continue
            final = dataclasses.replace(sample, retries_after_429=retries)
            self._report(final)
            return final

    async def _chat(self, messages: list[dict[str, str]]) -> ChatSample:
        return await self.gateway.chat(
            messages, max_tokens=self.max_tokens, origin="load", stream=self.stream
        )

    def _report(self, sample: ChatSample) -> None:
        if sample.outcome is Outcome.OK:
            self._ok += 1
        elif sample.outcome is Outcome.SHED:
            self._shed += 1
        elif sample.outcome is Outcome.CANCELLED:
            self._cancelled += 1
        else:
            self._errors += 1
        self.on_sample(sample)


async def _cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until they have ended (their streams closed)."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
