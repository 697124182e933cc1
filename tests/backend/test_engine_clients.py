"""The engine side: SSE parsing, and both engine clients (aiohttp, httpx2) on real sockets."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TypedDict, Unpack

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.engine import SseParser
from backend.engine_clients import (
    AiohttpEngineClient,
    EngineBroken,
    EngineClient,
    EngineError,
    EngineTimedOut,
    EngineUnreachable,
    HttpxEngineClient,
    open_engine_client,
)
from backend.settings import ENGINE_TRANSPORTS, Settings
from tests.fakes.serve import free_port

# SSE parsing -----------------------------------------------------------------------------

payloads = st.lists(
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
    min_size=1,
    max_size=8,
)


def _chunks(data: bytes, cuts: list[int]) -> Iterator[bytes]:
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
def test_sse_parser_survives_any_split(
    events: list[bytes], newline: bytes, cuts: list[int], comments: bool
) -> None:
    stream = b""
    for event in events:
        if comments:
            stream += b": keep-alive" + newline + newline
        stream += b"event: message" + newline + b"data: " + event + newline + newline

    parser = SseParser()
    assert [data for chunk in _chunks(stream, cuts) for data in parser.feed(chunk)] == events


def test_sse_multi_line_data_is_joined() -> None:
    assert SseParser().feed(b"data: a\ndata:b\nid: 3\n\n") == [b"a\nb"]


# The engine clients, against a raw HTTP/1.1 server ---------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclasses.dataclass
class Seen:
    """What a raw server saw: connections accepted and request heads, in order."""

    connections: int = 0
    requests: list[bytes] = dataclasses.field(default_factory=list)

    def posts(self) -> int:
        """How many POSTs arrived, over every connection."""
        return sum(1 for head in self.requests if head.startswith(b"POST "))


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[str, Seen]]:
    """A loopback server running ``handler`` per connection; yields its URL and what it saw."""
    seen = Seen()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", seen


def reading(seen: Seen) -> Callable[[asyncio.StreamReader], Awaitable[bytes]]:
    """A request reader that notes each request on ``seen``."""

    async def read_request(reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        seen.requests.append(head)
        return head + await reader.readexactly(length)

    return read_request


class ClientOverrides(TypedDict, total=False):
    """The Settings fields these tests tune, typed as Settings has them."""

    max_inflight: int
    engine_connect_timeout: float
    first_token_timeout: float
    request_timeout: float


@asynccontextmanager
async def engine_client(
    name: str, url: str, **overrides: Unpack[ClientOverrides]
) -> AsyncIterator[EngineClient]:
    """The engine client ``name`` (an ENGINE_TRANSPORT) for ``url``, closed afterwards."""
    base = Settings(pod_name="t", engine_url=url, engine_transport=name)
    client = open_engine_client(dataclasses.replace(base, **overrides))
    try:
        yield client
    finally:
        await client.aclose()


async def body_of(client: EngineClient, *, stream: bool = True) -> tuple[int, bytes]:
    """POST a chat and read the whole reply."""
    reply = await client.send_chat(b'{"a":1}', stream=stream)
    try:
        return reply.status, b"".join([chunk async for chunk in reply.chunks()])
    finally:
        await reply.aclose()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
MODELS = b'{"data":[{"id":"m"}]}'
MODELS_OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(MODELS), MODELS)


@pytest.mark.parametrize(
    ("name", "kind"), [("aiohttp", AiohttpEngineClient), ("httpx", HttpxEngineClient)]
)
async def test_engine_transport_names_the_client(name: str, kind: type) -> None:
    async with engine_client(name, "http://127.0.0.1:1") as client:
        assert type(client) is kind
        assert client.name == name
    assert set(ENGINE_TRANSPORTS) == {"aiohttp", "httpx"}


async def test_chunked_and_fixed_length_bodies_on_one_kept_alive_connection(
    transport_name: str,
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await read_request(reader)
        assert body.endswith(b'\r\n\r\n{"a":1}')
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        await read_request(reader)
        writer.write(MODELS_OK)
        await reader.read()

    async with raw_server(handler) as (url, seen):
        read_request = reading(seen)
        async with engine_client(transport_name, url) as client:
            assert await body_of(client) == (200, b"hello world")
            assert await client.get_models(2) == (200, MODELS)
    assert seen.connections == 1
    chat, models = seen.requests
    assert chat.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"text/event-stream" in chat.lower()
    assert models.startswith(b"GET /v1/models HTTP/1.1\r\n")


async def test_a_plain_chat_asks_for_json(transport_name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await reader.read()

    async with raw_server(handler) as (url, seen):
        read_request = reading(seen)
        async with engine_client(transport_name, url) as client:
            assert await body_of(client, stream=False) == (200, b"ok")
    assert b"accept: application/json" in seen.requests[0].lower()


async def test_connection_close_is_not_reused(transport_name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()

    async with raw_server(handler) as (url, seen):
        read_request = reading(seen)
        async with engine_client(transport_name, url) as client:
            for _ in range(3):
                assert await body_of(client) == (200, b"ok")
    assert seen.connections == 3


async def test_a_kept_alive_connection_the_engine_closed_is_replaced(transport_name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        # Keep-alive, then the server closes the idle connection, as on its idle timeout.

    async with raw_server(handler) as (url, seen):
        read_request = reading(seen)
        async with engine_client(transport_name, url) as client:
            assert await body_of(client) == (200, b"ok")
            await asyncio.sleep(0.1)
            assert await body_of(client) == (200, b"ok")
    assert seen.connections == 2


async def test_a_chat_the_engine_read_is_never_sent_twice(transport_name: str) -> None:
    """The engine reads the chat on a kept-alive connection, then drops it unanswered: the
    chat may have run, so it is not sent again (a listing may be; it changes nothing)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(MODELS_OK)
        await writer.drain()
        await read_request(reader)  # the chat: read, then the connection is dropped

    async with raw_server(handler) as (url, seen):
        read_request = reading(seen)
        async with engine_client(transport_name, url) as client:
            assert await client.get_models(2) == (200, MODELS)
            with pytest.raises(EngineBroken):
                await body_of(client)
    assert seen.posts() == 1


