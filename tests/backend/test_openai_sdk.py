"""The official openai SDK chats with the backend, streamed and not, and sees its errors."""

from __future__ import annotations

import openai
import pytest

from tests.backend.conftest import Backend, FakeEngine, running_backend

REPLY = "Hello from the fake engine, one token at a time."


def sdk(backend: Backend) -> openai.OpenAI:
    """An SDK client pointed at the backend (the backend needs no key)."""
    return openai.OpenAI(base_url=backend.url + "/v1", api_key="unused", max_retries=0)


def test_sdk_chat_without_streaming(backend: Backend) -> None:
    raw = sdk(backend).chat.completions.with_raw_response.create(
        model="tinyllama", messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.headers["x-served-by"] == "test-pod"
    completion = raw.parse()
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "tinyllama"


def test_sdk_chat_streaming_with_usage(backend: Backend) -> None:
    stream = sdk(backend).chat.completions.create(
        model="tinyllama",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=5,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake engine"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_sdk_lists_models(backend: Backend) -> None:
    assert [m.id for m in sdk(backend).models.list()] == ["tinyllama"]


def test_sdk_raises_on_a_terminal_error_event(engine: FakeEngine, backend: Backend) -> None:
    engine.config.fail = "midstream"
    stream = sdk(backend).chat.completions.create(
        model="tinyllama", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    with pytest.raises(openai.APIError, match="The engine failed while answering"):
        list(stream)


def test_sdk_maps_refusals_to_its_exceptions(engine: FakeEngine) -> None:
    with running_backend(engine.url, max_messages=1) as backend:
        client = sdk(backend)
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(
                model="tinyllama",
                messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
            )
        assert bad.value.code == "too_many_messages"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "a"}]
            )
