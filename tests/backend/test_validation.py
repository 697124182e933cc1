"""S1, S2, S3 (docs/reliability.md): body limits, malformed input, allowlisting, message limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.backend.conftest import (
    CHAT,
    Backend,
    FakeEngine,
    assert_openai_error,
    chat_body,
    running_backend,
    running_engine,
)
from tests.fakes.engine import EngineConfig

ALLOWED_FIELDS = {
    "model",
    "messages",
    "stream",
    "max_tokens",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "stream_options",
}


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[FakeEngine, Backend]]:
    """One engine and backend for the property-based runs (hypothesis reuses them)."""
    with (
        running_engine(EngineConfig(tokens=3)) as engine,
        running_backend(
            engine.url,
            max_body_bytes=4096,
            max_messages=8,
            max_message_chars=200,
            max_total_chars=500,
            max_tokens_cap=16,
            max_inflight=64,
        ) as backend,
    ):
        yield engine, backend


def _check_no_server_error(response: httpx2.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    assert response.headers["x-served-by"] == "test-pod"
    if response.status_code >= 400:
        assert_openai_error(response.json())


# S1 --------------------------------------------------------------------------------------


def test_oversized_body_with_content_length_is_413(
    shared: tuple[FakeEngine, Backend],
) -> None:
    engine, backend = shared
    before = len(engine.stats.requests)
    body = json.dumps(chat_body("x" * 5000)).encode()
    response = httpx2.post(backend.url + CHAT, content=body)
    assert response.status_code == 413
    assert assert_openai_error(response.json())["code"] == "request_too_large"
    assert len(engine.stats.requests) == before


def test_oversized_body_without_content_length_is_413(
    shared: tuple[FakeEngine, Backend],
) -> None:
    engine, backend = shared
    before = len(engine.stats.requests)

    def chunks() -> Iterator[bytes]:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    response = httpx2.post(backend.url + CHAT, content=chunks())
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert_openai_error(response.json())
    assert len(engine.stats.requests) == before


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b'{"messages": [}', b"\xff\xfe", b"NaN", b'{"a": Infinity}'],
)
def test_malformed_json_is_400(shared: tuple[FakeEngine, Backend], raw: bytes) -> None:
    _, backend = shared
    response = httpx2.post(
        backend.url + CHAT, content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert assert_openai_error(response.json())["code"] == "invalid_json"


def test_deeply_nested_json_is_a_4xx(shared: tuple[FakeEngine, Backend]) -> None:
    _, backend = shared
    response = httpx2.post(backend.url + CHAT, content=b"[" * 2000 + b"]" * 2000)
    assert response.status_code == 400


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "developer", "tool", "x"])},
        optional={
            "content": st.one_of(
                st.text(max_size=250),
                st.lists(
                    st.fixed_dictionaries(
                        {"type": st.sampled_from(["text", "image_url"]), "text": st.text()}
                    ),
                    max_size=3,
                ),
                json_values,
            ),
            "name": st.text(max_size=5),
        },
    ),
    max_size=10,
)

chat_like = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["tinyllama", "other", ""]) | json_values,
        "messages": messages | json_values,
        "stream": st.booleans() | json_values,
        "max_tokens": st.integers() | json_values,
        "max_completion_tokens": st.integers(),
        "temperature": st.floats(allow_nan=False, allow_infinity=False) | json_values,
        "top_p": st.floats(allow_nan=False, allow_infinity=False),
        "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=6) | json_values,
        "seed": st.integers(),
        "n": st.integers(),
        "stream_options": json_values,
        "tools": json_values,
    },
)


@pytest.mark.slow(reason="100 generated bodies, each over real HTTP")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=600))
def test_property_arbitrary_bytes_never_5xx(
    shared: tuple[FakeEngine, Backend], body: bytes
) -> None:
    _, backend = shared
    _check_no_server_error(httpx2.post(backend.url + CHAT, content=body))


@pytest.mark.slow(reason="100 generated bodies, each over real HTTP")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=json_values)
def test_property_arbitrary_json_never_5xx(shared: tuple[FakeEngine, Backend], body: Any) -> None:
    _, backend = shared
    _check_no_server_error(httpx2.post(backend.url + CHAT, json=body))


@pytest.mark.slow(reason="150 generated bodies, each over real HTTP")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=chat_like)
def test_property_chat_like_bodies_never_5xx_and_stay_allowlisted(
    shared: tuple[FakeEngine, Backend], body: dict[str, Any]
) -> None:
    engine, backend = shared
    before = len(engine.stats.requests)
    response = httpx2.post(backend.url + CHAT, json=body)
    _check_no_server_error(response)
    sent = engine.stats.requests[before:]
    if response.status_code != 200:
        assert sent == []
        return
    # S2 on every accepted request: allowlisted fields and model, capped max_tokens.
    (payload,) = sent
    assert set(payload) <= ALLOWED_FIELDS
    assert payload["model"] == "tinyllama"
    assert payload["max_tokens"] <= 16
    assert all(set(m) == {"role", "content"} for m in payload["messages"])


# S2 --------------------------------------------------------------------------------------


def test_engine_sees_only_allowlisted_fields(engine: FakeEngine, backend: Backend) -> None:
    body = chat_body(
        "Hello",
        tools=[{"type": "function", "function": {"name": "rm_rf"}}],
        user="someone",
        logit_bias={"1": 100},
        api_key="sk-secret",
        temperature=0.5,
        top_p=0.9,
        seed=7,
        stop=["\n\n"],
        n=1,
    )
    body["messages"][0].update(name="mallory", tool_calls=[{"id": "x"}], extra="y")
    response = httpx2.post(backend.url + CHAT, json=body)
    assert response.status_code == 200, response.text
    (payload,) = engine.stats.requests
    assert set(payload) <= ALLOWED_FIELDS
    assert payload["messages"] == [{"role": "user", "content": "Hello"}]
    assert payload["temperature"] == 0.5
    assert payload["top_p"] == 0.9
    assert payload["seed"] == 7
    assert payload["stop"] == ["\n\n"]


def test_model_outside_allowlist_never_reaches_engine(engine: FakeEngine, backend: Backend) -> None:
    for model in ["llama3:70b", "tinyllama:latest", "../tinyllama", ""]:
        response = httpx2.post(backend.url + CHAT, json=chat_body(model=model))
        assert response.status_code == 404
        error = assert_openai_error(response.json())
        assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert engine.stats.requests == []


def test_max_tokens_is_capped_and_always_set(engine: FakeEngine) -> None:
    with running_backend(engine.url, max_tokens_cap=5) as backend:
        cases: list[tuple[dict[str, Any], int]] = [
            ({"max_tokens": 10**9}, 5),
            ({"max_completion_tokens": 100}, 5),
            ({"max_tokens": 3}, 3),
            ({}, 5),
        ]
        for extra, expected in cases:
            response = httpx2.post(backend.url + CHAT, json=chat_body(**extra))
            assert response.status_code == 200
            assert engine.stats.requests[-1]["max_tokens"] == expected


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"n": 2}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_out_of_range_parameters_are_400(
    engine: FakeEngine, backend: Backend, extra: dict[str, Any], param: str
) -> None:
    response = httpx2.post(backend.url + CHAT, json=chat_body(**extra))
    assert response.status_code == 400
    assert assert_openai_error(response.json())["param"] == param
    assert engine.stats.requests == []


# S3 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        ([{"role": "user", "content": "hi"}] * 4, "too_many_messages"),
        ([{"role": "user", "content": "x" * 101}], "message_too_long"),
        ([{"role": "user", "content": "x" * 80}] * 3, "context_too_long"),
        ([{"role": "user", "content": [{"type": "text", "text": "x" * 101}]}], "message_too_long"),
        ([{"role": "tool", "content": "hi"}], "invalid_role"),
        ([{"role": "user"}], "invalid_value"),
        ([], "invalid_type"),
    ],
)
def test_message_limits_are_4xx_without_engine_call(
    engine: FakeEngine, messages: list[dict[str, Any]], code: str
) -> None:
    with running_backend(
        engine.url, max_messages=3, max_message_chars=100, max_total_chars=200
    ) as backend:
        response = httpx2.post(backend.url + CHAT, json={"messages": messages})
        assert 400 <= response.status_code < 500
        assert assert_openai_error(response.json())["code"] == code
        # Within the limits the same backend does call the engine.
        ok = httpx2.post(backend.url + CHAT, json={"messages": [{"role": "user", "content": "x"}]})
        assert ok.status_code == 200
    assert len(engine.stats.requests) == 1


# Inputs the engine cannot take -------------------------------------------------------------

LONE = "\ud800"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat_body(f"a{LONE}b"), "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": LONE}]}]},
            "messages[0].content",
        ),
        (chat_body("hi", stop=["ok", f"x{LONE}"]), "stop"),
        (chat_body("hi", stop="\udfff"), "stop"),
    ],
)
def test_lone_surrogate_is_400_without_engine_call(
    engine: FakeEngine, backend: Backend, body: dict[str, Any], param: str
) -> None:
    # json.dumps escapes the surrogate as \ud800, which is valid JSON the backend must parse.
    raw = json.dumps(body).encode()
    assert b"\\ud" in raw or b"\\udfff" in raw
    response = httpx2.post(backend.url + CHAT, content=raw)
    assert response.status_code == 400, response.text
    error = assert_openai_error(response.json())
    assert (error["code"], error["param"]) == ("invalid_unicode", param)
    assert "surrogate" in error["message"]
    assert engine.stats.requests == []
    metrics = httpx2.get(backend.url + "/metrics").text
    assert "kube_llm_engine_errors_total{" not in metrics


def test_escaped_surrogate_pair_is_one_character_and_reaches_the_engine(
    engine: FakeEngine, backend: Backend
) -> None:
    raw = b'{"messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}'
    response = httpx2.post(backend.url + CHAT, content=raw)
    assert response.status_code == 200, response.text
    assert engine.stats.requests[0]["messages"][0]["content"] == "smile \U0001f600"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"max_tokens": 0}, "'max_tokens' must be a whole number of at least 1, got 0."),
        ({"max_completion_tokens": -3}, "a whole number of at least 1, got -3"),
        ({"n": 2}, "'n' must be 1: only one choice is produced, got 2."),
        ({"temperature": 2.5}, "'temperature' must be a number from 0 to 2, got 2.5."),
        ({"seed": 2**64}, "'seed' must be a 64-bit whole number"),
    ],
)
def test_range_errors_say_what_is_allowed_in_words(
    engine: FakeEngine, backend: Backend, extra: dict[str, Any], words: str
) -> None:
    response = httpx2.post(backend.url + CHAT, json=chat_body(**extra))
    assert response.status_code == 400
    message = assert_openai_error(response.json())["message"]
    assert words in message
    assert "e+" not in message  # no number in scientific notation
