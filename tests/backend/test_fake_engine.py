"""The fake engine as a process, as the sandbox and the benchmark run it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from tests.backend.conftest import CHAT, chat_body, content_of, sse_events
from tests.fakes.serve import free_port

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def engine_process(*args: str) -> Iterator[str]:
    """Run ``python -m tests.fakes.engine`` with ``args``; yield its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.engine", "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def wait_up(url: str) -> httpx2.Response:
    deadline = time.monotonic() + 15
    while True:
        try:
            return httpx2.get(url + "/v1/models")
        except httpx2.TransportError:
            assert time.monotonic() < deadline, "fake engine did not start"
            time.sleep(0.05)


def test_cli_streams_the_openai_protocol() -> None:
    with engine_process(
        "--model", "smollm2:135m", "--tokens", "3", "--token-delay", "0.01",
        "--first-token-delay", "0.02", "--busy-ms-per-token", "1",
    ) as url:  # fmt: skip
        assert [m["id"] for m in wait_up(url).json()["data"]] == ["smollm2:135m"]
        body = chat_body(model="smollm2:135m", stream=True, stream_options={"include_usage": True})
        response = httpx2.post(url + CHAT, json=body)
        plain = httpx2.post(url + CHAT, json=chat_body(model="smollm2:135m"))
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert content_of(events) == "Hello from the"
    assert '"usage"' in events[-2]
    assert plain.json()["choices"][0]["message"]["content"] == "Hello from the"


def test_cli_503_mode() -> None:
    with engine_process("--fail", "503") as url:
        wait_up(url)
        response = httpx2.post(url + CHAT, json=chat_body(stream=True))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"


def test_cli_refuse_mode_listens_on_nothing() -> None:
    with engine_process("--fail", "refuse") as url:
        time.sleep(0.5)
        with pytest.raises(httpx2.ConnectError):
            httpx2.get(url + "/v1/models")
