"""Token usage: passed through from the engine, streamed and not, and counted in the metrics."""

from __future__ import annotations

import json

import httpx2
import openai

from tests.backend.conftest import (
    CHAT,
    chat_body,
    content_of,
    running_backend,
    running_engine,
    sse_events,
)
from tests.backend.test_streaming import metric
from tests.fakes.engine import EngineConfig

TOKENS = 7


def sdk(url: str) -> openai.OpenAI:
    """An SDK client pointed at a backend."""
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def usage_chunks(events: list[str]) -> list[dict[str, object]]:
    """The chunks of a stream that carry a usage object."""
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    return [c for c in chunks if isinstance(c.get("usage"), dict)]


def test_sdk_sees_usage_without_streaming() -> None:
    with (
        running_engine(EngineConfig(tokens=TOKENS)) as engine,
        running_backend(engine.url) as backend,
    ):
        completion = sdk(backend.url).chat.completions.create(
            model="tinyllama", messages=[{"role": "user", "content": "three words here"}]
        )
        metrics = httpx2.get(backend.url + "/metrics").text
        sent = engine.stats.requests[-1]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == TOKENS
    assert completion.usage.prompt_tokens == 3
    assert completion.usage.total_tokens == TOKENS + 3
    # The engine was asked for a plain reply, which is where every engine reports usage.
    assert sent["stream"] is False
    assert "stream_options" not in sent
    assert metric(metrics, "kube_llm_output_tokens_total") == TOKENS
    assert metric(metrics, "kube_llm_output_chunks_total") == 0


def test_sdk_sees_usage_when_streaming_with_include_usage() -> None:
    with (
        running_engine(EngineConfig(tokens=TOKENS)) as engine,
        running_backend(engine.url) as backend,
    ):
        stream = sdk(backend.url).chat.completions.create(
            model="tinyllama",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        metrics = httpx2.get(backend.url + "/metrics").text
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == TOKENS
    assert metric(metrics, "kube_llm_output_tokens_total") == TOKENS


def test_usage_counts_tokens_even_when_the_client_did_not_ask_for_it() -> None:
    with (
        running_engine(EngineConfig(tokens=TOKENS)) as engine,
        running_backend(engine.url) as backend,
    ):
        response = httpx2.post(backend.url + CHAT, json=chat_body(stream=True), timeout=10)
        metrics = httpx2.get(backend.url + "/metrics").text
        sent = engine.stats.requests[-1]
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert len(content_of(events)) > 0
    # The engine is asked for usage, for the metric; the client, which did not ask, gets no
    # usage chunk (an empty choices list breaks clients that index choices[0]).
    assert sent["stream_options"] == {"include_usage": True}
    assert usage_chunks(events) == []
    assert all(json.loads(e)["choices"] for e in events if e != "[DONE]")
    assert metric(metrics, "kube_llm_output_tokens_total") == TOKENS
    assert metric(metrics, "kube_llm_output_chunks_total") == 0


def test_an_engine_without_stream_usage_is_counted_in_chunks() -> None:
    """llama-cpp-python's server sends no usage in a stream, however asked."""
    config = EngineConfig(tokens=TOKENS, stream_usage=False)
    with running_engine(config) as engine, running_backend(engine.url) as backend:
        response = httpx2.post(
            backend.url + CHAT,
            json=chat_body(stream=True, stream_options={"include_usage": True}),
            timeout=10,
        )
        metrics = httpx2.get(backend.url + "/metrics").text
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert usage_chunks(events) == []  # no usage is made up
    assert metric(metrics, "kube_llm_output_tokens_total") == 0
    assert metric(metrics, "kube_llm_output_chunks_total") == TOKENS


def test_a_plain_reply_without_usage_has_none() -> None:
    config = EngineConfig(tokens=TOKENS, plain_usage=False)
    with running_engine(config) as engine, running_backend(engine.url) as backend:
        response = httpx2.post(backend.url + CHAT, json=chat_body(), timeout=10)
        metrics = httpx2.get(backend.url + "/metrics").text
    assert response.status_code == 200
    body = response.json()
    assert "usage" not in body
    assert body["choices"][0]["finish_reason"] == "stop"
    assert metric(metrics, "kube_llm_output_tokens_total") == 0
