"""The Starlette app: routes, middleware, and the lifespan that owns the engine client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from backend.admission import Gate
from backend.chat import chat_completions, models_endpoint
from backend.engine_clients import open_engine_client
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
    client = open_engine_client(settings)
    log.info(
        "engine client",
        extra={
            "fields": {
                "engine_url": settings.engine_url,
                "engine_transport": settings.engine_transport,
                "client_class": type(client).__name__,
            }
        },
    )
    readiness = Readiness(settings, client)
    try:
        yield {
            "backend": BackendState(
                settings=settings,
                client=client,
                gate=app.state.gate,
                metrics=app.state.metrics,
                readiness=readiness,
            )
        }
    finally:
        await readiness.aclose()
        await client.aclose()


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the backend app from ``settings`` (by default, from the environment)."""
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
    app.state.served_by = settings.pod_name.encode("ascii")
    return app
