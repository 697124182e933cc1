"""The API server's limit on request headers, enforced before any request reaches the app.

The API server sets Go's `http.Server.MaxHeaderBytes` to 1 MiB
(`k8s.io/apiserver/pkg/server/secure_serving.go`), so a request whose head is larger is
answered 431 before it is authenticated, and its bytes are never kept. uvicorn's httptools
protocol has no such limit (llhttp buffers a header value until it ends), so this subclass
counts the bytes of each request head as they arrive and closes the connection with a 431
Status once they pass the limit.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 1024 * 1024
"""The API server's `MaxHeaderBytes` (1 MiB): request line plus headers."""


def _too_large_response() -> bytes:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"request headers larger than {MAX_HEADER_BYTES} bytes",
        "reason": "RequestHeaderFieldsTooLarge",
        "code": 431,
    }
    body = json.dumps(status).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class BoundedHeadersProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a 1 MiB limit on each request's head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        """Count the bytes of the request head before the parser buffers them."""
        if self._in_head:
            if self._head_bytes > MAX_HEADER_BYTES:
                return  # refused already; the connection is closing
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self.transport.write(_too_large_response())
                self.transport.close()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        """The head ended within the limit: the body is limited elsewhere (413)."""
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The next bytes on this connection begin another request's head."""
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
