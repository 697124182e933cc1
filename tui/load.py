"""The load engine, the health prober and the per-pod metrics poller.

Nothing here knows about a UI: the cockpit runs these in Textual async workers, and
`kube-llm load` runs them headless under `asyncio.run`. Every sample goes to a callback as it
happens. Load is bounded (T5): users, chats per burst, and how long a burst or sustained load
may run are capped by `LoadLimits`, and the engine only talks to the gateway it was given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tui.gateway import GatewayError
from tui.model import BackendMetrics, ChatSample, HealthSample, Outcome
from tui.prompts import PROMPTS, prompt_for

__all__ = [
    "GatewayClient",
    "HealthProber",
    "LoadEngine",
    "LoadError",
    "LoadLimits",
    "LoadStatus",
    "PodMetricsPoller",
]

# After a failed chat, a sustained user waits before its next one (doubling up to the cap), so
# a dead gateway is not hammered by a tight loop of refused connections.
_ERROR_BACKOFF_START = 0.25
_ERROR_BACKOFF_CAP = 5.0


class GatewayClient(Protocol):
    """What the load engine, prober and poller use of `tui.gateway.Gateway` (a test or the
    cockpit's scripted gateway may stand in with the same shape)."""

    async def chat(
        self, messages: Sequence[dict[str, str]], *, max_tokens: int, origin: str
    ) -> ChatSample:
        """One streamed chat; a failed one is a sample too."""
        ...

    async def health(self) -> HealthSample:
        """One timed `/healthz` through the Service."""
        ...

    async def pod_metrics(self, pod: str) -> BackendMetrics:
        """A pod's gateway counters; a failure raises `GatewayError`."""
        ...


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
    """Sustained load stops by itself after this long (10 minutes unless configured)."""
    max_retries_after_429: int = 5
    max_retry_wait_seconds: float = 30.0
    """A longer `Retry-After` is cut to this; a 429 without one waits `default_retry_wait`."""
    default_retry_wait_seconds: float = 1.0

    def __post_init__(self) -> None:
        """Refuse limits that would not bound anything."""
        for name in ("max_users", "max_chats_per_user", "max_burst_chats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("max_burst_seconds", "max_sustained_seconds", "max_retry_wait_seconds"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a positive number of seconds")
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
    in_flight: int = 0
    ok: int = 0
    shed: int = 0
    """429s, each one counted (also the ones retried)."""
    errors: int = 0
    retries_after_429: int = 0


class LoadEngine:
    """Simulated users chatting with the gateway: bursts and sustained load.

    Each finished chat and each 429 goes to `on_sample` (a 429 is a `SHED` sample; the chat is
    retried after its `Retry-After`, at most `limits.max_retries_after_429` times, and the final
    sample carries the count in `retries_after_429`). Times in a sample are those of its own
    attempt, so waits for a retry are not in its TTFT or end to end.
    """

    def __init__(
        self,
        gateway: GatewayClient,
        on_sample: Callable[[ChatSample], None],
        prompts: tuple[str, ...] = PROMPTS,
        max_tokens: int = 64,
        limits: LoadLimits | None = None,
    ) -> None:
        """Generate load against `gateway`, reporting every sample to `on_sample`."""
        if not prompts:
            raise LoadError("the prompt set is empty")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise LoadError(f"max_tokens must be a positive integer, not {max_tokens!r}")
        self.gateway = gateway
        self.on_sample = on_sample
        self.prompts = prompts
        self.max_tokens = max_tokens
        self.limits = limits or LoadLimits()
        self._burst_tasks: set[asyncio.Task[None]] = set()
        self._burst_running = False
        self._burst_done = 0
        self._burst_total = 0
        self._sustained: dict[int, asyncio.Task[None]] = {}
        self._sustained_timer: asyncio.Task[None] | None = None
        self._sustained_ends_at: float | None = None
        self._in_flight = 0
        self._ok = 0
        self._shed = 0
        self._errors = 0
        self._retries = 0
        self._failures: list[BaseException] = []

    @property
    def status(self) -> LoadStatus:
        """A snapshot of what is running and what came of it so far."""
        return LoadStatus(
            burst_running=self._burst_running,
            burst_done=self._burst_done,
            burst_total=self._burst_total,
            sustained_users=len(self._sustained),
            sustained_ends_at=self._sustained_ends_at if self._sustained else None,
            in_flight=self._in_flight,
            ok=self._ok,
            shed=self._shed,
            errors=self._errors,
            retries_after_429=self._retries,
        )

    @property
    def running(self) -> bool:
        """Whether any burst or sustained user is running."""
        return self._burst_running or bool(self._sustained)

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
        cap = self.limits.max_sustained_seconds
        if duration is None:
            duration = cap
        if not 0 < duration <= cap:
            raise LoadError(f"sustained load lasts more than 0 and at most {cap:g} s")
        for index in sorted(self._sustained)[users:]:
            self._sustained.pop(index).cancel()
        for index in range(users):
            if index not in self._sustained:
                task = asyncio.create_task(self._sustained_user(index))
                task.add_done_callback(self._sustained_user_ended)
                self._sustained[index] = task
        if self._sustained_timer is not None:
            self._sustained_timer.cancel()
        self._sustained_ends_at = time.time() + duration
        self._sustained_timer = asyncio.create_task(self._expire(duration))

    def _sustained_user_ended(self, task: asyncio.Task[None]) -> None:
        for index, running in list(self._sustained.items()):
            if running is task:
                del self._sustained[index]
        if not task.cancelled() and task.exception() is not None:
            # Kept for stop_sustained() to raise: a bug (in on_sample, say) is not swallowed.
            self._failures.append(task.exception())  # type: ignore[arg-type]

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
        tasks = list(self._sustained.values())
        if timer is not None:
            tasks.append(timer)
        self._sustained.clear()
        self._sustained_ends_at = None
        await _cancel_all(tasks)
        failures, self._failures = self._failures, []
        if failures:
            raise failures[0]

    async def stop(self) -> None:
        """Stop everything (on quit): bursts and sustained users, their chats closed."""
        await _cancel_all(list(self._burst_tasks))
        await self.stop_sustained()

    async def _one_chat(self, user: int, turn: int) -> ChatSample:
        """One user's chat, retried after 429s within the limits; its final sample."""
        limits = self.limits
        messages = [{"role": "user", "content": prompt_for(user, turn, self.prompts)}]
        retries = 0
        while True:
            self._in_flight += 1
            try:
                sample = await self.gateway.chat(
                    messages, max_tokens=self.max_tokens, origin="load"
                )
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

    def _report(self, sample: ChatSample) -> None:
        if sample.outcome is Outcome.OK:
            self._ok += 1
        elif sample.outcome is Outcome.SHED:
            self._shed += 1
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


class _Ticker:
    """Runs a step every `interval` seconds on a fixed schedule (a slow step skips ticks)."""

    def __init__(self, interval: float) -> None:
        if not interval > 0:
            raise ValueError(f"the interval must be positive, not {interval!r}")
        self.interval = interval

    async def run(self, step: Callable[[], Coroutine[Any, Any, None]], count: int | None) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        done = 0
        while count is None or done < count:
            await step()
            done += 1
            next_tick += self.interval
            now = loop.time()
            if next_tick < now:  # the step overran: keep the rhythm, drop the missed ticks
                next_tick = now + self.interval - (now - next_tick) % self.interval
            await asyncio.sleep(next_tick - now)


class HealthProber:
    """`GET /healthz` through the Service every `interval` seconds, each one a sample."""

    def __init__(
        self,
        gateway: GatewayClient,
        on_sample: Callable[[HealthSample], None],
        interval: float = 1.0,
    ) -> None:
        """Probe `gateway`, reporting to `on_sample`."""
        self.gateway = gateway
        self.on_sample = on_sample
        self._ticker = _Ticker(interval)

    async def run(self, count: int | None = None) -> None:
        """Probe until cancelled (or `count` times)."""

        async def step() -> None:
            self.on_sample(await self.gateway.health())

        await self._ticker.run(step, count)


class PodMetricsPoller:
    """Each pod's `/metrics` every `interval` seconds, through the pod proxy.

    `pods()` names the pods to poll at each tick. A pod that fails (gone, not ready, not
    answering) goes to `on_error(pod, error)`; the others are still reported.
    """

    def __init__(
        self,
        gateway: GatewayClient,
        pods: Callable[[], list[str]],
        on_metrics: Callable[[BackendMetrics], None],
        interval: float = 2.0,
        on_error: Callable[[str, GatewayError], None] | None = None,
        concurrency: int = 8,
    ) -> None:
        """Poll the pods `pods()` names through `gateway`, at most `concurrency` at once."""
        self.gateway = gateway
        self.pods = pods
        self.on_metrics = on_metrics
        self.on_error = on_error
        self.last_errors: dict[str, GatewayError] = {}
        """The latest failure of each pod whose last poll failed."""
        self._ticker = _Ticker(interval)
        self._gate = asyncio.Semaphore(concurrency)

    async def poll_once(self) -> None:
        """Poll every pod once."""
        names = list(dict.fromkeys(self.pods()))
        await asyncio.gather(*(self._poll(name) for name in names))
        for gone in set(self.last_errors) - set(names):
            del self.last_errors[gone]

    async def _poll(self, pod: str) -> None:
        async with self._gate:
            try:
                metrics = await self.gateway.pod_metrics(pod)
            except (GatewayError, ValueError) as error:
                failure = (
                    error if isinstance(error, GatewayError) else GatewayError("pod", str(error))
                )
                self.last_errors[pod] = failure
                if self.on_error is not None:
                    self.on_error(pod, failure)
                return
        self.last_errors.pop(pod, None)
        self.on_metrics(metrics)

    async def run(self, count: int | None = None) -> None:
        """Poll until cancelled (or `count` times)."""
        await self._ticker.run(self.poll_once, count)
