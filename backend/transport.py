"""A lean HTTP/1.1 transport for ``httpx2.AsyncClient``, for the engine on plain HTTP.

The engine is next to the backend (loopback in a pod), so per-request and per-chunk CPU is
what the proxy costs. httpcore's pool and h11 parser cost about half a millisecond per request
and tens of microseconds per streamed chunk; this transport keeps keep-alive connections as
asyncio protocols and parses responses with httptools (llhttp, in C), at a fraction of that.
It serves ``http://`` only; ``https://`` engines go through httpx2's own transport.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httptools
import httpx2

__all__ = ["LeanHTTPTransport"]

_PAUSE_CHUNKS = 64  # buffered body chunks before the socket stops being read


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; parses one response at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.key: tuple[str, int] = ("", 0)
        self._parser: Any = None
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._headers_done = False
        self._until_close = False
        self._complete = False
        self._keep_alive = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None
        self._paused = False
        self.got_bytes = False

    # asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self._parser is None:
            # Bytes while no request is out: the server broke the protocol; drop the connection.
            self._fail(httpx2.RemoteProtocolError("unexpected data from the engine"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx2.RemoteProtocolError(f"invalid HTTP from the engine: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is None or self._complete:
            return
        if self._headers_done and self._until_close:
            # A body with neither Content-Length nor chunked encoding ends with the connection.
            self._complete = True
            self._wake()
        else:
            self._fail(httpx2.RemoteProtocolError("the engine closed the connection mid-response"))

    # httptools callbacks -----------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._until_close = not any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self._headers
        )
        self._headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        if len(self._chunks) >= _PAUSE_CHUNKS and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()
        self._wake()

    # used by the transport ---------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        self._error = error
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._wake()

    async def _wait(self, seconds: float | None) -> None:
        waiter = self.loop.create_future()
        self._waiter = waiter
        timer = None
        if seconds is not None:
            timer = self.loop.call_later(seconds, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def start(self, head: bytes, body: bytes) -> None:
        """Send a request and get ready for its response."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise httpx2.RemoteProtocolError("the engine closed the connection")
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._headers = []
        self._headers_done = False
        self._until_close = False
        self._complete = False
        self._keep_alive = False
        self._chunks.clear()
        self.got_bytes = False
        if len(body) < 65536:
            self.transport.write(head + body)  # one write, one segment
        else:
            self.transport.write(head)
            self.transport.write(body)

    async def response_head(self, seconds: float | None) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Wait for the status line and headers."""
        while not self._headers_done:
            if self._error is not None:
                raise self._error
            if self.closed:
                raise httpx2.RemoteProtocolError("the engine closed the connection")
            await self._wait(seconds)
        return self._status, self._headers

    async def body_chunks(self, seconds: float | None) -> AsyncIterator[bytes]:
        """Yield the (de-chunked) body as it arrives."""
        chunks = self._chunks
        while True:
            if chunks:
                # Everything already received goes out as one piece: under load the relay then
                # forwards several events at once.
                if len(chunks) == 1:
                    chunk = chunks.popleft()
                else:
                    chunk = b"".join(chunks)
                    chunks.clear()
                if self._paused and self.transport:
                    self._paused = False
                    self.transport.resume_reading()
                yield chunk
            elif self._complete:
                return
            elif self._error is not None:
                raise self._error
            else:
                await self._wait(seconds)

    @property
    def reusable(self) -> bool:
        """Whether the response was read to its end and the server keeps the connection."""
        return self._complete and self._keep_alive and not self.closed and self._error is None

    def finish(self) -> None:
        """Forget the finished response, keeping the connection for the next request."""
        self._parser = None

    def close(self) -> None:
        """Close the connection."""
        self.closed = True
        self._parser = None
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx2.ReadTimeout("the engine sent nothing in time"))


class _ResponseStream(httpx2.AsyncByteStream):
    """The body of one response; returns its connection to the pool when done."""

    def __init__(
        self, pool: LeanHTTPTransport, connection: _Connection, timeout: float | None
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._timeout = timeout
        self._released = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._connection.body_chunks(self._timeout)

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._pool._release(self._connection)


class LeanHTTPTransport(httpx2.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 over asyncio protocols with an httptools parser (``http://`` only)."""

    def __init__(self, limits: httpx2.Limits | None = None) -> None:
        """Honour ``limits``: requests in flight (``max_connections``; more wait up to the pool
        timeout), idle connections kept (``max_keepalive_connections``) and for how long
        (``keepalive_expiry``)."""
        limits = limits or httpx2.Limits(
            max_connections=None, max_keepalive_connections=16, keepalive_expiry=4.0
        )
        self._limits = limits
        self._max_idle = limits.max_keepalive_connections or 0
        self._keepalive_expiry = limits.keepalive_expiry or 0.0
        self._slots = asyncio.Semaphore(limits.max_connections) if limits.max_connections else None
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._fallback: httpx2.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` on an idle or new connection and return the streamed response."""
        url = request.url
        if url.scheme != "http":
            if self._fallback is None:
                self._fallback = httpx2.AsyncHTTPTransport(limits=self._limits, trust_env=False)
            return await self._fallback.handle_async_request(request)
        timeouts = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read")
        key = (url.host, url.port or 80)
        body = await request.aread()
        head = _request_head(request, len(body))
        slots = self._slots
        if slots is not None:
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await slots.acquire()
            except TimeoutError:
                raise httpx2.PoolTimeout("every engine connection is busy") from None
        try:
            for attempt in (1, 2):
                connection, reused = await self._acquire(key, timeouts.get("connect"))
                try:
                    connection.start(head, body)
                    status, headers = await connection.response_head(read_timeout)
                except httpx2.RemoteProtocolError:
                    self._discard(connection)
                    # A kept-alive connection the engine closed just before the request: the
                    # request was never read, so it is sent once more on a fresh connection.
                    if reused and not connection.got_bytes and attempt == 1:
                        continue
                    raise
                except BaseException:
                    self._discard(connection)
                    raise
                break
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        return httpx2.Response(
            status,
            headers=headers,
            stream=_ResponseStream(self, connection, read_timeout),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _acquire(
        self, key: tuple[str, int], connect_timeout: float | None
    ) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if (
                not connection.closed
                and connection.key == key
                and now - connection.idle_since < self._keepalive_expiry
            ):
                return connection, True
            self._discard(connection)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop), key[0], key[1]
                )
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"no connection to the engine at {key}") from None
        except OSError as exc:
            raise httpx2.ConnectError(f"cannot connect to the engine at {key}: {exc}") from exc
        connection.key = key
        self._all.add(connection)
        return connection, False

    def _release(self, connection: _Connection) -> None:
        if self._slots is not None:
            self._slots.release()
        if connection.reusable and len(self._idle) < self._max_idle:
            connection.finish()
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            self._discard(connection)

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._all.discard(connection)

    async def aclose(self) -> None:
        """Close every connection."""
        for connection in list(self._all):
            self._discard(connection)
        self._idle.clear()
        if self._fallback is not None:
            await self._fallback.aclose()


def _request_head(request: httpx2.Request, length: int) -> bytes:
    target = request.url.raw_path
    lines = [request.method.encode() + b" " + target + b" HTTP/1.1\r\n"]
    has_length = False
    for name, value in request.headers.raw:
        lower = name.lower()
        if lower == b"transfer-encoding":
            continue  # the body is always sent whole, with a Content-Length
        if lower == b"content-length":
            has_length = True
            value = str(length).encode()
        lines.append(name + b": " + value + b"\r\n")
    if not has_length and (length or request.method in ("POST", "PUT", "PATCH")):
        lines.append(b"Content-Length: " + str(length).encode() + b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)
