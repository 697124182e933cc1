"""The Starlette app: routes, middleware, and the lifespan that owns the engine client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from backend.admission import Gate
from backend.chat import chat_completions, models_endpoint
from backend.engine import CHAT_PATH, engine_transport, open_engine_client
from backend.errors import exception_handlers
from backend.health import Readiness, healthz, readyz
from backend.metrics import Metrics, metrics_endpoint
from backend.middleware import ServedByMiddleware
from backend.openapi import openapi_endpoint
from backend.settings import Settings
from backend.state import BackendState

__all__ = ["create_app"]

log = logging.getLogger("backend.app")

routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/models", models_endpoint, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
    Route("/openapi.json", openapi_endpoint, methods=["GET"], include_in_schema=False),
]

middleware = [Middleware(ServedByMiddleware)]


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, BackendState]]:
    """Open the one engine client for the app's lifetime and yield the shared state."""
    settings: Settings = app.state.settings
    transport: httpx2.AsyncBaseTransport | None = app.state.engine_transport
    if transport is None:
        transport = engine_transport(settings)
    log.info(
        "engine client",
        extra={
            "fields": {
                "engine_url": settings.engine_url,
                "engine_transport": settings.engine_transport,
                "transport_class": type(transport).__name__,
            }
        },
    )
    async with open_engine_client(settings, transport) as client:
        readiness = Readiness(settings, client)
        try:
            yield {
                "backend": BackendState(
                    settings=settings,
                    client=client,
                    chat_url=client.base_url.join(CHAT_PATH),
                    gate=app.state.gate,
                    metrics=app.state.metrics,
                    readiness=readiness,
                )
            }
        finally:
            await readiness.aclose()


def create_app(
    settings: Settings | None = None,
    *,
    engine_transport: httpx2.AsyncBaseTransport | None = None,
) -> Starlette:
    """Build the backend app; ``engine_transport`` replaces the network (tests only)."""
    settings = Settings.from_env() if settings is None else settings
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    metrics = Metrics()
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.gate = Gate(
        settings.max_inflight, metrics, settings.max_queue, settings.queue_timeout
    )
    app.state.engine_transport = engine_transport
    app.state.served_by = settings.pod_name.encode("ascii")
    return app
