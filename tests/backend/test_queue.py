"""S4, S5, S6, S10, C1, C4 (docs/reliability.md) for the bounded FIFO wait queue past
MAX_INFLIGHT: order, bounds, leaving, probes, and the drain that serves what was queued."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.backend.conftest import (
    CHAT,
    Backend,
    assert_openai_error,
    backend_process,
    chat_body,
    content_of,
    running_backend,
    running_engine,
    sse_events,
)
from tests.backend.test_streaming import metric, open_streams
from tests.fakes.engine import EngineConfig

SLOW = EngineConfig(token_delay=0.2, tokens=40)


async def wait_until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await anyio.sleep(0.01)


def queued(backend: Backend) -> int:
    """Chats waiting in the backend's queue."""
    count: int = backend.app.state.gate.queued
    return count


@asynccontextmanager
async def queued_chat(
    client: httpx2.AsyncClient, backend: Backend, text: str, results: dict[str, int]
) -> AsyncIterator[anyio.CancelScope]:
    """Send one chat that will queue; wait until it has; yield a scope that cancels it."""
    before = queued(backend)
    async with anyio.create_task_group() as group:

        async def send() -> None:
            response = await client.post(CHAT, json=chat_body(text), timeout=30)
            results[text] = response.status_code

        group.start_soon(send)
        await wait_until(lambda: queued(backend) > before, 5, f"{text} is queued")
        yield group.cancel_scope


async def test_past_max_inflight_chats_wait_and_are_served_in_arrival_order() -> None:
    config = EngineConfig(token_delay=0.03, tokens=8)
    with (
        running_engine(config) as engine,
        running_backend(engine.url, max_inflight=1, max_queue=3, queue_timeout=20) as backend,
    ):
        results: dict[str, int] = {}
        async with httpx2.AsyncClient(base_url=backend.url, timeout=30) as client:
            async with anyio.create_task_group() as group:

                async def send(text: str) -> None:
                    response = await client.post(CHAT, json=chat_body(text))
                    results[text] = response.status_code

                for index in range(4):
                    group.start_soon(send, f"chat-{index}")

                    # Each arrives once the one before is running or queued: a known order.
                    def admitted_or_queued(n: int = index) -> bool:
                        return len(engine.stats.requests) + queued(backend) > n

                    await wait_until(admitted_or_queued, 5, f"chat-{index} admitted or queued")
                assert queued(backend) == 3
            metrics = (await client.get("/metrics")).text
    assert results == {f"chat-{i}": 200 for i in range(4)}
    order = [r["messages"][0]["content"] for r in engine.stats.requests]
    assert order == [f"chat-{i}" for i in range(4)]
    assert metric(metrics, "kube_llm_queue_wait_seconds_count") == 3
    assert metric(metrics, "kube_llm_queue_depth") == 0
    assert 'kube_llm_rejected_total{reason="busy"}' not in metrics


@pytest.mark.serial
async def test_a_full_queue_is_429_at_once_without_engine_call() -> None:
    with (
        running_engine(SLOW) as engine,
        running_backend(engine.url, max_inflight=1, max_queue=1) as backend,
    ):
        results: dict[str, int] = {}
        async with (
            httpx2.AsyncClient(base_url=backend.url, timeout=10) as client,
            open_streams(client, 1),
            queued_chat(client, backend, "waiting", results) as waiting,
        ):
            started = time.perf_counter()
            response = await client.post(CHAT, json=chat_body())
            elapsed = time.perf_counter() - started
            assert response.status_code == 429
            assert response.headers["retry-after"].isdigit()
            error = assert_openai_error(response.json())
            assert (error["code"], error["type"]) == ("busy", "rate_limit_error")
            assert elapsed < 0.1, elapsed
            assert len(engine.stats.requests) == 1
            metrics = (await client.get("/metrics")).text
            assert metric(metrics, 'kube_llm_rejected_total{reason="busy"}') == 1
            assert metric(metrics, "kube_llm_queue_depth") == 1
            waiting.cancel()


async def test_a_wait_past_queue_timeout_is_429() -> None:
    with (
        running_engine(SLOW) as engine,
        running_backend(engine.url, max_inflight=1, max_queue=4, queue_timeout=0.5) as backend,
    ):
        async with (
            httpx2.AsyncClient(base_url=backend.url, timeout=10) as client,
            open_streams(client, 1),
        ):
            started = time.perf_counter()
            response = await client.post(CHAT, json=chat_body(stream=True))
            elapsed = time.perf_counter() - started
            assert response.status_code == 429
            assert response.headers["retry-after"].isdigit()
            assert assert_openai_error(response.json())["code"] == "queue_timeout"
            assert 0.45 < elapsed < 2.0, elapsed
            assert queued(backend) == 0
            assert len(engine.stats.requests) == 1
            metrics = (await client.get("/metrics")).text
    assert metric(metrics, 'kube_llm_rejected_total{reason="queue_timeout"}') == 1
    assert metric(metrics, "kube_llm_queue_wait_seconds_sum") >= 0.45


async def test_a_client_that_leaves_the_queue_frees_its_place() -> None:
    with (
        running_engine(EngineConfig(token_delay=0.1, tokens=10)) as engine,
        running_backend(engine.url, max_inflight=1, max_queue=1, queue_timeout=20) as backend,
    ):
        results: dict[str, int] = {}
        async with httpx2.AsyncClient(base_url=backend.url, timeout=30) as client:
            async with open_streams(client, 1):
                async with queued_chat(client, backend, "leaves", results) as leaving:
                    leaving.cancel()  # the client gives up while queued
                gone = time.perf_counter()
                await wait_until(lambda: queued(backend) == 0, 1, "the place is freed")
                assert time.perf_counter() - gone < 1
                # The freed place takes the next chat, which is then served.
                async with queued_chat(client, backend, "stays", results):
                    pass
            assert results == {"stays": 200}
            metrics = (await client.get("/metrics")).text
    sent = [r["messages"][0]["content"] for r in engine.stats.requests]
    assert "leaves" not in sent
    assert sent[-1] == "stays"
    assert metric(metrics, 'kube_llm_requests_total{code="499"}') == 1
    assert backend.app.state.gate.inflight == 0


async def test_probes_are_never_queued() -> None:
    with (
        running_engine(SLOW) as engine,
        running_backend(
            engine.url, max_inflight=1, max_queue=2, queue_timeout=20, ready_cache_seconds=0
        ) as backend,
    ):
        results: dict[str, int] = {}
        async with (
            httpx2.AsyncClient(base_url=backend.url, timeout=10) as client,
            open_streams(client, 1),
            queued_chat(client, backend, "a", results) as first,
            queued_chat(client, backend, "b", results) as second,
        ):
            for path in ("/healthz", "/readyz", "/metrics", "/v1/models"):
                started = time.perf_counter()
                response = await client.get(path)
                assert response.status_code == 200, (path, response.text)
                assert time.perf_counter() - started < 1.0
            assert queued(backend) == 2
            first.cancel()
            second.cancel()


# SIGTERM on a real process ---------------------------------------------------------------


TWO_SECOND_CHATS = EngineConfig(token_delay=0.1, tokens=20)


@dataclass
class DrainRun:
    """What a SIGTERM with chats queued did: each chat's answer and the moments around it."""

    signalled: float
    streamed: str
    queued: list[tuple[str, float, httpx2.Response]]
    late: httpx2.Response
    engine_order: list[str]


def sigterm_with_chats_queued(
    tmp_path: Path, engine: EngineConfig, waiting: int, shutdown_timeout: float
) -> DrainRun:
    """One chat served to the end (so the pod knows how long a chat takes), then one streaming
    and ``waiting`` more queued behind it (MAX_INFLIGHT 1); SIGTERM; then one more chat."""
    with (
        running_engine(engine) as fake,
        backend_process(
            fake.url,
            tmp_path,
            MAX_INFLIGHT="1",
            MAX_QUEUE=str(waiting),
            SHUTDOWN_TIMEOUT=str(shutdown_timeout),
        ) as proc,
        httpx2.Client(base_url=proc.url, timeout=30) as client,
    ):
        assert client.post(CHAT, json=chat_body("before")).status_code == 200
        streamed: list[str] = []
        answers: list[tuple[str, float, httpx2.Response]] = []

        def stream() -> None:
            body = chat_body("running", stream=True)
            with client.stream("POST", CHAT, json=body) as response:
                streamed.append(response.read().decode())

        def wait_in_queue(text: str) -> None:
            response = httpx2.post(proc.url + CHAT, json=chat_body(text), timeout=30)
            answers.append((text, time.monotonic(), response))

        threads = [threading.Thread(target=stream, daemon=True)]
        threads[0].start()
        deadline = time.monotonic() + 10
        while fake.stats.open_streams < 1:
            assert time.monotonic() < deadline, "the running chat never reached the engine"
            time.sleep(0.01)
        for index in range(waiting):
            thread = threading.Thread(target=wait_in_queue, args=(f"queued-{index}",))
            thread.start()
            threads.append(thread)
            # One at a time, so the queue's order is known.
            while metric(client.get("/metrics").text, "kube_llm_queue_depth") < index + 1:
                assert time.monotonic() < deadline, f"queued-{index} never queued"
                time.sleep(0.01)
        signalled = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        late = httpx2.post(proc.url + CHAT, json=chat_body("late"), timeout=5)
        for thread in threads:
            thread.join(20)
        assert proc.process.wait(20) == 0
    order = [r["messages"][0]["content"] for r in fake.stats.requests]
    return DrainRun(signalled, streamed[0], sorted(answers), late, order)


def assert_complete_stream(raw: str) -> None:
    """A streamed reply that ended normally: content, then [DONE], no error event."""
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    assert len(content_of(events)) > 0
    assert all(json.loads(e).get("choices") for e in events[:-1])


def assert_refused_for_shutdown(response: httpx2.Response) -> None:
    """A 503 that tells the client to go elsewhere at once."""
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert assert_openai_error(response.json())["code"] == "shutting_down"


@pytest.mark.slow(reason="a real backend process waits out its drain")
def test_sigterm_serves_queued_chats_that_can_finish_within_the_drain(tmp_path: Path) -> None:
    """C1/C4: a pod told to stop fails none of the chats it already took. Each chat here takes
    about 2 s and the drain has 10 s: the running chat and both queued ones are served."""
    run = sigterm_with_chats_queued(tmp_path, TWO_SECOND_CHATS, waiting=2, shutdown_timeout=11)
    assert_complete_stream(run.streamed)
    assert [text for text, _, _ in run.queued] == ["queued-0", "queued-1"]
    for text, _, response in run.queued:
        assert response.status_code == 200, (text, response.text)
        assert response.json()["choices"][0]["message"]["content"]
    assert run.engine_order == ["before", "running", "queued-0", "queued-1"]
    # A chat that arrives after SIGTERM was routed by stale endpoints: refused at once.
    assert_refused_for_shutdown(run.late)


@pytest.mark.slow(reason="a real backend process waits out its drain")
def test_sigterm_refuses_at_once_only_the_queued_chats_that_cannot_finish(tmp_path: Path) -> None:
    """Each chat takes about 2 s and the drain has 5 s (SHUTDOWN_TIMEOUT 6 less the 1 s left
    for aborted streams): the running chat and the first queued one fit; the two behind them
    cannot, and get their 503 at once rather than at the end of the drain."""
    run = sigterm_with_chats_queued(tmp_path, TWO_SECOND_CHATS, waiting=3, shutdown_timeout=6)
    assert_complete_stream(run.streamed)
    served, refused = run.queued[:1], run.queued[1:]
    for text, _, response in served:
        assert response.status_code == 200, (text, response.text)
    for _, answered, response in refused:
        assert_refused_for_shutdown(response)
        assert answered - run.signalled < 0.5  # at once, not after the served chats
    assert run.engine_order == ["before", "running", "queued-0"]
    assert_refused_for_shutdown(run.late)
