"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (the engine can serve the model)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import anyio
import httpx2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from backend.engine import EngineUnavailable, list_models, model_listed
from backend.errors import error_response
from backend.settings import Settings
from backend.state import backend_state

__all__ = ["EngineCheck", "Readiness", "healthz", "readyz"]

# Probes time out after 1 s by default in Kubernetes; the engine check must answer first.
ENGINE_CHECK_TIMEOUT = 0.8


@dataclass(frozen=True, slots=True)
class EngineCheck:
    """The result of asking the engine for its models."""

    ready: bool
    reason: str


class Readiness:
    """Checks the engine lists the model, at most once per ``ready_cache_seconds``."""

    def __init__(self, settings: Settings, client: httpx2.AsyncClient) -> None:
        """Check ``settings.model`` through ``client``."""
        self._settings = settings
        self._client = client
        self._lock = anyio.Lock()
        self._checked_at = -math.inf
        self._last = EngineCheck(False, "not checked yet")

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
            except EngineUnavailable as exc:
                result = EngineCheck(False, str(exc))
            else:
                if model_listed(self._settings.model, listed):
                    result = EngineCheck(True, "engine lists the model")
                else:
                    result = EngineCheck(False, f"engine does not list {self._settings.model}")
            self._last = result
            self._checked_at = anyio.current_time()
            return result


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
