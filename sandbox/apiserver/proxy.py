"""The API server's service and pod proxies.

`/api/v1/namespaces/NS/services/[SCHEME:]NAME[:PORT]/proxy/PATH` spreads requests round-robin
over the Service's ready endpoints (pods that are Ready and not terminating), and
`/api/v1/namespaces/NS/pods/[SCHEME:]NAME[:PORT]/proxy/PATH` reaches one pod. Responses stream
through chunk by chunk, so Server-Sent Events arrive as the backend sends them. As the real
API server does, the caller's `Authorization` header is not forwarded to the pod.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from sandbox.apiserver.context import ServerContext
from sandbox.store.endpoints import pick_endpoint
from sandbox.store.store import PODS, ApiError

# Hop-by-hop headers (RFC 9110 section 7.6.1): never forwarded either way.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
# The caller's credentials stay with the API server; the client sets host and length anew.
_DROP_REQUEST = _HOP_BY_HOP | {"authorization", "host", "content-length"}
# The API server's own HTTP server writes these.
_DROP_RESPONSE = _HOP_BY_HOP | {"date", "server"}


def split_proxy_name(text: str) -> tuple[str, str | None]:
    """`[scheme:]name[:port]` into name and port (None when absent)."""
    parts = text.split(":")
    if len(parts) == 3:
        return parts[1], parts[2] or None
    if len(parts) == 2:
        if parts[0] in ("http", "https"):
            return parts[1], None
        return parts[0], parts[1] or None
    return text, None


def _unavailable(message: str) -> Response:
    error = ApiError(503, "ServiceUnavailable", message)
    return JSONResponse(error.status(), status_code=error.code)


async def service_proxy(
    server: ServerContext, request: Request, namespace: str, name_text: str, tail: str
) -> Response:
    """Forward a request to one ready pod behind a Service, round-robin (`pick_endpoint`)."""
    name, port_text = split_proxy_name(name_text)
    # 404 for no such Service, 503 for no such port or no ready pod: a Status, as upstream's.
    endpoint = pick_endpoint(
        server.store, server.proxy_rotation, server.runtime.pod_port, namespace, name, port_text
    )
    return await forward(server, request, endpoint.port, tail)


async def pod_proxy(
    server: ServerContext, request: Request, namespace: str, name_text: str, tail: str
) -> Response:
    """Forward a request to one pod's container port."""
    name, port_text = split_proxy_name(name_text)
    pod = server.store.get(PODS, namespace, name)
    if port_text is None:
        # No port named: the first one a container declares, as the API server picks it.
        declared = [
            port
            for container in (pod.get("spec") or {}).get("containers") or []
            for port in container.get("ports") or []
        ]
        port_text = str(declared[0].get("containerPort")) if declared else "80"
    target: str | int = int(port_text) if port_text.isdigit() else port_text
    port = server.runtime.pod_port(namespace, name, target)
    if port is None:
        return _unavailable(
            f"error trying to reach service: dial tcp 127.0.0.1:{port_text}: connect: "
            "connection refused"
        )
    return await forward(server, request, port, tail)


async def _stream(request: Request) -> AsyncIterator[bytes]:
    """The request body, chunk by chunk as the client sends it."""
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def forward(server: ServerContext, request: Request, port: int, tail: str) -> Response:
    """Send the request to 127.0.0.1:port and stream the answer back."""
    assert server.http is not None
    path = tail or "/"
    query = request.scope.get("query_string", b"").decode()
    url = f"http://127.0.0.1:{port}{path}" + (f"?{query}" if query else "")
    headers = [
        (key, value) for key, value in request.headers.items() if key.lower() not in _DROP_REQUEST
    ]
    # The body streams through as it arrives, never held whole (a chat may be large, and the
    # backend enforces its own limit); a request that declares none sends none.
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    if "content-length" in request.headers:
        headers.append(("content-length", request.headers["content-length"]))
    upstream_request = server.http.build_request(
        request.method, url, headers=headers, content=_stream(request) if has_body else None
    )
    try:
        upstream = await server.http.send(upstream_request, stream=True)
    except httpx2.HTTPError as error:
        return _unavailable(
            f"error trying to reach service: dial tcp 127.0.0.1:{port}: {type(error).__name__}"
        )

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx2.HTTPError:
            # The pod went away mid-response: end the stream, as a dropped connection would.
            return
        finally:
            await upstream.aclose()

    response_headers = {
        key: value for key, value in upstream.headers.items() if key.lower() not in _DROP_RESPONSE
    }
    return StreamingResponse(relay(), status_code=upstream.status_code, headers=response_headers)
