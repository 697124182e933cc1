"""The engine-side plumbing: SSE parsing and the lean HTTP/1.1 transport, on real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.engine import sse_batches
from backend.transport import LeanHTTPTransport
from tests.fakes.serve import free_port

# SSE parsing -----------------------------------------------------------------------------

payloads = st.lists(
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
    min_size=1,
    max_size=8,
)


async def _chunks(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    previous = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        if cut > previous:
            yield data[previous:cut]
            previous = cut


@settings(max_examples=200, deadline=None)
@given(
    events=payloads,
    newline=st.sampled_from([b"\n", b"\r\n"]),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
    comments=st.booleans(),
)
def test_sse_batches_survive_any_split(
    events: list[bytes], newline: bytes, cuts: list[int], comments: bool
) -> None:
    stream = b""
    for event in events:
        if comments:
            stream += b": keep-alive" + newline + newline
        stream += b"event: message" + newline + b"data: " + event + newline + newline

    async def collect() -> list[bytes]:
        return [data async for batch in sse_batches(_chunks(stream, cuts)) for data in batch]

    assert asyncio.run(collect()) == events


def test_sse_multi_line_data_is_joined() -> None:
    async def collect() -> list[bytes]:
        async def one() -> AsyncIterator[bytes]:
            yield b"data: a\ndata:b\nid: 3\n\n"

        return [data async for batch in sse_batches(one()) for data in batch]

    assert asyncio.run(collect()) == [b"a\nb"]


# The lean transport ------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server running ``handler`` per connection; yields its URL and a connection log."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", connections


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one request (head and Content-Length body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def client(limits: httpx2.Limits | None = None) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=LeanHTTPTransport(limits), timeout=2)


async def test_chunked_and_fixed_length_bodies_on_one_kept_alive_connection() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabc")
        await reader.read()

    async with raw_server(handler) as (url, connections), client() as http:
        first = await http.post(url + "/v1/x?q=1", content=b'{"a":1}')
        second = await http.get(url + "/v1/y")
    assert (first.status_code, first.content) == (200, b"hello world")
    assert (second.status_code, second.content, second.headers["x-a"]) == (201, b"abc", "b")
    assert len(connections) == 1
    assert seen[0].startswith(b"POST /v1/x?q=1 HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 7\r\n" in seen[0] or b"\r\ncontent-length: 7\r\n" in seen[0]
    assert seen[0].endswith(b'\r\n\r\n{"a":1}')
    assert seen[1].startswith(b"GET /v1/y HTTP/1.1\r\n")


async def test_connection_close_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()

    async with raw_server(handler) as (url, connections), client() as http:
        for _ in range(3):
            assert (await http.get(url)).text == "ok"
    assert len(connections) == 3


async def test_a_kept_alive_connection_the_engine_closed_is_replaced() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # Keep-alive, then the server closes the idle connection, as on its idle timeout.

    async with raw_server(handler) as (url, connections), client() as http:
        assert (await http.get(url)).text == "ok"
        await asyncio.sleep(0.05)
        assert (await http.get(url)).text == "ok"
    assert len(connections) == 2


async def test_stale_connection_closed_while_idle_is_retried_once() -> None:
    """The engine closes a kept-alive connection just as the next request goes out."""
    transport = LeanHTTPTransport(None)
    count = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        if count == 1:
            await read_request(reader)  # read the second request, then drop it unanswered
            return
        await reader.read()

    async with (
        raw_server(handler) as (url, connections),
        httpx2.AsyncClient(transport=transport, timeout=2) as http,
    ):
        assert (await http.get(url)).text == "ok"
        assert (await http.get(url)).text == "ok"
    assert len(connections) == 2


async def test_refused_connection_is_connect_error() -> None:
    async with client() as http:
        with pytest.raises(httpx2.ConnectError):
            await http.get(f"http://127.0.0.1:{free_port()}/")


async def test_silent_engine_is_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with raw_server(handler) as (url, _), client() as http:
        with pytest.raises(httpx2.ReadTimeout):
            await http.get(url, timeout=0.3)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",  # cut mid-chunk
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # shorter than announced
    ],
)
async def test_truncated_body_is_a_protocol_error(reply: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    async with raw_server(handler) as (url, _), client() as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            await http.get(url)


async def test_body_without_length_ends_with_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async with raw_server(handler) as (url, connections), client() as http:
        assert (await http.get(url)).text == "until the end"
        assert (await http.get(url)).text == "until the end"
    assert len(connections) == 2


async def test_max_connections_bounds_requests_in_flight() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
    async with raw_server(handler) as (url, connections), client(limits) as http:
        async with http.stream("GET", url) as first:
            with pytest.raises(httpx2.PoolTimeout):
                await http.get(url, timeout=httpx2.Timeout(2, pool=0.1))
            await first.aread()
        # The slot is free again once the first response is closed.
        assert (await http.get(url)).text == "a"
    assert len(connections) == 1


async def test_garbage_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with raw_server(handler) as (url, _), client() as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            await http.get(url)


async def test_streamed_body_arrives_piece_by_piece() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"3\r\ntwo\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with (
        raw_server(handler) as (url, _),
        client() as http,
        http.stream("GET", url) as response,
    ):
        pieces = response.aiter_raw()
        assert await anext(pieces) == b"one"
        release.set()
        assert [p async for p in pieces] == [b"two"]
