"""The HTTP clients to the engine: aiohttp (the default) and httpx2, behind one small interface.

The engine sits next to the backend (loopback in a pod), so what the client costs per request
and per streamed chunk is most of what the gateway adds. aiohttp parses HTTP in C (llhttp) and
pools keep-alive connections; ``bench/proxy_overhead.py`` measures it against httpx2's own
transport and against talking to the engine directly. ``ENGINE_TRANSPORT=httpx`` keeps httpx2
as a way back.

Both clients raise only the ``Engine*`` errors below, so the relay does not depend on either
library, and neither ever sends a chat twice: aiohttp retries a request on a kept-alive
connection the server had closed only for idempotent methods, and a chat is a POST.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import aiohttp
import httpx2
import yarl

from backend.settings import Settings

__all__ = [
    "CHAT_PATH",
    "MODELS_PATH",
    "AiohttpEngineClient",
    "EngineBroken",
    "EngineClient",
    "EngineError",
    "EngineNoConnection",
    "EngineReply",
    "EngineTimedOut",
    "EngineUnreachable",
    "HttpxEngineClient",
    "open_engine_client",
]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
_STREAM_HEADERS = {
    "content-type": "application/json",
    "accept": "text/event-stream",
    "accept-encoding": "identity",
    "user-agent": "kube-llm-backend",
}
_PLAIN_HEADERS = {**_STREAM_HEADERS, "accept": "application/json"}
# Idle connections are dropped before a typical server's own idle timeout (uvicorn's is 5 s).
_KEEPALIVE_SECONDS = 4.0


class EngineError(Exception):
    """The engine could not be asked, or its answer could not be read."""


class EngineUnreachable(EngineError):
    """No connection to the engine (refused, or none free or made in time): nothing was sent."""


class EngineNoConnection(EngineUnreachable):
    """No connection came in time (every pooled one busy, or the engine slow to accept)."""


class EngineTimedOut(EngineError):
    """The engine stopped answering within the client's own (safety-net) timeout."""


class EngineBroken(EngineError):
    """The connection broke, or the engine broke the protocol, after the request went out."""


class EngineReply(Protocol):
    """One response from the engine, its body read as it arrives."""

    @property
    def status(self) -> int:
        """The HTTP status code."""

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (lower case), if the engine sent it."""

    def chunks(self) -> AsyncIterator[bytes]:
        """The body, in the pieces it arrives in (raises ``EngineError``)."""

    async def aclose(self) -> None:
        """Give the connection back (a body read to its end) or close it (one left unread)."""


class EngineClient(Protocol):
    """What the backend needs of an HTTP client to the engine."""

    name: str

    async def send_chat(self, body: bytes, *, stream: bool) -> EngineReply:
        """POST ``body`` to the chat path once; return when the response head has arrived."""

    async def get_models(self, seconds: float) -> tuple[int, bytes]:
        """GET the model list within ``seconds``; return the status and the body."""

    async def aclose(self) -> None:
        """Close every connection."""


def _connections(settings: Settings) -> int:
    # Every admitted chat holds one connection; a few more serve the readiness checks.
    return settings.max_inflight + 4


# aiohttp ------------------------------------------------------------------------------------


class _AiohttpReply:
    """An ``EngineReply`` over an ``aiohttp.ClientResponse``."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    async def chunks(self) -> AsyncIterator[bytes]:
        # readany returns whatever has arrived (under load, several events at once), b"" at
        # the end; called directly rather than through iter_any's iterator, one layer less
        # per chunk.
        read = self._response.content.readany
        try:
            while data := await read():
                yield data
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise EngineTimedOut("the engine sent nothing in time") from exc
        except aiohttp.ClientError as exc:
            raise EngineBroken(f"the engine connection broke: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        # A body read to its end returns the connection to the pool; otherwise it is closed,
        # so no half-read (or paused) connection is ever reused.
        self._response.release()


class AiohttpEngineClient:
    """The engine client on one ``aiohttp.ClientSession`` (C parser, keep-alive pool)."""

    name = "aiohttp"

    def __init__(self, settings: Settings) -> None:
        """Pool up to MAX_INFLIGHT + 4 connections to ``settings.engine_url``."""
        connector = aiohttp.TCPConnector(
            limit=_connections(settings),
            limit_per_host=0,
            keepalive_timeout=_KEEPALIVE_SECONDS,
            use_dns_cache=True,
        )
        # The relay enforces the first-token, per-chunk and total deadlines itself, and every
        # read of the engine runs inside them (the warm-up inside REQUEST_TIMEOUT, the model
        # listing with a total of its own), so there is no sock_read: it could never fire
        # before REQUEST_TIMEOUT had, and aiohttp re-arms its timer on every chunk received.
        # "connect" includes the wait for a free pooled connection.
        timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.engine_connect_timeout, sock_read=None
        )
        # Whole URLs, parsed once: ENGINE_URL may carry a path of its own.
        self._chat_url = yarl.URL(settings.engine_url + CHAT_PATH)
        self._models_url = yarl.URL(settings.engine_url + MODELS_PATH)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            trust_env=False,
            raise_for_status=False,
            skip_auto_headers=("User-Agent",),
        )

    async def send_chat(self, body: bytes, *, stream: bool) -> EngineReply:
        """POST ``body`` to the chat path once; return when the response head has arrived."""
        headers = _STREAM_HEADERS if stream else _PLAIN_HEADERS
        try:
            response = await self._session.post(
                self._chat_url, data=body, headers=headers, allow_redirects=False
            )
        except Exception as exc:
            raise _aiohttp_error(exc) from exc
        return _AiohttpReply(response)

    async def get_models(self, seconds: float) -> tuple[int, bytes]:
        """GET the model list within ``seconds``; return the status and the body."""
        try:
            async with self._session.get(
                self._models_url,
                timeout=aiohttp.ClientTimeout(total=seconds),
                allow_redirects=False,
            ) as response:
                return response.status, await response.read()
        except Exception as exc:
            raise _aiohttp_error(exc) from exc

    async def aclose(self) -> None:
        """Close every connection."""
        await self._session.close()


