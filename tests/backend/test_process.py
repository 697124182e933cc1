"""S10 and S12 (docs/reliability.md) on a real ``python -m backend`` process: drain on SIGTERM,
and clean logs."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx2

from tests.backend.conftest import (
    CHAT,
    assert_openai_error,
    backend_process,
    chat_body,
    content_of,
    running_engine,
    sse_events,
)
from tests.fakes.engine import EngineConfig

# S10 -------------------------------------------------------------------------------------


class StreamReader(threading.Thread):
    """Read one streamed chat in the background, noting when the first bytes arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.started = threading.Event()
        self.body = ""
        self.status = 0

    def run(self) -> None:
        with httpx2.stream("POST", self.url + CHAT, json=chat_body(stream=True), timeout=30) as r:
            self.status = r.status_code
            for text in r.iter_text():
                self.body += text
                self.started.set()
        self.started.set()


def test_sigterm_drains_open_streams_then_exits_0(tmp_path: Path) -> None:
    with (
        running_engine(EngineConfig(token_delay=0.15, tokens=12)) as engine,
        backend_process(engine.url, tmp_path, SHUTDOWN_TIMEOUT="10") as proc,
    ):
        assert httpx2.get(proc.url + "/readyz").status_code == 200
        reader = StreamReader(proc.url)
        reader.start()
        assert reader.started.wait(10)
        proc.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        ready = httpx2.get(proc.url + "/readyz")
        assert ready.status_code == 503
        assert assert_openai_error(ready.json())["code"] == "shutting_down"
        chat = httpx2.post(proc.url + CHAT, json=chat_body())
        assert chat.status_code == 503
        assert chat.headers["retry-after"] == "1"
        assert httpx2.get(proc.url + "/healthz").status_code == 200
        reader.join(10)
        assert proc.process.wait(10) == 0
    events = sse_events(reader.body)
    assert reader.status == 200
    assert events[-1] == "[DONE]"
    assert content_of(events) == "Hello from the fake engine, one token at a time."


def test_sigterm_ends_overlong_streams_with_a_shutting_down_event(tmp_path: Path) -> None:
    with (
        running_engine(EngineConfig(token_delay=0.1, tokens=300)) as engine,
        backend_process(engine.url, tmp_path, SHUTDOWN_TIMEOUT="2") as proc,
    ):
        reader = StreamReader(proc.url)
        reader.start()
        assert reader.started.wait(10)
        signalled = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(15) == 0
        elapsed = time.monotonic() - signalled
        reader.join(5)
        assert not reader.is_alive()
        deadline = time.monotonic() + 2
        while engine.stats.open_streams and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.stats.open_streams == 0
    # Open streams get SHUTDOWN_TIMEOUT less a second to finish; the last second ends them.
    assert 0.9 < elapsed < 2 + 3, elapsed
    events = sse_events(reader.body)
    error = assert_openai_error(json.loads(events[-1]))
    assert error["code"] == "shutting_down"
    assert len(content_of(events[:-1])) > 0


def test_bad_settings_exit_2_with_a_clear_json_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "backend"],
        env={"MAX_INFLIGHT": "lots", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["level"] == "error"
    assert "MAX_INFLIGHT must be a whole number" in line["error"]


def test_engine_transport_comes_from_the_environment(tmp_path: Path) -> None:
    with (
        running_engine(EngineConfig(reply="stock transport")) as engine,
        backend_process(engine.url, tmp_path, ENGINE_TRANSPORT="httpx") as proc,
    ):
        streamed = httpx2.post(proc.url + CHAT, json=chat_body(stream=True), timeout=10)
        assert content_of(sse_events(streamed.text)) == "stock transport"
        log = proc.log()
    opened = [json.loads(line) for line in log.splitlines() if '"msg": "engine client"' in line]
    assert len(opened) == 1
    assert opened[0]["engine_transport"] == "httpx"
    assert opened[0]["client_class"] == "HttpxEngineClient"


# S12 -------------------------------------------------------------------------------------

CANARY = "CANARY-7f3a9c"


def test_prompt_and_reply_text_never_reach_the_logs(tmp_path: Path) -> None:
    reply = f"the secret is {CANARY} indeed"
    with (
        running_engine(EngineConfig(reply=reply)) as engine,
        backend_process(engine.url, tmp_path, LOG_LEVEL="debug") as proc,
    ):
        prompt = chat_body(f"please repeat {CANARY}")
        streamed = httpx2.post(proc.url + CHAT, json={**prompt, "stream": True})
        assert CANARY in content_of(sse_events(streamed.text))
        plain = httpx2.post(proc.url + CHAT, json=prompt)
        assert CANARY in plain.json()["choices"][0]["message"]["content"]
        # Refused and failing requests carrying the canary too.
        bad_role = {"messages": [{"role": CANARY, "content": CANARY}]}
        assert httpx2.post(proc.url + CHAT, json=bad_role).status_code == 400
        assert httpx2.post(proc.url + CHAT, content=f"{{{CANARY}".encode()).status_code == 400
        assert httpx2.post(proc.url + CHAT, json=chat_body(model=CANARY)).status_code == 404
        engine.config.fail = "midstream"
        httpx2.post(proc.url + CHAT, json={**prompt, "stream": True})
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(10) == 0
        log = proc.log()
    assert CANARY not in log
    lines = [line for line in log.splitlines() if line.strip()]
    chat_lines = [json.loads(line) for line in lines if '"msg": "chat"' in line]
    assert len(chat_lines) == 3
    for line in lines:
        assert isinstance(json.loads(line), dict), line
