"""A Service's stable local address: a loopback TCP port relayed to its ready pods.

On a cluster a browser reaches the frontend pods through their Service (`kubectl port-forward
svc/llm-frontend 8080:80`, or an Ingress), so a new page load lands on a live pod whichever pod
went away. The sandbox's pods are loopback ports that change with every pod, so this relay
stands for the Service: it listens on one loopback port and sends each new TCP connection to a
ready endpoint picked as the API server's service proxy picks one (`pick_endpoint`), as
kube-proxy does per connection. It relays bytes, so websockets pass as they are. A connection
that finds no ready endpoint is reset at once, as kube-proxy's REJECT rule refuses it.

Unlike `kubectl port-forward svc/NAME`, which picks one pod when it starts and fails once that
pod is gone, the relay keeps working across pod deletions, as a Service does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from dataclasses import dataclass, field

from sandbox.store.endpoints import PodPort, pick_endpoint
from sandbox.store.store import ApiError, Store

log = logging.getLogger("sandbox.kubeproxy")

_CHUNK = 64 * 1024


@dataclass
class ServiceRelay:
    """One Service port on a loopback port of this machine."""

    store: Store
    pod_port: PodPort
    namespace: str
    service: str
    service_port: str | None = None
    rotation: dict[tuple[str, str], int] = field(default_factory=dict)
    connections: set[asyncio.Task[None]] = field(default_factory=set)
    sides: set[asyncio.StreamWriter] = field(default_factory=set)
    """Both ends of every open connection, closed when the relay stops."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay one client connection to the next ready endpoint, both ways until both end."""
        try:
            endpoint = pick_endpoint(
                self.store,
                self.rotation,
                self.pod_port,
                self.namespace,
                self.service,
                self.service_port,
            )
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", endpoint.port
            )
        except (ApiError, OSError) as error:
            log.info("service %s: connection refused (%s)", self.service, error)
            _reset(writer)
            return
        self.sides.update((writer, upstream_writer))
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            for side in (writer, upstream_writer):
                self.sides.discard(side)
                side.close()
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await side.wait_closed()

    async def serve(self, sock: socket.socket) -> None:
        """Accept connections on `sock` until cancelled; then drop every open one."""

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self.connections.add(task)
            try:
                await self.handle(reader, writer)
            finally:
                self.connections.discard(task)

        server = await asyncio.start_server(accepted, sock=sock)
        try:
            await asyncio.Event().wait()
        finally:
            server.close()
            # Closing both ends ends every relay (a cancelled one would be logged by asyncio's
            # stream callback as an error).
            for side in list(self.sides):
                side.close()
            if self.connections:
                await asyncio.wait(list(self.connections), timeout=2)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy bytes until the source ends, then pass the end on (a half-close, as TCP does)."""
    try:
        while chunk := await source.read(_CHUNK):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except OSError:
        # One side was reset (a pod killed outright): the other side goes too.
        sink.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a RST (SO_LINGER 0): the client sees the refusal at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


def listening_socket(port: int) -> socket.socket:
    """A socket on 127.0.0.1:port (0: a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock
