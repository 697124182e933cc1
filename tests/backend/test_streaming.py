"""S4 to S9 (docs/reliability.md): admission, probes under load, disconnects, engine failures
and deadlines."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import httpx2
import pytest

from tests.backend.conftest import (
    CHAT,
    assert_openai_error,
    chat_body,
    content_of,
    running_backend,
    running_engine,
    sse_events,
)
from tests.fakes.engine import EngineConfig
from tests.fakes.serve import free_port


@asynccontextmanager
async def open_streams(
    client: httpx2.AsyncClient, count: int
) -> AsyncIterator[list[httpx2.Response]]:
    """Open ``count`` streamed chats and read their first bytes, so all are admitted."""
    async with AsyncExitStack() as stack:
        streams = []
        # Keep the byte iterators: a dropped one is finalised, which closes its connection.
        readers = []
        for _ in range(count):
            request = client.build_request("POST", CHAT, json=chat_body(stream=True))
            response = await client.send(request, stream=True)
            stack.push_async_callback(response.aclose)
            assert response.status_code == 200
            reader = response.aiter_raw()
            await anext(reader)
            readers.append(reader)
            streams.append(response)
        yield streams


def metric(text: str, name: str) -> float:
    """Read one sample from a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in metrics")


SLOW = EngineConfig(token_delay=0.2, tokens=40)


# ENGINE_TRANSPORT -------------------------------------------------------------------------

CLIENT_CLASSES = {"aiohttp": "AiohttpEngineClient", "httpx": "HttpxEngineClient"}


def test_chats_relay_on_each_engine_transport(
    transport_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backend.app")
    reply = "one two three four"
    with (
        running_engine(EngineConfig(reply=reply)) as engine,
        running_backend(engine.url, engine_transport=transport_name) as backend,
        httpx2.Client(base_url=backend.url, timeout=10) as client,
    ):
        for _ in range(3):  # later chats ride a kept-alive engine connection
            streamed = client.post(CHAT, json=chat_body(stream=True))
            assert streamed.status_code == 200
            events = sse_events(streamed.text)
            assert events[-1] == "[DONE]"
            assert content_of(events) == reply
        plain = client.post(CHAT, json=chat_body())
        assert plain.json()["choices"][0]["message"]["content"] == reply
        assert len(engine.stats.requests) == 4
        assert engine.stats.finished_streams >= 3
    opened = [r for r in caplog.records if r.name == "backend.app" and r.msg == "engine client"]
    assert len(opened) == 1
    fields = opened[0].fields  # type: ignore[attr-defined]
    assert fields["engine_transport"] == transport_name
    assert fields["client_class"] == CLIENT_CLASSES[transport_name]


# S4 --------------------------------------------------------------------------------------


@pytest.mark.serial
async def test_past_max_inflight_429_at_once_without_engine_call() -> None:
    """With no queue (MAX_QUEUE=0); tests/backend/test_queue.py covers a full queue."""
    with (
        running_engine(SLOW) as engine,
        running_backend(engine.url, max_inflight=2, max_queue=0) as backend,
    ):
        async with (
            httpx2.AsyncClient(base_url=backend.url, timeout=10) as client,
            open_streams(client, 2),
        ):
            assert len(engine.stats.requests) == 2
            for stream in (False, True):
                started = time.perf_counter()
                response = await client.post(CHAT, json=chat_body(stream=stream))
                elapsed = time.perf_counter() - started
                assert response.status_code == 429
                assert response.headers["retry-after"].isdigit()
                assert assert_openai_error(response.json())["type"] == "rate_limit_error"
                assert elapsed < 0.1, elapsed
            assert len(engine.stats.requests) == 2
            metrics = (await client.get("/metrics")).text
            assert metric(metrics, 'kube_llm_rejected_total{reason="busy"}') == 2
            assert metric(metrics, "kube_llm_inflight") == 2


# S5 --------------------------------------------------------------------------------------


async def test_probes_answer_fast_while_max_inflight_chats_stream() -> None:
    with (
        running_engine(SLOW) as engine,
        running_backend(engine.url, max_inflight=3, ready_cache_seconds=0) as backend,
    ):
        async with (
            httpx2.AsyncClient(base_url=backend.url, timeout=10) as client,
            open_streams(client, 3),
        ):
            for _ in range(5):
                for path in ("/healthz", "/readyz"):
                    started = time.perf_counter()
                    response = await client.get(path)
                    assert time.perf_counter() - started < 1.0
                    assert response.status_code == 200, response.text
            assert backend.app.state.gate.inflight == 3


# S6 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("before_first_token", [False, True])
async def test_disconnect_closes_engine_stream_and_frees_slot(
    before_first_token: bool, transport_name: str
) -> None:
    config = EngineConfig(
        token_delay=0.1, tokens=100, first_token_delay=5.0 if before_first_token else 0.0
    )
    with (
        running_engine(config) as engine,
        running_backend(engine.url, engine_transport=transport_name) as backend,
    ):
        gate = backend.app.state.gate
        async with httpx2.AsyncClient(base_url=backend.url, timeout=10) as client:
            request = client.build_request("POST", CHAT, json=chat_body(stream=True))
            if before_first_token:
                # Headers come with the first token, so give up while waiting for them, once
                # the chat has reached the engine (a fixed wait is too short on a busy machine).
                with anyio.move_on_after(10) as waiting:
                    async with anyio.create_task_group() as group:
                        group.start_soon(client.send, request)
                        while not engine.stats.open_streams:
                            await anyio.sleep(0.01)
                        assert gate.inflight == 1
                        group.cancel_scope.cancel()
                assert not waiting.cancelled_caught, "the chat never reached the engine"
            else:
                response = await client.send(request, stream=True)
                reader = response.aiter_raw()
                await anext(reader)
                assert engine.stats.open_streams == 1
                assert gate.inflight == 1
                await response.aclose()
            gone = time.perf_counter()
        while engine.stats.open_streams or gate.inflight:
            assert time.perf_counter() - gone < 1.0, "slot or engine stream still open after 1 s"
            await anyio.sleep(0.02)
        assert engine.stats.disconnected_streams == 1
        metrics = httpx2.get(backend.url + "/metrics").text
        assert metric(metrics, 'kube_llm_requests_total{code="499"}') == 1
        assert metric(metrics, "kube_llm_inflight") == 0


@pytest.mark.slow(reason="three rounds of 40-token replies, 50 ms a token")
async def test_chats_after_a_client_disconnect_ride_sound_connections(transport_name: str) -> None:
    """A client leaves mid-stream, so the engine connection is left half-read; the next
    chats on the same (small) pool must not land on it."""
    reply = " ".join(f"w{i}" for i in range(40))
    config = EngineConfig(token_delay=0.05, reply=reply)
    with (
        running_engine(config) as engine,
        running_backend(engine.url, max_inflight=1, engine_transport=transport_name) as backend,
    ):
        gate = backend.app.state.gate
        async with httpx2.AsyncClient(base_url=backend.url, timeout=10) as client:
            for _ in range(3):
                request = client.build_request("POST", CHAT, json=chat_body(stream=True))
                response = await client.send(request, stream=True)
                await anext(response.aiter_raw())
                await response.aclose()
                deadline = time.monotonic() + 2
                while gate.inflight:
                    assert time.monotonic() < deadline, "the slot was not freed"
                    await anyio.sleep(0.01)
                streamed = await client.post(CHAT, json=chat_body(stream=True))
                assert streamed.status_code == 200
                events = sse_events(streamed.text)
                assert (events[-1], content_of(events)) == ("[DONE]", reply)
                plain = await client.post(CHAT, json=chat_body())
                assert plain.json()["choices"][0]["message"]["content"] == reply
        assert engine.stats.disconnected_streams == 3
        assert len(engine.stats.requests) == 9


# S7 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_refused_engine_is_503_with_retry_after(stream: bool, transport_name: str) -> None:
    engine_url = f"http://127.0.0.1:{free_port()}"
    with running_backend(engine_url, engine_transport=transport_name) as backend:
        response = httpx2.post(backend.url + CHAT, json=chat_body(stream=stream))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert assert_openai_error(response.json())["code"] == "engine_unavailable"


@pytest.mark.parametrize("stream", [False, True])
def test_engine_503_is_503_with_retry_after_and_no_retry(stream: bool) -> None:
    with (
        running_engine(EngineConfig(fail="503")) as engine,
        running_backend(engine.url) as backend,
    ):
        response = httpx2.post(backend.url + CHAT, json=chat_body(stream=stream))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert assert_openai_error(response.json())["code"] == "engine_503"
        assert len(engine.stats.requests) == 1


# S8 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fail", "stream"), [("drip", True), ("hang", True)])
def test_first_token_deadline_fires_on_a_dripping_or_silent_engine(
    fail: str, stream: bool, transport_name: str
) -> None:
    with (
        running_engine(EngineConfig(fail=fail, drip_interval=0.5)) as engine,
        running_backend(
            engine.url,
            first_token_timeout=1.0,
            request_timeout=10,
            engine_read_timeout=30,
            engine_transport=transport_name,
        ) as backend,
    ):
        started = time.perf_counter()
        response = httpx2.post(backend.url + CHAT, json=chat_body(stream=stream), timeout=10)
        elapsed = time.perf_counter() - started
        assert response.status_code == 504
        assert assert_openai_error(response.json())["code"] == "first_token_timeout"
        assert 0.9 < elapsed < 2.5, elapsed
        deadline = time.monotonic() + 1
        while engine.stats.open_streams and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.stats.open_streams == 0


@pytest.mark.parametrize("fail", ["drip", "hang"])
def test_a_plain_chat_has_only_the_total_deadline(fail: str, transport_name: str) -> None:
    """A plain chat's engine call sends nothing before the whole reply: no first token to
    wait for, so the total deadline bounds it, dripping or silent."""
    with (
        running_engine(EngineConfig(fail=fail, drip_interval=0.5)) as engine,
        running_backend(
            engine.url,
            first_token_timeout=0.5,
            request_timeout=1.5,
            engine_read_timeout=30,
            engine_transport=transport_name,
        ) as backend,
    ):
        started = time.perf_counter()
        response = httpx2.post(backend.url + CHAT, json=chat_body(), timeout=10)
        elapsed = time.perf_counter() - started
        assert response.status_code == 504
        assert assert_openai_error(response.json())["code"] == "request_timeout"
        assert 1.4 < elapsed < 3.0, elapsed
        deadline = time.monotonic() + 1
        while engine.stats.open_streams and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.stats.open_streams == 0


def test_total_deadline_fires_on_an_engine_dripping_after_the_first_token(
    transport_name: str,
) -> None:
    config = EngineConfig(fail="drip", drip_interval=0.5, drip_from_event=2)
    with (
        running_engine(config) as engine,
        running_backend(
            engine.url,
            first_token_timeout=1.0,
            request_timeout=2.0,
            engine_read_timeout=30,
            engine_transport=transport_name,
        ) as backend,
    ):
        started = time.perf_counter()
        response = httpx2.post(backend.url + CHAT, json=chat_body(stream=True), timeout=10)
        elapsed = time.perf_counter() - started
    assert response.status_code == 200
    events = sse_events(response.text)
    assert content_of(events[:-1]) == "Hello"
    error = assert_openai_error(json.loads(events[-1]))
    assert error["code"] == "request_timeout"
    assert 1.9 < elapsed < 3.5, elapsed


def test_read_timeout_between_chunks_ends_the_stream(transport_name: str) -> None:
    with (
        running_engine(EngineConfig(token_delay=2.0, tokens=5)) as engine,
        running_backend(
            engine.url, engine_read_timeout=0.5, engine_transport=transport_name
        ) as backend,
    ):
        response = httpx2.post(backend.url + CHAT, json=chat_body(stream=True), timeout=10)
    events = sse_events(response.text)
    assert assert_openai_error(json.loads(events[-1]))["code"] == "engine_read_timeout"


# S9 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "code"),
    [
        ("event", "engine_midstream"),
        ("abort", "engine_disconnected"),
        ("interrupt", "engine_truncated"),
    ],
)
def test_midstream_engine_error_is_one_terminal_error_event(
    style: str, code: str, transport_name: str
) -> None:
    config = EngineConfig(fail="midstream", midstream_style=style, tokens=8)  # type: ignore[arg-type]
    with (
        running_engine(config) as engine,
        running_backend(engine.url, engine_transport=transport_name) as backend,
    ):
        response = httpx2.post(backend.url + CHAT, json=chat_body(stream=True), timeout=10)
        assert len(engine.stats.requests) == 1  # S7: never retried after the first byte
        metrics = httpx2.get(backend.url + "/metrics").text
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("\n\n")
    events = sse_events(response.text)
    errors = [e for e in events if e != "[DONE]" and "error" in json.loads(e)]
    assert len(errors) == 1
    assert events[-1] == errors[0]
    assert "[DONE]" not in events
    error = assert_openai_error(json.loads(errors[0]))
    assert (error["code"], error["type"]) == (code, "server_error")
    assert content_of(events[:-1]) == "Hello from the fake"
    assert metric(metrics, f'kube_llm_engine_errors_total{{kind="{code}"}}') == 1


@pytest.mark.parametrize(
    ("style", "status", "code"),
    [
        ("event", 503, "engine_500"),  # the engine's 500 before any reply: worth a retry
        ("interrupt", 502, "engine_truncated"),  # a reply with no finish reason
        ("abort", 502, "engine_disconnected"),  # half a body, then the connection broke
    ],
)
def test_engine_failure_without_stream_is_one_json_error(
    style: str, status: int, code: str, transport_name: str
) -> None:
    config = EngineConfig(fail="midstream", midstream_style=style)  # type: ignore[arg-type]
    with (
        running_engine(config) as engine,
        running_backend(engine.url, engine_transport=transport_name) as backend,
    ):
        response = httpx2.post(backend.url + CHAT, json=chat_body(), timeout=10)
        assert len(engine.stats.requests) == 1
    assert response.status_code == status
    assert assert_openai_error(response.json())["code"] == code
