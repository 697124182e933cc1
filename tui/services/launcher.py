"""Start the sandbox as a child process for `kube-llm demo` (`make demo`), and stop it again.

The cockpit never imports the sandbox (the walls in docs/design.md): it runs `python -m sandbox` as
a process in its own session, with its output in the state folder, waits for the banner that
says the API server is up and the kubeconfig written, and on quit sends SIGTERM to the whole
process group (then SIGKILL after a grace period) so that no engine or backend is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# The sandbox prints this line in its banner once the API server listens and the kubeconfig
# is written (sandbox/__main__.py `banner`).
READY_MARK = "kubeconfig:"
BANNER_MARK = "kube-llm sandbox:"
# ...and this one with the frontend Service's local address, when the overlay has that Service.
WEB_MARK = re.compile(r"^\s*web cockpit:\s+(http://\S+)", re.MULTILINE)


class SandboxFailed(RuntimeError):
    """The sandbox did not start; the message carries the tail of its output."""


@dataclass(frozen=True)
class SandboxPaths:
    """Where a launched sandbox keeps its state."""

    state_dir: Path

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig the sandbox writes."""
        return self.state_dir / "kubeconfig"

    @property
    def output(self) -> Path:
        """The sandbox's own stdout and stderr."""
        return self.state_dir / "sandbox.out"


class SandboxLauncher:
    """One `python -m sandbox` child process, started and stopped by the cockpit."""

    def __init__(
        self,
        state_dir: Path = Path(".sandbox"),
        extra_args: Sequence[str] = (),
        python: str = sys.executable,
        cwd: Path | None = None,
    ) -> None:
        self.paths = SandboxPaths(state_dir)
        self.extra_args = tuple(extra_args)
        self.python = python
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        """Start the sandbox in its own process group, its output going to the state folder."""
        self.paths.state_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self.python,
            "-m",
            "sandbox",
            "--kubeconfig",
            str(self.paths.kubeconfig),
            *self.extra_args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.paths.output.open("wb") as sink:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    def output_tail(self, lines: int = 15) -> str:
        """The last lines the sandbox printed."""
        try:
            text = self.paths.output.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def exit_code(self) -> int | None:
        """The sandbox's exit code once it has ended, else None."""
        return None if self.process is None else self.process.poll()

    def ready(self) -> bool:
        """The sandbox printed its banner: the API server listens and the kubeconfig is written."""
        if not self.paths.kubeconfig.exists():
            return False
        try:
            text = self.paths.output.read_text(errors="replace")
        except FileNotFoundError:
            return False
        return BANNER_MARK in text and READY_MARK in text

    def web_url(self) -> str | None:
        """The web cockpit's address the banner gives (the frontend Service), if it gives one."""
        try:
            found = WEB_MARK.search(self.paths.output.read_text(errors="replace"))
        except FileNotFoundError:
            return None
        return found.group(1) if found else None

    async def wait_ready(
        self, progress: Callable[[str], None], limit: float = 120.0, interval: float = 0.2
    ) -> Path:
        """Wait for the banner, reporting progress; raise SandboxFailed if it exits or stalls."""
        if self.process is None:
            raise SandboxFailed("the sandbox was not started")
        deadline = time.monotonic() + limit
        while not self.ready():
            code = self.exit_code
            if code is not None:
                raise SandboxFailed(
                    f"the sandbox exited with code {code} before it was ready; "
                    f"its output ({self.paths.output}):\n{self.output_tail()}"
                )
            waited = time.monotonic() - self.started_at
            if time.monotonic() > deadline:
                raise SandboxFailed(
                    f"the sandbox was not ready after {waited:.0f} s; "
                    f"its output ({self.paths.output}):\n{self.output_tail()}"
                )
            progress(f"starting the sandbox ({waited:.0f} s): rendering the overlay, TLS, API")
            await asyncio.sleep(interval)
        return self.paths.kubeconfig

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM the sandbox's process group, wait up to `grace` s, then SIGKILL what is left."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)
        # The group may still hold grandchildren (engines, backends) if the sandbox died hard.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait()