@pytest.mark.parametrize("size", [8, 2048])
async def test_a_closed_unread_reply_leaves_no_paused_connection(
    size: int, transport_name: str
) -> None:
    """A reply of 100 chunks, received whole (small ones) or enough to pause reading (2 KiB
    ones), closed unread: the next request on the same client must not land on a paused
    connection. (The hand-written transport this replaced timed out here.)"""
    chunk = b"x" * size

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_request(reader)
            if head.startswith(b"POST"):
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                pieces = [b"%x\r\n%s\r\n" % (size, chunk) for _ in range(100)]
                writer.write(b"".join(pieces) + b"0\r\n\r\n")
            else:
                writer.write(MODELS_OK)
            await writer.drain()

    async with raw_server(handler) as (url, seen):
        read_request = reading(seen)
        async with engine_client(
            transport_name, url, first_token_timeout=3, request_timeout=3
        ) as client:
            reply = await client.send_chat(b"{}", stream=True)
            await asyncio.sleep(0.2)  # let the whole reply arrive and fill the buffers
            await reply.aclose()  # leave without reading
            assert await client.get_models(2) == (200, MODELS)
            assert await client.get_models(2) == (200, MODELS)


async def test_refused_connection_is_unreachable(transport_name: str) -> None:
    async with engine_client(transport_name, f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(EngineUnreachable):
            await client.send_chat(b"{}", stream=True)
        with pytest.raises(EngineUnreachable):
            await client.get_models(1)


async def test_a_silent_engine_times_out(transport_name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with raw_server(handler) as (url, seen):
        read_request = reading(seen)
        async with engine_client(transport_name, url) as client:
            with pytest.raises(EngineTimedOut):
                await client.get_models(0.3)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",  # cut mid-chunk
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # shorter than announced
    ],
)
async def test_truncated_body_is_broken(reply: bytes, transport_name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    async with raw_server(handler) as (url, seen):
        read_request = reading(seen)
        async with engine_client(transport_name, url) as client:
            with pytest.raises(EngineBroken):
                await body_of(client)


async def test_garbage_is_broken(transport_name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with raw_server(handler) as (url, seen):
        read_request = reading(seen)
        async with engine_client(transport_name, url) as client:
            with pytest.raises(EngineError):
                await body_of(client)


async def test_connections_are_bounded_by_max_inflight(transport_name: str) -> None:
    """MAX_INFLIGHT + 4 connections at most: one more waits for a free one."""
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
            await writer.drain()
            await release.wait()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async with raw_server(handler) as (url, seen):
        read_request = reading(seen)
        async with engine_client(
            transport_name,
            url,
            max_inflight=1,
            engine_connect_timeout=0.3,
            first_token_timeout=5,
            request_timeout=5,
        ) as client:
            replies = [await client.send_chat(b"{}", stream=True) for _ in range(5)]
            with pytest.raises(EngineUnreachable):
                await client.send_chat(b"{}", stream=True)
            assert seen.connections == 5
            release.set()
            for reply in replies:
                assert b"".join([c async for c in reply.chunks()]) == b"a"
                await reply.aclose()
            assert await body_of(client) == (200, b"a")  # on a pooled connection
            assert seen.connections == 5


async def test_streamed_body_arrives_piece_by_piece(transport_name: str) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"3\r\ntwo\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with raw_server(handler) as (url, seen):
        read_request = reading(seen)
        async with engine_client(transport_name, url) as client:
            reply = await client.send_chat(b"{}", stream=True)
            pieces = reply.chunks()
            assert await anext(pieces) == b"one"
            release.set()
            assert [p async for p in pieces] == [b"two"]
            await reply.aclose()
