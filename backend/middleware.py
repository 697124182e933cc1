"""Pure ASGI middleware: the ``X-Served-By`` header, and a last-resort JSON 500."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.errors import error_response

__all__ = ["ServedByMiddleware"]

log = logging.getLogger("backend.app")


class ServedByMiddleware:
    """Add ``X-Served-By: <pod name>`` to every HTTP response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, adding the header when the response starts."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = (b"x-served-by", scope["app"].state.served_by)
        started = False

        async def send_with_header(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        except Exception:
            if started:
                raise
            # Reported here, once; the client still gets an OpenAI-shaped error with the header.
            # (Starlette's own 500 handler sits outside this middleware, so it would not add it.)
            log.exception("unhandled error", extra={"fields": {"path": scope.get("path")}})
            response = error_response(500, "Internal server error.", code="internal_error")
            await response(scope, receive, send_with_header)
