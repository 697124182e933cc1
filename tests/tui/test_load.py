"""The load engine, health prober and pod metrics poller against the real backend on loopback,
in front of the fake OpenAI engine."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence

import pytest

from tests.backend.conftest import running_backend, running_engine
from tests.fakes.engine import EngineConfig
from tests.fakes.serve import free_port
from tests.tui.test_gateway import NO_QUEUE
from tui.core.model import BackendMetrics, ChatSample, HealthSample, Outcome
from tui.gateway.client import Gateway
from tui.gateway.target import GatewayError, GatewayTarget
from tui.services.load import LoadEngine, LoadError, LoadLimits
from tui.services.probes import HealthProber, PodMetricsPoller
from tui.services.prompts import PROMPTS, prompt_for

HELLO = [{"role": "user", "content": "Hello"}]


async def eventually(
    probe: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float, what: str
) -> float:
    """Poll `probe` until true; the seconds it took. Fails after `timeout`."""
    started = time.monotonic()
    while True:
        result = probe()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"timed out after {timeout} s: {what}"
        await asyncio.sleep(0.02)


def direct(url: str) -> Gateway:
    """A gateway straight at one backend, whose /metrics stand for its pod's."""
    return Gateway(GatewayTarget.direct(url, pod_proxy=url))


def inflight_is(gateway: Gateway, expected: float) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return (await gateway.pod_metrics("test-pod")).inflight == expected

    return probe


async def test_burst_of_10_users_by_3_chats_gives_30_samples_with_their_pod() -> None:
    config = EngineConfig(token_delay=0.01)
    with (
        running_engine(config) as engine,
        running_backend(engine.url, max_inflight=16) as backend,
    ):
        async with direct(backend.url) as gateway:
            samples: list[ChatSample] = []
            load = LoadEngine(gateway, samples.append, max_tokens=12)
            burst = asyncio.create_task(load.burst(users=10, chats_per_user=3))
            peak = 0
            while not burst.done():
                peak = max(peak, load.status.in_flight)
                await asyncio.sleep(0)
            finals = await burst
            status = load.status
    assert len(samples) == 30
    assert list(finals) == samples
    assert all(s.outcome is Outcome.OK for s in samples), [s.error_kind for s in samples]
    assert {s.pod for s in samples} == {"test-pod"}
    assert all(s.origin == "load" and s.output_tokens == 12 for s in samples)
    assert peak == 10  # the users ran at once...
    # ...each sending its own turns: every user's prompts reached the engine.
    sent = Counter(r["messages"][0]["content"] for r in engine.stats.requests)
    assert sent == Counter(prompt_for(u, t) for u in range(10) for t in range(3))
    assert all(r["max_tokens"] == 12 for r in engine.stats.requests)
    assert (status.burst_running, status.burst_done, status.burst_total) == (False, 30, 30)
    assert (status.ok, status.shed, status.errors, status.in_flight) == (30, 0, 0, 0)


async def test_429_is_recorded_as_shed_and_retried_after_retry_after() -> None:
    config = EngineConfig(first_token_delay=0.3)
    with (
        running_engine(config) as engine,
        running_backend(engine.url, max_inflight=1, **NO_QUEUE) as backend,
    ):
        async with direct(backend.url) as gateway:
            samples: list[ChatSample] = []
            load = LoadEngine(gateway, samples.append)
            finals = await load.burst(users=2, chats_per_user=1)
            status = load.status
    assert [s.outcome for s in finals] == [Outcome.OK, Outcome.OK]
    assert sorted(s.retries_after_429 for s in finals) == [0, 1]
    shed = [s for s in samples if s.outcome is Outcome.SHED]
    assert len(shed) == 1
    assert (shed[0].status, shed[0].retry_after, shed[0].retries_after_429) == (429, 1.0, 0)
    retried = next(s for s in finals if s.retries_after_429 == 1)
    # The retry waited the Retry-After (1 s) after the 429.
    assert retried.started_at - shed[0].ended_at >= 1.0
    assert len(samples) == 3
    assert (status.ok, status.shed, status.errors, status.retries_after_429) == (2, 1, 0, 1)
    assert len(engine.stats.requests) == 2


