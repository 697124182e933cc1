"""`kube-llm web`'s server (tui/web/) as a real process on loopback, around stand-in apps
(tests/fakes/web_apps.py): what it serves, what it refuses, the session cap, and that every
session's process is reaped however the browser or the server goes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx2
import pytest

from tests.sandbox.harness import ROOT, wait_for
from tests.web.harness import WebServer, fake_server, gone, kill_all

pytestmark = pytest.mark.slow(reason="a kube-llm web process per test, and browsers that vanish")


class Browser:
    """tests/web/ws_client.py as a process: a browser stand-in holding one session."""

    def __init__(self, server: WebServer, headers: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.web.ws_client", f"ws://127.0.0.1:{server.port}/ws"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == "open", line + self.process.stdout.read()

    def end(self) -> None:
        """SIGKILL the stand-in (and collect it)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def browsers() -> Iterator[list[Browser]]:
    """Browser stand-ins, ended after the test."""
    made: list[Browser] = []
    yield made
    for browser in made:
        browser.end()


def session_pids(server: WebServer, count: int) -> list[int]:
    """The pids of `count` running sessions, once there are that many."""
    found = wait_for(
        lambda: [p.pid for p in server.sessions()] if len(server.sessions()) == count else None,
        30,
        f"{count} session processes",
    )
    return list(found)


def test_only_its_own_paths_are_served(tmp_path: Path) -> None:
    """The page, its static files, /ws, /healthz and /readyz; anything else is a 404, folders
    included; the page says its mode and disarms `window.open` (T1)."""
    server = fake_server(tmp_path, "calm")
    try:
        with httpx2.Client(base_url=server.url, timeout=10) as http:
            page = http.get("/")
            assert page.status_code == 200
            assert "<title>kube-llm cockpit · read-only</title>" in page.text
            assert "window.open = () => null;" in page.text
            assert f'data-session-websocket-url="ws://127.0.0.1:{server.port}/ws"' in page.text
            assert http.get("/static/js/textual.js").status_code == 200
            for path in ("/nope", "/static/", "/static/js/", "/download/abc", "/ws/x", "/.env"):
                assert http.get(path).status_code == 404, path
            assert http.get("/healthz").json()["status"] == "ok"
            assert http.get("/readyz").status_code == 200
    finally:
        assert server.stop() == 0


