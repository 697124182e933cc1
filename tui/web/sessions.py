"""One browser session: a cockpit process started for a websocket, and always reaped.

textual-serve's `AppService` starts the app with a shell and, on stop, asks it to quit and waits
for its output to end, with no time limit and no kill. A browser that vanished without closing
its socket has been seen to leave the app process spinning at full CPU and deaf to SIGTERM, so
a session here starts the cockpit without a shell in a process group of its own (which dies
with the server even if the server is SIGKILLed), asks it to quit, and SIGKILLs the group once
`grace_seconds` have passed. Reading and writing the app's packets stay textual-serve's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from textual_serve.app_service import AppService
from textual_serve.download_manager import DownloadManager

log = logging.getLogger("kube-llm.web")

DEFAULT_GRACE_SECONDS = 3.0
"""How long a cockpit has to quit once asked before its process group is SIGKILLed."""


def _die_with_server() -> None:
    """In the child before exec: SIGKILL when the server dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class ReapedSession(AppService):
    """A textual-serve app service whose process is started without a shell and always reaped."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        write_bytes: Callable[[bytes], Awaitable[None]],
        write_str: Callable[[str], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
        download_manager: DownloadManager,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        super().__init__(
            " ".join(argv),
            write_bytes=write_bytes,
            write_str=write_str,
            close=close,
            download_manager=download_manager,
        )
        self.argv = tuple(argv)
        self.grace_seconds = grace_seconds
        self._stopping: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int | None:
        """The cockpit's process id (its process group's too), once started."""
        return self._process.pid if self._process is not None else None

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Any:
        """Start the cockpit: no shell, its own process group, dies with the server."""
        in_main_thread = threading.current_thread() is threading.main_thread()
        process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._build_environment(width=width, height=height),
            start_new_session=True,
            preexec_fn=_die_with_server if in_main_thread else None,
        )
        self._process = process
        self._stdin = process.stdin
        log.info("session %s: cockpit started, pid %d", self.app_service_id[:8], process.pid)
        return process

    async def stop(self) -> None:
        """Ask the cockpit to quit; SIGKILL its process group once the grace period is over.

        Every caller waits for the same reaping, however many ask."""
        if self._process is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._reap(self._process))
        await asyncio.shield(self._stopping)

    async def _reap(self, process: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace_seconds
        try:
            # textual-serve's stop: cancel downloads, send "quit", wait for the output to end.
            await asyncio.wait_for(super().stop(), self.grace_seconds)
            await asyncio.wait_for(process.wait(), max(0.0, deadline - loop.time()))
        except (TimeoutError, ConnectionError, RuntimeError):
            pass  # deaf or gone: the group is killed below either way
        # Whatever is left of the group goes, the cockpit first among them if it did not quit.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        code = await process.wait()
        log.info("session %s: cockpit ended (%s)", self.app_service_id[:8], _exit_text(code))
        # A cockpit killed never said goodbye: close the browser's websocket here (a no-op if
        # it is closed), so the page learns why rather than seeing the connection drop.
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.remote_close()


def _exit_text(code: int) -> str:
    if code == -signal.SIGKILL:
        return "killed after the grace period"
    return f"exit code {code}"
