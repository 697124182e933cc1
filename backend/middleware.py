"""Pure ASGI middleware: the ``X-Served-By`` header, and a last-resort JSON 500."""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.errors import error_body

__all__ = ["ServedByMiddleware"]

log = logging.getLogger("backend.app")

_INTERNAL_ERROR = json.dumps(
    error_body("Internal server error.", type_="server_error", code="internal_error")
).encode()


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
            log.exception("unhandled error", extra={"fields": {"path": scope.get("path")}})
            await send_with_header(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_INTERNAL_ERROR)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _INTERNAL_ERROR})
