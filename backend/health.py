"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (the engine can serve the model)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import dataclass

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from backend.engine import EngineBusy, EngineUnavailable, list_models, model_listed
from backend.engine_clients import EngineClient, EngineError
from backend.errors import error_response
from backend.settings import Settings
from backend.state import backend_state

__all__ = ["EngineCheck", "Readiness", "healthz", "readyz"]

# Probes time out after 1 s by default in Kubernetes; the engine check must answer first.
ENGINE_CHECK_TIMEOUT = 0.8
# How long a probe waits for a warm-up chat before it answers "warming up".
WARMUP_WAIT_SECONDS = 0.2

log = logging.getLogger("backend.health")


@dataclass(frozen=True, slots=True)
class EngineCheck:
    """The result of asking the engine for its models."""

    ready: bool
    reason: str


class Readiness:
    """Checks the engine lists the model, at most once per ``ready_cache_seconds``.

    An engine that is busy generating may be slow to list its models (llama-cpp-python's
    server answers the listing only between generations). A pod whose engine is streaming
    chats is serving, so while the engine has answered a chat within the last
    ``ENGINE_READ_TIMEOUT``, a listing that times out still counts as ready: otherwise every
    pod turns unready exactly when load peaks, and the Service sheds the load it should carry.
    An engine that refuses connections, or hangs without answering any chat, is not ready.

    With ``WARMUP``, the engine must also have answered one chat of a single token before the
    pod is ready: Ollama loads a model on its first chat, and without this the first user on
    every new pod waits for the load. The warm-up runs in the background; probes say
    "warming up" until it succeeds, and a failed one is tried again at the next check.
    """

    def __init__(self, settings: Settings, client: EngineClient) -> None:
        """Check ``settings.model`` through ``client``."""
        self._settings = settings
        self._client = client
        self._lock = anyio.Lock()
        self._checked_at = -math.inf
        self._answered_at = -math.inf
        self._last = EngineCheck(False, "not checked yet")
        self._warm = not settings.warmup
        self._warmup: asyncio.Task[None] | None = None
        self._warmup_state = "warming up the model"

    def engine_answered(self) -> None:
        """Note that the engine just answered a chat (headers, or a chunk of its reply)."""
        self._answered_at = anyio.current_time()

    def _answering(self) -> bool:
        return anyio.current_time() - self._answered_at < self._settings.engine_read_timeout

    def _fresh(self) -> bool:
        return anyio.current_time() - self._checked_at < self._settings.ready_cache_seconds

    async def check(self) -> EngineCheck:
        """Return a recent engine check, asking the engine only when the cached one is stale."""
        if self._fresh():
            return self._last
        async with self._lock:  # concurrent probes share one engine call
            if self._fresh():
                return self._last
            try:
                listed = await list_models(self._client, ENGINE_CHECK_TIMEOUT)
            except EngineBusy as exc:
                if self._answering():
                    result = EngineCheck(True, "engine busy answering chats")
                else:
                    result = EngineCheck(False, str(exc))
            except EngineUnavailable as exc:
                result = EngineCheck(False, str(exc))
            else:
                if model_listed(self._settings.model, listed):
                    result = await self._warmed()
                else:
                    result = EngineCheck(False, f"engine does not list {self._settings.model}")
            self._last = result
            self._checked_at = anyio.current_time()
            return result

    async def _warmed(self) -> EngineCheck:
        """Ready once warm; otherwise start (or go on with) the warm-up, briefly awaited."""
        if not self._warm:
            if self._warmup is None or self._warmup.done():
                self._warmup = asyncio.create_task(self._warm_up())
            # A fast engine is warm within the probe's budget; a loading one keeps going.
            await asyncio.wait({self._warmup}, timeout=WARMUP_WAIT_SECONDS)
        if self._warm:
            return EngineCheck(True, "engine lists the model")
        return EngineCheck(False, self._warmup_state)

    async def _warm_up(self) -> None:
        settings = self._settings
        payload = {
            "model": settings.model,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 1,
            "stream": False,
        }
        started = time.perf_counter()
        status: int | None = None
        with anyio.move_on_after(settings.request_timeout):
            try:
                reply = await self._client.send_chat(json.dumps(payload).encode(), stream=False)
                try:
                    status = reply.status
                    async for _ in reply.chunks():
                        pass  # read to the end, so the connection is reused
                finally:
                    await reply.aclose()
            except EngineError as exc:
                self._warmup_state = f"warm-up chat failed: {type(exc).__name__}"
                return
        if status != 200:
            self._warmup_state = (
                "warm-up chat timed out" if status is None else f"warm-up chat answered {status}"
            )
            return
        self._warm = True
        seconds = time.perf_counter() - started
        log.info("engine warmed up", extra={"fields": {"warmup_ms": round(seconds * 1000, 1)}})

    async def aclose(self) -> None:
        """Stop a warm-up still running (the app is shutting down)."""
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
            await asyncio.gather(self._warmup, return_exceptions=True)


async def healthz(request: Request) -> Response:
    """Serve ``GET /healthz``: liveness, which never depends on the engine."""
    state = backend_state(request)
    return JSONResponse({"status": "ok", "pod": state.settings.pod_name})


async def readyz(request: Request) -> Response:
    """Serve ``GET /readyz``: ready when not draining and the engine lists the model."""
    state = backend_state(request)
    if state.gate.draining:
        return error_response(503, "The server is shutting down.", code="shutting_down")
    result = await state.readiness.check()
    if not result.ready:
        return error_response(503, f"Not ready: {result.reason}.", code="engine_not_ready")
    return JSONResponse(
        {"status": "ready", "pod": state.settings.pod_name, "model": state.settings.model}
    )
