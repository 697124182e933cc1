"""The API server's connections: the limit on request headers, and the client certificate.

Both happen below the app, where uvicorn's protocol sees the connection:

The API server sets Go's `http.Server.MaxHeaderBytes` to 1 MiB
(`k8s.io/apiserver/pkg/server/secure_serving.go`), so a request whose head is larger is
answered 431 before it is authenticated, and its bytes are never kept. uvicorn's httptools
protocol has no such limit (llhttp buffers a header value until it ends), so this subclass
counts the bytes of each request head as they arrive and closes the connection with a 431
Status once they pass the limit.

The TLS layer (`sandbox.apiserver.tls`) asks each client for a certificate, as the API
server's `RequestClientCert`, and tells whether OpenSSL verified it against the sandbox's CA;
when one was presented, it goes into each request's ASGI scope (`CLIENT_CERT_SCOPE_KEY`: a
`ClientCertificate`, its `CN`, its `O` values and the verdict), where authentication reads the
user and groups from it, as the API server's x509 authenticator does.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sandbox.apiserver.tls import CLIENT_CERTIFICATE, ClientCertificate

CLIENT_CERT_SCOPE_KEY = "kube_llm_client_cert"
"""Scope key of the connection's `ClientCertificate`, when the client presented one."""

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


class ApiServerProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a 1 MiB limit on each request's head, and the
    client certificate's subject handed to the app."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._client_cert: ClientCertificate | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._client_cert = transport.get_extra_info(CLIENT_CERTIFICATE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._client_cert is not None:
            self.scope[CLIENT_CERT_SCOPE_KEY] = self._client_cert  # type: ignore[literal-required]

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
