"""Start `kube-llm web` (or its server around a stand-in app) as a real process on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx2
import psutil

from tests.fakes.serve import free_port
from tests.sandbox.harness import ROOT, stop_process, wait_for


@dataclass
class WebServer:
    """A running web server process and its base URL."""

    process: subprocess.Popen[str]
    port: int
    output: Path

    @property
    def url(self) -> str:
        """The page's URL."""
        return f"http://127.0.0.1:{self.port}/"

    def log(self) -> str:
        """What the server printed."""
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def sessions(self) -> list[psutil.Process]:
        """The live cockpit processes the server started (its children)."""
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []
        return [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the server and wait for it to exit; its exit code."""
        return stop_process(self.process, sig, timeout)


def start_web(command: Sequence[str], directory: Path, port: int | None = None) -> WebServer:
    """Run `command` (which must take `--port PORT`) and wait until it answers /healthz."""
    chosen = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"web-{chosen}.out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with output.open("w") as sink:
        process = subprocess.Popen(
            [*command, "--port", str(chosen)],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    server = WebServer(process, chosen, output)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the web server exited early:\n{server.log()}")
        try:
            return httpx2.get(f"{server.url}healthz", timeout=2).status_code == 200
        except httpx2.HTTPError:
            return False

    try:
        wait_for(answers, 30, "the web server to answer")
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


def fake_server(
    directory: Path, app: str, *, max_sessions: int = 8, heartbeat: float = 15, grace: float = 1
) -> WebServer:
    """The real server around a stand-in app (tests/fakes/web_apps.py)."""
    command = [sys.executable, "-m", "tests.fakes.web_server", "--app", app]
    command += ["--max-sessions", str(max_sessions), "--heartbeat", str(heartbeat)]
    command += ["--grace", str(grace)]
    return start_web(command, directory)


def gone(pids: Sequence[int]) -> bool:
    """Whether none of the processes is alive (a zombie counts as gone: it has ended)."""
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def kill_all(pids: Sequence[int]) -> None:
    """Clean-up after a failed test: SIGKILL what is left."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
