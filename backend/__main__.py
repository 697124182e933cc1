"""``python -m backend``: serve the app with uvicorn, settings from the environment.

SIGTERM (or SIGINT) starts a drain: ``/readyz`` and new chats answer 503; the chats already
taken, running and queued, are served while they can finish within ``SHUTDOWN_TIMEOUT`` (queued
ones that cannot get their 503 at once: ``backend.admission``); past it the rest end with a
terminal "shutting down" event, and the process exits 0. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import logging.config
import signal
import socket
import sys
from types import FrameType

import uvicorn

from backend.admission import Gate
from backend.app import create_app
from backend.logs import log_config
from backend.settings import Settings, SettingsError

log = logging.getLogger("backend.main")

# After the drain, uvicorn waits this long for connections that are still open.
_UVICORN_GRACE_SECONDS = 2
# Time left for aborted streams to send their terminal event before the server stops.
_ABORT_GRACE_SECONDS = 1.0


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains the backend's chats before it stops listening."""

    def __init__(self, config: uvicorn.Config, gate: Gate, shutdown_timeout: float) -> None:
        """Serve ``config``; drain ``gate`` for up to ``shutdown_timeout`` seconds on SIGTERM."""
        super().__init__(config)
        self._gate = gate
        self._drain_seconds = max(shutdown_timeout - _ABORT_GRACE_SECONDS, 0.0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Remember the running loop, so the signal handler can schedule the drain on it."""
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Start draining on the first signal; stop at once on the second."""
        if self._gate.draining or self._loop is None:
            self.should_exit = True
            self.force_exit = self._gate.draining
            return
        self._gate.begin_drain()
        log.info("drain started", extra={"fields": {"signal": signal.Signals(sig).name}})
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        # From the loop (not from the signal handler): queued chats that cannot finish within
        # the drain get their 503 now; the others stay queued and are served.
        self._gate.drain_until(self._drain_seconds)
        log.info(
            "draining",
            extra={
                "fields": {
                    "open": self._gate.inflight,
                    "queued": self._gate.queued,
                    "drain_seconds": self._drain_seconds,
                }
            },
        )
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        gate = self._gate
        if not await gate.wait_idle(self._drain_seconds):
            log.info(
                "drain timeout, aborting chats",
                extra={"fields": {"open": gate.inflight, "queued": gate.queued}},
            )
            gate.refuse_queued()
            gate.abort_all("shutting_down")
            await gate.wait_idle(_ABORT_GRACE_SECONDS)
        log.info("drain finished", extra={"fields": {"open": gate.inflight}})
        self.should_exit = True


def _pick(module: str, fallback: str) -> str:
    return module if importlib.util.find_spec(module) is not None else fallback


def main() -> int:
    """Run the backend until it is told to stop; return the process exit code."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        logging.config.dictConfig(log_config("info"))
        log.error("invalid settings", extra={"fields": {"error": str(exc)}})
        return 2
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop=_pick("uvloop", "asyncio"),
        http=_pick("httptools", "h11"),
        lifespan="on",
        log_config=log_config(settings.log_level),
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        # Nothing in the backend reads the client address, so forwarded headers are not parsed.
        proxy_headers=False,
        timeout_graceful_shutdown=_UVICORN_GRACE_SECONDS,
    )
    server = DrainingServer(config, app.state.gate, settings.shutdown_timeout)
    # Everything imported so far lives as long as the process: keep it out of the collector's
    # scans, and collect the young generation less often (each streamed chunk allocates).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
