"""Fixtures for the backend tests: a fake engine and the backend, both on real loopback HTTP."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from backend.app import create_app
from backend.settings import ENGINE_TRANSPORTS, Settings
from tests.fakes.engine import EngineConfig, EngineStats, create_engine_app
from tests.fakes.serve import free_port, serve_in_thread

CHAT = "/v1/chat/completions"


@dataclass
class FakeEngine:
    """A fake engine running on loopback: its URL, its live config and what it saw."""

    url: str
    config: EngineConfig
    stats: EngineStats


@dataclass
class Backend:
    """A backend app running on loopback, and the app object (for its gate and metrics)."""

    url: str
    app: Starlette
    settings: Settings


def chat_body(text: str = "Hello", **extra: Any) -> dict[str, Any]:
    """A minimal valid chat request."""
    return {"model": "tinyllama", "messages": [{"role": "user", "content": text}], **extra}


def sse_events(raw: str) -> list[str]:
    """Split an SSE body into the data payloads of its events."""
    events = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        if data:
            events.append("\n".join(data))
    return events


def content_of(events: list[str]) -> str:
    """Join the content deltas of a list of SSE data payloads."""
    text = []
    for data in events:
        if data == "[DONE]":
            continue
        chunk = json.loads(data)
        for choice in chunk.get("choices", []):
            text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


def assert_openai_error(body: Any) -> dict[str, Any]:
    """Check ``body`` is in the OpenAI error shape and return its error object."""
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["type"], str)
    return error


@contextmanager
def running_engine(config: EngineConfig) -> Iterator[FakeEngine]:
    """Serve a fake engine with ``config``."""
    app = create_engine_app(config)
    with serve_in_thread(app) as url:
        yield FakeEngine(url, config, app.state.engine)


@contextmanager
def running_backend(engine_url: str, **overrides: Any) -> Iterator[Backend]:
    """Serve the backend app against ``engine_url`` with settings ``overrides``."""
    settings = dataclasses.replace(
        Settings(pod_name="test-pod"), engine_url=engine_url, **overrides
    )
    app = create_app(settings)
    with serve_in_thread(app, lifespan="on") as url:
        yield Backend(url, app, settings)


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    """A fast fake engine (no delays)."""
    with running_engine(EngineConfig()) as fake:
        yield fake


@pytest.fixture
def backend(engine: FakeEngine) -> Iterator[Backend]:
    """The backend in front of the fast fake engine, default limits."""
    with running_backend(engine.url) as served:
        yield served


@pytest.fixture(params=ENGINE_TRANSPORTS)
def transport_name(request: pytest.FixtureRequest) -> str:
    """Each ``ENGINE_TRANSPORT`` in turn, for the tests that must hold on both."""
    name: str = request.param
    return name


BackendFactory = Callable[..., AbstractContextManager[Backend]]


@dataclass
class BackendProcess:
    """``python -m backend`` running as a real process, its log going to a file."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")


def wait_until_answers(
    url: str, process: subprocess.Popen[bytes], log_path: Path, *, seconds: float, poll: float
) -> None:
    """Wait until ``GET url`` answers 200; fail if ``process`` exits or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
        try:
            if httpx2.get(url, timeout=min(seconds, 2)).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        assert time.monotonic() < deadline, f"nothing answered on {url} in {seconds} s"
        time.sleep(poll)


@contextmanager
def backend_process(engine_url: str, tmp_path: Path, **env: str) -> Iterator[BackendProcess]:
    """Start ``python -m backend`` against ``engine_url``; kill it on exit if still running."""
    port = free_port()
    environ = {
        **os.environ,
        "ENGINE_URL": engine_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "POD_NAME": "proc-pod",
        **env,
    }
    log_path = tmp_path / f"backend-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend"],
            env=environ,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(url + "/healthz", process, log_path, seconds=20, poll=0.05)
        yield BackendProcess(url, process, log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
