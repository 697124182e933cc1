"""The frontend Service's local address (sandbox/kubeproxy/relay.py): real TCP on loopback.

Each new connection goes to the next ready endpoint of the Service (the rule the API server's
service proxy uses, `sandbox.store.endpoints`), a pod not Ready or terminating gets none, no
ready endpoint resets the connection at once, and a websocket passes both ways. The pods here
are aiohttp servers that say their name; the relay in a live sandbox, with a browser, is
tests/web/test_browser.py::test_the_service_address_survives_a_deleted_frontend_pod."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from sandbox.kubeproxy.relay import ServiceRelay, listening_socket
from sandbox.store.disruption import begin_pod_deletion
from sandbox.store.store import PODS, SERVICES, Store

NS = "kube-llm"
LABELS = {"app.kubernetes.io/name": "llm-frontend"}


def pod(name: str, ready: bool = True) -> dict[str, object]:
    """A pod as the kubelet reports it (only what the selector and readiness read)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": LABELS},
        "spec": {
            "containers": [{"name": "frontend", "ports": [{"name": "web", "containerPort": 8080}]}]
        },
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


async def pod_server(name: str) -> tuple[web.AppRunner, int]:
    """A pod's web server: `/` says its name, `/ws` echoes with its name."""

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=name)

    async def echo(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str(f"{name}: {message.data}")
        return socket

    app = web.Application()
    app.add_routes([web.get("/", index), web.get("/ws", echo)])
    runner = web.AppRunner(app)
    await runner.setup()
    sock = listening_socket(0)  # a loopback socket, as the kubelet gives a pod's port
    await web.SockSite(runner, sock).start()
    port: int = sock.getsockname()[1]
    return runner, port


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Store, str]]:
    """A Service with three pods (a, b ready; c not), each a real server; the relay's URL."""
    store = Store()
    store.create(
        SERVICES,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "llm-frontend", "namespace": NS},
            "spec": {
                "selector": LABELS,
                "ports": [{"name": "http", "port": 80, "targetPort": "web"}],
            },
        },
        NS,
    )
    runners, ports = [], {}
    for name, ready in (("a", True), ("b", True), ("c", False)):
        store.create(PODS, pod(name, ready), NS)
        runner, ports[name] = await pod_server(name)
        runners.append(runner)

    def pod_port(namespace: str, name: str, port: str | int) -> int | None:
        assert (namespace, port) == (NS, "web")
        return ports.get(name)

    relay = ServiceRelay(store, pod_port, NS, "llm-frontend")
    sock = listening_socket(0)
    serving = asyncio.create_task(relay.serve(sock))
    yield store, f"http://127.0.0.1:{sock.getsockname()[1]}"
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    for runner in runners:
        await runner.cleanup()


async def served_by(url: str) -> str:
    """Which pod answers a request on a new connection."""
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        return await answer.text()


async def test_each_connection_goes_to_the_next_ready_pod(cluster: tuple[Store, str]) -> None:
    store, url = cluster
    assert [await served_by(url) for _ in range(4)] == ["a", "b", "a", "b"]
    # Terminating: out of the endpoints at once, as the Service routes.
    begin_pod_deletion(store, NS, "a", 30)
    assert {await served_by(url) for _ in range(3)} == {"b"}


async def test_a_websocket_passes_both_ways(cluster: tuple[Store, str]) -> None:
    _, url = cluster
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}/ws") as socket:
        for text in ("hello", "x" * 200_000):
            await socket.send_str(text)
            answer = await socket.receive_str()
            assert answer.endswith(f": {text}")
            assert answer[0] in "ab"


async def test_no_ready_endpoint_refuses_at_once(cluster: tuple[Store, str]) -> None:
    store, url = cluster
    for name in ("a", "b"):
        store.delete(PODS, NS, name)
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as session:
            await asyncio.wait_for(session.get(url), 5)
