"""The engine side: one HTTP client, model listing and server-sent event parsing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx2

from backend.settings import Settings
from backend.transport import LeanHTTPTransport

__all__ = [
    "CHAT_PATH",
    "MODELS_PATH",
    "EngineBusy",
    "EngineUnavailable",
    "engine_transport",
    "list_models",
    "model_listed",
    "open_engine_client",
    "sse_batches",
]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"


class EngineUnavailable(Exception):
    """The engine could not be asked, or answered something other than a model list."""


class EngineBusy(EngineUnavailable):
    """The engine accepted the request for its models but did not answer in time."""


def engine_transport(settings: Settings) -> httpx2.AsyncBaseTransport:
    """Return the transport to the engine that ``ENGINE_TRANSPORT`` names.

    ``lean`` (the default) is the keep-alive HTTP/1.1 transport of backend.transport; ``httpx``
    is httpx2's own (httpcore), the stock way back. Both get the same limits, and the client's
    timeouts apply to either.
    """
    # Every admitted chat holds one connection; a few more serve the readiness checks. Idle
    # connections are dropped before a typical server's own idle timeout (uvicorn's is 5 s).
    connections = settings.max_inflight + 4
    limits = httpx2.Limits(
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=4.0,
    )
    if settings.engine_transport == "httpx":
        return httpx2.AsyncHTTPTransport(limits=limits, trust_env=False)
    return LeanHTTPTransport(limits)


def open_engine_client(
    settings: Settings, transport: httpx2.AsyncBaseTransport
) -> httpx2.AsyncClient:
    """Return the one client the app uses to talk to the engine, over ``transport``.

    The read timeout is only a safety net: the chat relay enforces the first-token, per-chunk
    and total deadlines itself, so the engine may take as long to its first byte as the
    first-token deadline allows.
    """
    timeout = httpx2.Timeout(
        connect=settings.engine_connect_timeout,
        read=settings.request_timeout,
        write=settings.engine_read_timeout,
        pool=settings.engine_connect_timeout,
    )
    return httpx2.AsyncClient(
        base_url=settings.engine_url,
        timeout=timeout,
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        headers={"accept-encoding": "identity"},
    )


async def list_models(client: httpx2.AsyncClient, seconds: float) -> list[str]:
    """Return the model ids the engine lists on ``GET /v1/models``."""
    try:
        response = await client.get(MODELS_PATH, timeout=seconds)
    except (httpx2.ReadTimeout, httpx2.PoolTimeout) as exc:
        raise EngineBusy(f"engine did not list its models within {seconds:g} s") from exc
    except httpx2.HTTPError as exc:
        raise EngineUnavailable(f"engine unreachable: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise EngineUnavailable(f"engine answered {response.status_code} on {MODELS_PATH}")
    try:
        body: Any = response.json()
        return [str(item["id"]) for item in body["data"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineUnavailable(f"engine sent an unreadable model list: {exc!r}") from exc


def _base_name(model: str) -> str:
    return model.removesuffix(":latest")


def model_listed(model: str, listed: Iterable[str]) -> bool:
    """Say whether ``model`` is among ``listed``; ``name`` and ``name:latest`` are the same."""
    wanted = _base_name(model)
    return any(_base_name(item) == wanted for item in listed)


async def sse_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """Yield the ``data`` payloads of the server-sent events in a byte stream, in batches.

    Events end with a blank line; chunks may split them anywhere. Each batch holds the events
    completed by one chunk. Comment lines and other fields are skipped; multi-line data is
    joined with newlines, as the SSE spec says.
    """
    buffer = b""
    async for chunk in chunks:
        buffer = buffer + chunk if buffer else chunk
        if b"\r" in buffer:
            # A lone trailing CR may be the first half of a CRLF split across chunks.
            keep_cr = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buffer = buffer[:-1] + b"\r"
        batch: list[bytes] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            data = _event_data(buffer[start:end])
            if data is not None:
                batch.append(data)
            start = end + 2
        if start:
            buffer = buffer[start:]
        if batch:
            yield batch


def _event_data(event: bytes) -> bytes | None:
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]
    lines = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines) if lines else None


def parse_json(data: bytes) -> Any:
    """Parse engine JSON, refusing NaN and infinities (they are not JSON)."""
    return json.loads(data, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