@pytest.mark.serial
async def test_retries_after_429_are_bounded_and_the_wait_is_capped() -> None:
    slow = EngineConfig(first_token_delay=5.0)
    limits = LoadLimits(max_retries_after_429=2, max_retry_wait_seconds=0.1)
    with (
        running_engine(slow) as engine,
        running_backend(engine.url, max_inflight=1, **NO_QUEUE) as backend,
    ):
        async with direct(backend.url) as gateway:
            occupant = asyncio.create_task(gateway.chat(HELLO))  # holds the only slot
            await eventually(inflight_is(gateway, 1), 5, "the slot taken")
            samples: list[ChatSample] = []
            load = LoadEngine(gateway, samples.append, limits=limits)
            started = time.monotonic()
            finals = await load.burst(users=1, chats_per_user=1)
            took = time.monotonic() - started
            occupant.cancel()
    assert [s.outcome for s in samples] == [Outcome.SHED] * 3
    assert [s.retries_after_429 for s in samples] == [0, 1, 2]
    assert finals == (samples[-1],)
    assert load.status.shed == 3
    assert load.status.retries_after_429 == 2
    assert took < 1.0  # two waits of 0.1 s, not of the 1 s the gateway asked for


async def test_limits_are_enforced() -> None:
    async with Gateway(GatewayTarget.direct("http://127.0.0.1:9"), model="m") as gateway:
        load = LoadEngine(gateway, lambda _: None, limits=LoadLimits(max_burst_chats=20))
        with pytest.raises(LoadError, match="users must be within 1 and 64"):
            await load.burst(users=65)
        with pytest.raises(LoadError, match="users must be within"):
            await load.burst(users=0)
        with pytest.raises(LoadError, match="chats per user"):
            await load.burst(users=1, chats_per_user=101)
        with pytest.raises(LoadError, match="more than the 20 allowed"):
            await load.burst(users=7, chats_per_user=3)
        with pytest.raises(LoadError, match="users must be within"):
            load.start_sustained(100)
        with pytest.raises(LoadError, match="at most 600 s"):
            load.start_sustained(2, duration=601)
        assert not load.running
    with pytest.raises(LoadError, match="prompt set is empty"):
        LoadEngine(gateway, lambda _: None, prompts=())
    with pytest.raises(LoadError, match="max_tokens"):
        LoadEngine(gateway, lambda _: None, max_tokens=0)
    with pytest.raises(ValueError, match="max_users"):
        LoadLimits(max_users=0)
    with pytest.raises(ValueError, match="max_sustained_seconds"):
        LoadLimits(max_sustained_seconds=float("inf"))


async def test_one_burst_at_a_time() -> None:
    config = EngineConfig(first_token_delay=0.5)
    with running_engine(config) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            load = LoadEngine(gateway, lambda _: None)
            first = asyncio.create_task(load.burst(users=1, chats_per_user=1))
            await eventually(lambda: load.status.burst_running, 2, "the burst started")
            with pytest.raises(LoadError, match=r"already running \(0/1 done\)"):
                await load.burst(users=1, chats_per_user=1)
            assert len(await first) == 1