def _aiohttp_error(exc: Exception) -> Exception:
    """The ``EngineError`` for an exception aiohttp raised, or ``exc`` itself if none fits."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return EngineNoConnection(f"no connection to the engine in time: {type(exc).__name__}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return EngineUnreachable(f"engine unreachable: {type(exc).__name__}")
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return EngineTimedOut(f"engine did not answer in time: {type(exc).__name__}")
    if isinstance(exc, aiohttp.ClientError):
        return EngineBroken(f"engine connection broke: {type(exc).__name__}")
    return exc


# httpx2 -------------------------------------------------------------------------------------


class _HttpxReply:
    """An ``EngineReply`` over an ``httpx2.Response`` opened with ``stream=True``."""

    __slots__ = ("_response",)

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.aiter_raw():
                yield data
        except httpx2.HTTPError as exc:
            raise _httpx_error(exc) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxEngineClient:
    """The engine client on one ``httpx2.AsyncClient`` with its own (httpcore) transport."""

    name = "httpx"

    def __init__(self, settings: Settings) -> None:
        """Pool up to MAX_INFLIGHT + 4 connections to ``settings.engine_url``."""
        connections = _connections(settings)
        limits = httpx2.Limits(
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=_KEEPALIVE_SECONDS,
        )
        timeout = httpx2.Timeout(
            connect=settings.engine_connect_timeout,
            read=settings.request_timeout,
            write=settings.engine_read_timeout,
            pool=settings.engine_connect_timeout,
        )
        self._client = httpx2.AsyncClient(
            base_url=settings.engine_url,
            timeout=timeout,
            transport=httpx2.AsyncHTTPTransport(limits=limits, trust_env=False, retries=0),
            trust_env=False,
            follow_redirects=False,
        )
        self._chat_url = self._client.base_url.join(CHAT_PATH)

    async def send_chat(self, body: bytes, *, stream: bool) -> EngineReply:
        """POST ``body`` to the chat path once; return when the response head has arrived."""
        headers = _STREAM_HEADERS if stream else _PLAIN_HEADERS
        request = httpx2.Request("POST", self._chat_url, content=body, headers=headers)
        try:
            response = await self._client.send(request, stream=True)
        except httpx2.HTTPError as exc:
            raise _httpx_error(exc) from exc
        return _HttpxReply(response)

    async def get_models(self, seconds: float) -> tuple[int, bytes]:
        """GET the model list within ``seconds``; return the status and the body."""
        try:
            response = await self._client.get(MODELS_PATH, timeout=seconds)
        except httpx2.HTTPError as exc:
            raise _httpx_error(exc) from exc
        return response.status_code, response.content

    async def aclose(self) -> None:
        """Close every connection."""
        await self._client.aclose()


def _httpx_error(exc: httpx2.HTTPError) -> EngineError:
    if isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout):
        return EngineNoConnection(f"no connection to the engine in time: {type(exc).__name__}")
    if isinstance(exc, httpx2.ConnectError):
        return EngineUnreachable(f"engine unreachable: {type(exc).__name__}")
    if isinstance(exc, httpx2.TimeoutException):
        return EngineTimedOut(f"engine did not answer in time: {type(exc).__name__}")
    return EngineBroken(f"engine connection broke: {type(exc).__name__}")


def open_engine_client(settings: Settings) -> EngineClient:
    """Return the engine client ``ENGINE_TRANSPORT`` names (call inside the running loop)."""
    if settings.engine_transport == "httpx":
        return HttpxEngineClient(settings)
    return AiohttpEngineClient(settings)