def test_a_loopback_server_refuses_other_hosts_and_origins(tmp_path: Path) -> None:
    """Bound to 127.0.0.1: a DNS-rebound host name is refused, and so is a websocket opened
    from another site's page (which could otherwise drive the cockpit)."""
    server = fake_server(tmp_path, "calm")
    try:
        with httpx2.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/", headers={"Host": f"evil.example:{server.port}"}).status_code == 403
            upgrade = {
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
            }
            upgrade["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
            refused = http.get("/ws", headers={**upgrade, "Origin": "http://evil.example"})
            assert refused.status_code == 403
            assert server.sessions() == []
    finally:
        server.stop()


def test_past_the_cap_the_page_says_so(tmp_path: Path, browsers: list[Browser]) -> None:
    """At the cap the page is a 503 that says why, a websocket gets the same words and closes,
    /readyz is 503 (so a Service sends browsers elsewhere); a freed session frees the page."""
    server = fake_server(tmp_path, "calm", max_sessions=1)
    try:
        browsers.append(Browser(server))
        session_pids(server, 1)
        with httpx2.Client(base_url=server.url, timeout=10) as http:
            full = http.get("/")
            assert full.status_code == 503
            assert "all 1 sessions are in use" in full.text
            assert full.headers["Retry-After"]
            assert http.get("/readyz").status_code == 503
            over = subprocess.run(
                [sys.executable, "-m", "tests.web.ws_client", f"ws://127.0.0.1:{server.port}/ws"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert over.stdout.splitlines() == ["open", "closed 1013"]
            assert len(server.sessions()) == 1
            browsers[0].end()
            wait_for(
                lambda: http.get("/").status_code == 200, 30, "the page once the session ended"
            )
            assert http.get("/readyz").status_code == 200
    finally:
        server.stop()


def test_a_deaf_cockpit_is_killed_after_a_browser_crash(
    tmp_path: Path, browsers: list[Browser]
) -> None:
    """A browser killed outright: its cockpit, deaf to quit and SIGTERM and spinning, is
    SIGKILLed once the grace period is over."""
    server = fake_server(tmp_path, "deaf", grace=1)
    pids: list[int] = []
    try:
        browsers.append(Browser(server))
        pids = session_pids(server, 1)
        browsers[0].process.send_signal(signal.SIGKILL)
        wait_for(lambda: gone(pids), 15, "the deaf cockpit to be reaped")
        # The server logs the kill just after it reaps the cockpit, so the pid can be gone
        # a moment before the line is written.
        wait_for(lambda: "killed after the grace period" in server.log(), 10, "the kill in the log")
        assert server.sessions() == []
    finally:
        kill_all(pids)
        server.stop()


def test_a_browser_that_stops_answering_loses_its_cockpit(
    tmp_path: Path, browsers: list[Browser]
) -> None:
    """A browser that vanished with its socket open (stopped: no pong, no close) is found by
    the heartbeat, and its deaf cockpit is reaped."""
    server = fake_server(tmp_path, "deaf", heartbeat=1, grace=1)
    pids: list[int] = []
    try:
        browsers.append(Browser(server))
        pids = session_pids(server, 1)
        browsers[0].process.send_signal(signal.SIGSTOP)
        wait_for(lambda: gone(pids), 20, "the cockpit of a silent browser to be reaped")
        # The server logs the kill just after it reaps the cockpit, so the pid can be gone
        # a moment before the line is written.
        wait_for(lambda: "killed after the grace period" in server.log(), 10, "the kill in the log")
    finally:
        if browsers:
            browsers[0].process.send_signal(signal.SIGCONT)
        kill_all(pids)
        server.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_no_cockpit_outlives_the_server(
    tmp_path: Path, browsers: list[Browser], sig: signal.Signals
) -> None:
    """Stopped (SIGTERM, Ctrl+C) with two deaf sessions open, the server reaps both and exits
    0; even SIGKILLed, it takes them with it."""
    server = fake_server(tmp_path, "deaf", grace=1)
    pids: list[int] = []
    try:
        browsers.extend([Browser(server), Browser(server)])
        pids = session_pids(server, 2)
        code = server.stop(sig)
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0), server.log()
        wait_for(lambda: gone(pids), 10, "every cockpit gone with the server")
    finally:
        kill_all(pids)


@pytest.mark.parametrize("app", ["calm", "deaf"])
async def test_a_stopping_server_says_it_is_going_away(tmp_path: Path, app: str) -> None:
    """A server stopped (a pod deleted) closes a running session's websocket with 1001, going
    away, which the page reconnects on (tui/web/reconnect.py): a cockpit that quits when asked
    and one killed after the grace period alike."""
    server = fake_server(tmp_path, app, grace=1)
    pids: list[int] = []
    try:
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with aiohttp.ClientSession() as client, client.ws_connect(url) as socket:
            if app == "calm":  # a running cockpit: its first screen arrived
                first = await asyncio.wait_for(socket.receive(), 60)
                assert first.type == aiohttp.WSMsgType.BINARY, first
            pids = session_pids(server, 1)
            # Read while the server stops, as a browser does (and answers its close frame).
            stopping = asyncio.create_task(asyncio.to_thread(server.stop, signal.SIGTERM))
            async for _ in socket:
                pass
            assert socket.close_code == 1001, server.log()
            assert await stopping == 0, server.log()
    finally:
        kill_all(pids)
        server.stop(signal.SIGKILL)