@pytest.mark.serial
async def test_sustained_load_stops_itself_at_the_duration_cap() -> None:
    config = EngineConfig(token_delay=0.01)
    with running_engine(config) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            samples: list[ChatSample] = []
            load = LoadEngine(gateway, samples.append, limits=LoadLimits(max_sustained_seconds=0.6))
            started = time.time()
            load.start_sustained(3)
            status = load.status
            assert status.sustained_users == 3
            assert status.sustained_ends_at is not None
            assert status.sustained_ends_at == pytest.approx(started + 0.6, abs=0.1)
            await eventually(lambda: not load.running, 5, "the sustained load to stop by itself")
            stopped_after = time.time() - started
            count = len(samples)
            await asyncio.sleep(0.3)
            assert len(samples) == count  # nothing more after it stopped
            await eventually(inflight_is(gateway, 0), 2, "the backend idle")
    assert 0.6 <= stopped_after < 1.5
    ok = [s for s in samples if s.outcome is Outcome.OK]
    cancelled = [s for s in samples if s.outcome is Outcome.CANCELLED]
    assert len(ok) >= 3
    # The rest are the chats open when the time ran out: at most one per user, closed by it.
    assert len(ok) + len(cancelled) == count
    assert len(cancelled) <= 3
    assert all(s.ended_at <= started + stopped_after + 0.1 for s in cancelled)
    assert load.status.sustained_users == 0
    assert load.status.sustained_ends_at is None


async def test_sustained_users_can_be_changed_and_stopped() -> None:
    config = EngineConfig(token_delay=0.05)
    with running_engine(config) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            load = LoadEngine(gateway, lambda _: None, max_tokens=4)
            load.start_sustained(4, duration=30)
            await eventually(inflight_is(gateway, 4), 5, "4 users chatting")
            load.start_sustained(2, duration=30)
            assert load.status.sustained_users == 2
            await eventually(inflight_is(gateway, 2), 5, "2 users chatting")
            await load.stop_sustained()
            assert load.status.sustained_users == 0
            assert not load.running
            await eventually(inflight_is(gateway, 0), 2, "the backend idle")


async def test_stop_cancels_in_flight_chats_promptly() -> None:
    config = EngineConfig(token_delay=0.2, tokens=200)
    with running_engine(config) as engine, running_backend(engine.url, max_inflight=8) as backend:
        async with direct(backend.url) as gateway:
            samples: list[ChatSample] = []
            load = LoadEngine(gateway, samples.append, max_tokens=200)
            load.start_sustained(2)
            load.start_rate(0.1, duration=60)  # its first chat starts at once
            burst = asyncio.create_task(load.burst(users=2, chats_per_user=5))
            await eventually(inflight_is(gateway, 5), 5, "5 chats streaming")
            assert load.status.in_flight == 5
            pressed = time.monotonic()
            await load.stop()
            stopped_in = time.monotonic() - pressed
            finals = await asyncio.wait_for(burst, 1)
            freed_in = await eventually(inflight_is(gateway, 0), 2, "the backend's slots freed")
        await eventually(lambda: engine.stats.disconnected_streams == 5, 2, "streams closed")
    assert stopped_in < 0.5
    assert freed_in < 1.0
    assert finals == ()
    # Each chat closed by the stop is a sample, cancelled (not failed), with what it had got.
    assert len(samples) == 5
    assert {(s.outcome, s.error_kind) for s in samples} == {(Outcome.CANCELLED, "cancelled")}
    # Each keeps what it had got: a first token and what came after it, or nothing yet (the
    # stop came before the backend's first token).
    assert all(s.status in (200, None) for s in samples)
    for sample in samples:
        if sample.ttft is None:
            assert (sample.output_tokens, sample.gaps) == (0, ())
        else:
            assert sample.output_tokens == len(sample.gaps) + 1
            assert sample.e2e is not None
            assert sample.e2e >= sample.ttft
    status = load.status
    assert (status.ok, status.errors, status.cancelled) == (0, 0, 5)
    assert (status.in_flight, status.sustained_users, status.burst_running) == (0, 0, False)
    assert status.rate_per_second is None
    assert not load.running


class _Watched:
    """The real gateway, noting when any reply's text begins (the load engine passes no
    `on_text` of its own)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.text = asyncio.Event()

    async def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        max_tokens: int,
        origin: str,
        on_text: Callable[[str], None] | None = None,
        stop: asyncio.Event | None = None,
        stream: bool = True,
    ) -> ChatSample:
        return await self.gateway.chat(
            messages,
            max_tokens=max_tokens,
            origin=origin,
            on_text=lambda _: self.text.set(),
            stop=stop,
            stream=stream,
        )

    async def health(self) -> HealthSample:
        return await self.gateway.health()

    async def pod_metrics(self, pod: str) -> BackendMetrics:
        return await self.gateway.pod_metrics(pod)

    async def aclose(self) -> None:
        await self.gateway.aclose()


async def test_a_chat_stopped_mid_reply_keeps_its_ttft_and_tokens() -> None:
    config = EngineConfig(token_delay=0.1, tokens=100)
    with running_engine(config) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            watched = _Watched(gateway)
            samples: list[ChatSample] = []
            load = LoadEngine(watched, samples.append, max_tokens=100)
            load.start_sustained(1, duration=30)
            await asyncio.wait_for(watched.text.wait(), 5)
            await asyncio.sleep(0.35)  # a few more tokens
            await load.stop()
            await eventually(inflight_is(gateway, 0), 2, "the backend's slot freed")
    (sample,) = samples
    assert (sample.outcome, sample.error_kind, sample.status, sample.pod) == (
        Outcome.CANCELLED,
        "cancelled",
        200,
        "test-pod",
    )
    assert sample.ttft is not None
    assert sample.e2e is not None
    assert 3 <= sample.output_tokens < 100
    assert sample.output_tokens == len(sample.gaps) + 1
    assert not sample.tokens_from_usage  # the usage chunk comes at the end, which never came
    assert sample.e2e >= sample.ttft + sum(sample.gaps)
    assert (load.status.ok, load.status.errors, load.status.cancelled) == (0, 0, 1)


async def test_an_unreachable_gateway_is_not_hammered() -> None:
    # Sustained users back off after failures instead of spinning on refused connections.
    nothing = GatewayTarget.direct(f"http://127.0.0.1:{free_port()}")
    async with Gateway(nothing, model="m") as gateway:
        samples: list[ChatSample] = []
        load = LoadEngine(gateway, samples.append)
        load.start_sustained(2)
        await asyncio.sleep(1.0)
        await load.stop()
    assert samples
    assert all(s.error_kind == "connect" for s in samples)
    # 2 users, backoff 0.25 + 0.5 s: at most 3 chats each in one second.
    assert len(samples) <= 6


@pytest.mark.serial
async def test_health_prober_samples_at_its_interval() -> None:
    with running_engine(EngineConfig()) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            samples: list[HealthSample] = []
            started = time.monotonic()
            await HealthProber(gateway, samples.append, interval=0.25).run(count=4)
            took = time.monotonic() - started
    assert len(samples) == 4
    assert 0.75 <= took < 1.0  # three intervals; no wait after the last probe
    assert all(s.ok and s.pod == "test-pod" for s in samples)
    # A fixed schedule: probe k starts no earlier than k intervals after the first (a late
    # probe does not push the later ones back).
    offsets = [s.at - samples[0].at for s in samples]
    assert all(offset >= k * 0.25 - 0.005 for k, offset in enumerate(offsets)), offsets


async def test_pod_metrics_poller_reports_each_pod_and_tolerates_failures() -> None:
    with running_engine(EngineConfig()) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            metrics: list[BackendMetrics] = []
            errors: list[tuple[str, GatewayError]] = []
            poller = PodMetricsPoller(
                gateway,
                lambda: ["test-pod", "Not_A_Pod"],
                metrics.append,
                interval=0.05,
                on_error=lambda pod, error: errors.append((pod, error)),
            )
            await poller.run(count=2)
    assert [m.pod for m in metrics] == ["test-pod", "test-pod"]
    assert [pod for pod, _ in errors] == ["Not_A_Pod", "Not_A_Pod"]
    assert "not a valid Kubernetes name" in str(errors[0][1])
    assert set(poller.last_errors) == {"Not_A_Pod"}


def test_prompts_are_varied_and_spread_over_users() -> None:
    assert len(set(PROMPTS)) == len(PROMPTS) >= 20
    assert all(0 < len(p) <= 80 for p in PROMPTS)
    firsts = {prompt_for(user, 0) for user in range(10)}
    assert len(firsts) == 10
    with pytest.raises(ValueError, match="empty"):
        prompt_for(0, 0, ())


async def test_rate_load_starts_chats_on_schedule() -> None:
    config = EngineConfig(token_delay=0.01)
    with running_engine(config) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            samples: list[ChatSample] = []
            load = LoadEngine(gateway, samples.append, max_tokens=4)
            started = time.time()
            task = asyncio.create_task(load.run_rate(20, duration=1.0))
            await eventually(lambda: load.status.rate_per_second == 20.0, 2, "rate load running")
            await task
            status = load.status
    # Arrivals at 0, 0.05 ... 0.95 s: twenty, each a new user with its own first prompt.
    assert len(samples) == 20
    assert all(s.outcome is Outcome.OK for s in samples)
    starts = sorted(s.started_at - started for s in samples)
    assert starts[-1] - starts[0] >= 0.9
    assert Counter(r["messages"][0]["content"] for r in engine.stats.requests) == Counter(
        prompt_for(n, 0) for n in range(20)
    )
    assert (status.rate_per_second, status.rate_ends_at, load.running) == (None, None, False)


async def test_rate_load_is_bounded_by_the_user_cap() -> None:
    config = EngineConfig(first_token_delay=0.3)
    limits = LoadLimits(max_users=2, max_rate_per_second=10)
    with running_engine(config) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            samples: list[ChatSample] = []
            load = LoadEngine(gateway, samples.append, limits=limits)
            with pytest.raises(LoadError, match="at most 10/s"):
                load.start_rate(11)
            started = time.monotonic()
            task = asyncio.create_task(load.run_rate(10, duration=0.4))
            peak = 0
            while not task.done():
                peak = max(peak, load.status.in_flight)
                await asyncio.sleep(0.01)
            await task
            took = time.monotonic() - started
    assert len(samples) == 4  # due at 0, 0.1, 0.2, 0.3 s
    assert peak == 2
    assert took >= 0.6  # two at a time, 0.3 s each


@pytest.mark.serial
async def test_run_sustained_returns_when_its_time_is_up() -> None:
    config = EngineConfig(token_delay=0.01)
    with running_engine(config) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            samples: list[ChatSample] = []
            load = LoadEngine(gateway, samples.append, max_tokens=4)
            started = time.monotonic()
            await load.run_sustained(2, duration=0.5)
            took = time.monotonic() - started
    assert 0.5 <= took < 1.5
    assert samples
    assert not load.running


async def test_all_load_together_stays_within_the_user_cap() -> None:
    config = EngineConfig(first_token_delay=0.3)
    limits = LoadLimits(max_users=3)
    with running_engine(config) as engine, running_backend(engine.url, max_inflight=8) as backend:
        async with direct(backend.url) as gateway:
            samples: list[ChatSample] = []
            load = LoadEngine(gateway, samples.append, limits=limits)
            load.start_sustained(3, duration=30)
            burst = asyncio.create_task(load.burst(users=3, chats_per_user=1))
            peak = 0
            while not burst.done():
                peak = max(peak, load.status.in_flight)
                await asyncio.sleep(0.01)
            await load.stop()
    assert peak == 3
    assert len(await burst) == 3
    # The sustained users' chats open at the stop are cancelled; nothing failed or was shed.
    outcomes = Counter(s.outcome for s in samples)
    assert set(outcomes) <= {Outcome.OK, Outcome.CANCELLED}
    assert outcomes[Outcome.CANCELLED] <= 3
