"""The cockpit's gateway client against real servers on loopback.

The backend (`backend.app`) runs with uvicorn in a thread in front of the fake OpenAI engine
(tests/fakes/engine.py); a few tests talk to the fake engine directly, where the failure is the
engine's own protocol (a cut stream). The last group goes through a real sandbox's API server:
its service proxy and pod proxy, with the kubeconfig's bearer token and CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import email.utils
import json
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx2
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.app import create_app
from backend.settings import Settings
from sandbox.pki import Pki, make_pki
from tests.backend.conftest import running_backend, running_engine
from tests.fakes.engine import EngineConfig, create_engine_app
from tests.fakes.serve import free_port, serve_in_thread
from tests.sandbox.harness import (
    NAMESPACE,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)
from tui.core.model import ChatSample, Outcome
from tui.gateway.chatcall import parse_retry_after
from tui.gateway.client import Gateway, parse_backend_metrics
from tui.gateway.target import GatewayError, GatewayTarget
from tui.services.load import LoadEngine

HELLO = [{"role": "user", "content": "Hello"}]
# The backend's admission queue (when it has one) would hold a chat instead of refusing it;
# the 429 tests need the refusal.
NO_QUEUE: dict[str, int] = (
    {"max_queue": 0} if "max_queue" in {f.name for f in dataclasses.fields(Settings)} else {}
)
REPLY = "Hello from the fake engine, one token at a time."


async def eventually(
    probe: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.02
) -> float:
    """Poll `probe` until it is true; return the seconds it took, fail after `timeout`."""
    started = time.monotonic()
    while not await probe():
        assert time.monotonic() - started < timeout, f"timed out after {timeout} s: {what}"
        await asyncio.sleep(interval)
    return time.monotonic() - started


def direct(url: str) -> Gateway:
    """A gateway straight at a backend (or engine), whose own /metrics stand for its pod's."""
    return Gateway(GatewayTarget.direct(url, pod_proxy=url))


async def inflight(gateway: Gateway) -> float:
    """The backend's kube_llm_inflight, read through the client under test."""
    return (await gateway.pod_metrics("test-pod")).inflight


# --------------------------------------------------------------------------------------------
# Chats through the backend


@pytest.mark.serial
async def test_chat_times_the_first_token_and_each_gap() -> None:
    # Straight at the engine, whose delays are exact: 0.1 s to the first token, 0.02 s apart.
    config = EngineConfig(first_token_delay=0.1, token_delay=0.02)
    with running_engine(config) as engine:
        async with Gateway(GatewayTarget.direct(engine.url), model="tinyllama") as gateway:
            await gateway.chat(HELLO, max_tokens=1)  # the connection is open from here on
            sample = await gateway.chat(HELLO)
    assert sample.outcome is Outcome.OK, sample
    assert sample.ttft is not None
    assert sample.e2e is not None
    assert 0.1 <= sample.ttft < 0.3
    assert len(sample.gaps) == 11
    assert all(0.015 <= gap < 0.1 for gap in sample.gaps), sample.gaps
    assert sum(sample.gaps) >= 11 * 0.02 * 0.9
    # The last chunk came after the first token and every gap, and before the end.
    assert sample.ttft + sum(sample.gaps) <= sample.e2e
    assert abs(sample.started_at - time.time()) < 10


async def test_chat_through_the_backend_records_tokens_usage_and_pod() -> None:
    config = EngineConfig(first_token_delay=0.05, token_delay=0.01)
    with running_engine(config) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            pieces: list[str] = []
            sample = await gateway.chat(HELLO, max_tokens=64, origin="chat", on_text=pieces.append)
    assert sample.outcome is Outcome.OK, sample
    assert (sample.status, sample.pod, sample.origin) == (200, "test-pod", "chat")
    assert sample.error_kind is None
    assert sample.error_detail is None
    assert "".join(pieces) == REPLY
    assert sample.output_tokens == 12
    assert sample.tokens_from_usage
    assert len(sample.gaps) == 11
    assert sample.ttft is not None
    assert sample.e2e is not None
    assert sample.ttft >= 0.05
    assert sample.ttft + sum(sample.gaps) <= sample.e2e
    assert engine.stats.requests[0]["stream_options"] == {"include_usage": True}
    assert engine.stats.requests[0]["max_tokens"] == 64


class _IgnoresUsage:
    """An engine that ignores `stream_options` (as some OpenAI-compatible servers do): the
    request reaches the fake engine without it, so no `usage` event comes back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        parsed = json.loads(body)
        parsed.pop("stream_options", None)
        stripped = json.dumps(parsed).encode()
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": stripped, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def test_without_usage_the_tokens_are_counted_chunks() -> None:
    engine_app = _IgnoresUsage(create_engine_app(EngineConfig(tokens=9)))
    with serve_in_thread(engine_app) as engine_url, running_backend(engine_url) as backend:
        async with direct(backend.url) as gateway:
            before = await gateway.pod_metrics("test-pod")
            sample = await gateway.chat(HELLO, max_tokens=64)
            # The backend counts a chat's chunks once its relay has finished, which may be just
            # after the client read the last byte: wait (bounded) for the count to move.
            for _ in range(50):
                after = await gateway.pod_metrics("test-pod")
                if (after.output_chunks, after.output_tokens) != (
                    before.output_chunks,
                    before.output_tokens,
                ):
                    break
                await asyncio.sleep(0.1)
            raw = httpx2.get(backend.url + "/metrics").text
    assert sample.outcome is Outcome.OK, sample
    assert sample.output_tokens == 9
    assert not sample.tokens_from_usage
    if "kube_llm_output_chunks_total" in raw:  # a backend that counts chunks apart
        assert after.output_chunks - before.output_chunks == 9
        assert after.output_tokens == before.output_tokens
    else:
        assert after.output_tokens - before.output_tokens == 9


async def test_models_and_the_model_asked_for() -> None:
    with running_engine(EngineConfig()) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            assert await gateway.models() == ["tinyllama"]
            assert await gateway.model() == "tinyllama"
            await gateway.chat(HELLO)
        assert engine.stats.requests[-1]["model"] == "tinyllama"


async def test_429_is_shed_with_retry_after_and_the_server_words() -> None:
    slow = EngineConfig(first_token_delay=1.0)
    with (
        running_engine(slow) as engine,
        running_backend(engine.url, max_inflight=1, **NO_QUEUE) as backend,
    ):
        async with direct(backend.url) as gateway:
            first = asyncio.create_task(gateway.chat(HELLO))
            await eventually(lambda: _equals(inflight(gateway), 1), 5, "the first chat admitted")
            shed = await gateway.chat(HELLO)
            assert (await first).outcome is Outcome.OK
    assert shed.outcome is Outcome.SHED
    assert (shed.status, shed.error_kind, shed.pod) == (429, "http_429", "test-pod")
    assert shed.retry_after == 1.0
    assert shed.error_detail is not None
    assert "busy" in shed.error_detail
    assert shed.ttft is None
    assert shed.output_tokens == 0
    assert len(engine.stats.requests) == 1  # the shed chat never reached the engine


async def _equals(value: Awaitable[float], expected: float) -> bool:
    return await value == expected


async def test_engine_down_is_a_503_error_with_retry_after() -> None:
    nothing = f"http://127.0.0.1:{free_port()}"
    with running_backend(nothing) as backend:
        async with direct(backend.url) as gateway:
            sample = await gateway.chat(HELLO)
    assert sample.outcome is Outcome.ERROR
    assert (sample.status, sample.error_kind, sample.pod) == (503, "http_503", "test-pod")
    assert sample.retry_after == 1.0
    assert sample.error_detail == "engine_unavailable: The engine is unavailable."


async def test_engine_503_is_passed_on_as_503() -> None:
    with running_engine(EngineConfig(fail="503")) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            sample = await gateway.chat(HELLO)
    assert (sample.outcome, sample.error_kind) == (Outcome.ERROR, "http_503")
    assert sample.error_detail is not None
    assert sample.error_detail.startswith("engine_503")


async def test_gateway_refusing_connections_is_a_connect_error() -> None:
    async with direct(f"http://127.0.0.1:{free_port()}") as gateway:
        sample = await gateway.chat(HELLO)
        health = await gateway.health()
        with pytest.raises(GatewayError) as raised:
            await gateway.pod_metrics("test-pod")
    assert (sample.outcome, sample.error_kind, sample.status) == (Outcome.ERROR, "connect", None)
    assert sample.e2e is not None
    assert sample.e2e < 5
    assert (health.ok, health.error, health.latency) == (False, "connect", None)
    assert raised.value.kind == "connect"


async def test_mid_stream_error_event_is_a_stream_error_with_the_partial_reply() -> None:
    with (
        running_engine(EngineConfig(fail="midstream")) as engine,
        running_backend(engine.url) as backend,
    ):
        async with direct(backend.url) as gateway:
            pieces: list[str] = []
            sample = await gateway.chat(HELLO, on_text=pieces.append)
    assert (sample.outcome, sample.error_kind, sample.status) == (
        Outcome.ERROR,
        "stream_error",
        200,
    )
    assert sample.error_detail is not None
    assert "engine_midstream" in sample.error_detail
    assert sample.ttft is not None
    assert 0 < sample.output_tokens < 12
    assert sample.output_tokens == len(pieces)
    assert not sample.tokens_from_usage


@pytest.mark.parametrize("style", ["interrupt", "abort"])
async def test_a_cut_stream_is_truncated(style: str) -> None:
    # Straight at the engine: a bare [DONE] without finish_reason ("interrupt", as
    # llama-cpp-python does when interrupted) or a broken connection ("abort").
    config = EngineConfig(fail="midstream", midstream_style=style)  # type: ignore[arg-type]
    with running_engine(config) as engine:
        async with Gateway(GatewayTarget.direct(engine.url), model="tinyllama") as gateway:
            sample = await gateway.chat(HELLO)
    assert (sample.outcome, sample.error_kind, sample.status) == (
        Outcome.ERROR,
        "truncated",
        200,
    )
    assert sample.output_tokens == 6


async def test_stop_closes_the_stream_promptly_and_frees_the_slot() -> None:
    config = EngineConfig(token_delay=0.2, tokens=100)
    with running_engine(config) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            stop = asyncio.Event()
            first_text = asyncio.Event()
            chat = asyncio.create_task(
                gateway.chat(HELLO, max_tokens=100, stop=stop, on_text=lambda _: first_text.set())
            )
            await asyncio.wait_for(first_text.wait(), 5)
            assert await inflight(gateway) == 1
            stop.set()
            pressed = time.monotonic()
            sample = await asyncio.wait_for(chat, 2)
            stopped_in = time.monotonic() - pressed
            freed_in = await eventually(lambda: _equals(inflight(gateway), 0), 2, "slot freed")
        assert engine.stats.disconnected_streams == 1
    assert stopped_in < 0.5
    assert freed_in < 1.0
    # Stopped by the user: neither a failure nor a success of the service.
    assert (sample.outcome, sample.error_kind, sample.status) == (
        Outcome.CANCELLED,
        "cancelled",
        200,
    )
    assert sample.ttft is not None
    assert 1 <= sample.output_tokens < 100
    assert sample.output_tokens == len(sample.gaps) + 1


async def test_cancelling_the_task_closes_the_stream_and_propagates() -> None:
    config = EngineConfig(token_delay=0.2, tokens=100)
    with running_engine(config) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            first_text = asyncio.Event()
            chat = asyncio.create_task(
                gateway.chat(HELLO, max_tokens=100, on_text=lambda _: first_text.set())
            )
            await asyncio.wait_for(first_text.wait(), 5)
            chat.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(chat, 2)
            await eventually(lambda: _equals(inflight(gateway), 0), 2, "slot freed")
            # The client is still usable afterwards.
            assert (await gateway.chat(HELLO, max_tokens=3)).outcome is Outcome.OK
        assert engine.stats.disconnected_streams == 1


async def test_health_is_timed_and_names_the_pod() -> None:
    with running_engine(EngineConfig()) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            health = await gateway.health()
    assert health.ok
    assert (health.status, health.pod, health.error) == (200, "test-pod", None)
    assert health.latency is not None
    assert 0 < health.latency < 5
    assert abs(health.at - time.time()) < 10


async def test_pod_metrics_parses_a_real_backend() -> None:
    with running_engine(EngineConfig(tokens=7)) as engine, running_backend(engine.url) as backend:
        async with direct(backend.url) as gateway:
            before = await gateway.pod_metrics("test-pod")
            for _ in range(3):
                assert (await gateway.chat(HELLO)).outcome is Outcome.OK
            after = await gateway.pod_metrics("test-pod")
            raw = httpx2.get(backend.url + "/metrics").text
    assert after.pod == "test-pod"
    assert after.requests - before.requests == 3
    assert after.output_tokens - before.output_tokens == 21
    assert after.ttft_count - before.ttft_count == 3
    assert after.ttft_sum > before.ttft_sum
    assert after.inflight == 0
    queue = [line for line in raw.splitlines() if line.startswith("kube_llm_queue_depth ")]
    if queue:  # a backend with an admission queue exports its depth
        assert after.queued == float(queue[0].split()[1]) == 0.0
    else:
        assert after.queued is None
    assert after.at >= before.at


def test_metrics_text_that_is_not_the_backend_s_is_a_clear_error() -> None:
    with pytest.raises(GatewayError, match="kube_llm_inflight") as raised:
        parse_backend_metrics("p", "# TYPE other gauge\nother 1\n", 0.0)
    assert raised.value.kind == "parse"
    with pytest.raises(GatewayError) as raised:
        parse_backend_metrics("p", "this is {not prometheus\n", 0.0)
    assert raised.value.kind == "parse"


async def test_a_page_that_is_not_metrics_is_an_http_error() -> None:
    with running_engine(EngineConfig()) as engine, running_backend(engine.url) as backend:
        target = GatewayTarget.direct(backend.url, pod_proxy=backend.url + "/nothing/{pod}")
        async with Gateway(target) as gateway:
            with pytest.raises(GatewayError) as raised:
                await gateway.pod_metrics("test-pod")
    assert raised.value.kind == "http_404"
    assert raised.value.status == 404


# --------------------------------------------------------------------------------------------
# Targets


def test_service_proxy_target_urls_and_no_credentials_in_repr() -> None:
    target = GatewayTarget.through_service_proxy(
        "https://127.0.0.1:6443/",
        "kube-llm",
        headers={"Authorization": "Bearer s3cr3t-token"},
        verify=False,
        cert=("/tmp/client.crt", "/tmp/client.key"),
    )
    assert target.base_url == (
        "https://127.0.0.1:6443/api/v1/namespaces/kube-llm/services/llm-backend:http/proxy"
    )
    assert target.pod_url("llm-backend-abc12") == (
        "https://127.0.0.1:6443/api/v1/namespaces/kube-llm/pods/llm-backend-abc12:8000/proxy"
    )
    shown = repr(target) + str(target)
    assert "s3cr3t" not in shown
    assert "client.key" not in shown
    assert "Authorization" in shown
    basic = GatewayTarget.direct("http://user:hunter2@127.0.0.1:8080")
    assert "hunter2" not in repr(basic)
    assert "hunter2" not in basic.display_url


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: GatewayTarget.direct("ftp://example"), "http:// or https://"),
        (lambda: GatewayTarget.direct("not a url"), "http:// or https://"),
        (lambda: GatewayTarget.through_service_proxy("https://h", "Bad_NS"), "namespace"),
        (lambda: GatewayTarget.through_service_proxy("https://h", "ns", "../x"), "service"),
        (lambda: GatewayTarget.through_service_proxy("https://h", "ns").pod_url("../x"), "pod"),
    ],
)
def test_bad_targets_are_clear_errors(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


async def test_a_target_without_pod_proxy_says_so() -> None:
    async with Gateway(GatewayTarget.direct("http://127.0.0.1:9")) as gateway:
        with pytest.raises(GatewayError) as raised:
            await gateway.pod_metrics("p")
    assert raised.value.kind == "no_pod_proxy"


async def test_bad_chat_arguments_are_clear_errors() -> None:
    async with Gateway(GatewayTarget.direct("http://127.0.0.1:9"), model="m") as gateway:
        with pytest.raises(ValueError, match="at least one message"):
            await gateway.chat([])
        with pytest.raises(ValueError, match="role"):
            await gateway.chat([{"content": "x"}])
        with pytest.raises(ValueError, match="max_tokens"):
            await gateway.chat(HELLO, max_tokens=0)


# --------------------------------------------------------------------------------------------
# Through a real sandbox's API server (service proxy and pod proxy, bearer token and CA)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("gateway"),
        # Up to 200 tokens 50 ms apart: a long reply (10 s) still streams when its pod is
        # killed, which happens 2 s after a force delete (the kubelet's minimum grace period).
        engine_cmd=fake_engine_cmd(busy_ms_per_token=2, token_delay=0.05, tokens=200),
    )
    yield running
    if running.process.poll() is None:
        running.stop()


def _target(sandbox: RunningSandbox, token: str | None = None) -> GatewayTarget:
    return GatewayTarget.through_service_proxy(
        sandbox.server,
        NAMESPACE,
        headers={"Authorization": f"Bearer {sandbox.token if token is None else token}"},
        verify=ssl.create_default_context(cafile=str(sandbox.ca_file)),
    )


@pytest.fixture
async def proxied(sandbox: RunningSandbox) -> AsyncIterator[Gateway]:
    async with Gateway(_target(sandbox)) as gateway:
        yield gateway


@pytest.mark.slow(reason="on the module's sandbox")
async def test_sandbox_chat_health_and_pod_metrics(
    sandbox: RunningSandbox, proxied: Gateway
) -> None:
    ready = set(sandbox.ready_pods())
    sample = await proxied.chat(HELLO, max_tokens=8)
    assert sample.outcome is Outcome.OK, sample
    assert sample.pod in ready
    assert sample.output_tokens == 8
    assert sample.tokens_from_usage
    health = await proxied.health()
    assert health.ok, health
    assert health.pod in ready
    served = {pod: await proxied.pod_metrics(pod) for pod in ready}
    assert {metrics.pod for metrics in served.values()} == ready
    assert served[sample.pod].requests >= 1
    assert served[sample.pod].output_tokens >= 8
    assert all(metrics.inflight == 0 for metrics in served.values())


@pytest.mark.slow(reason="on the module's sandbox")
async def test_sandbox_burst_is_spread_over_the_pods(
    sandbox: RunningSandbox, proxied: Gateway
) -> None:
    samples: list[ChatSample] = []
    engine = LoadEngine(proxied, samples.append, max_tokens=8)
    finals = await engine.burst(users=4, chats_per_user=2)
    assert len(finals) == 8
    assert all(sample.outcome is Outcome.OK for sample in finals), finals
    # The service proxy spreads chats over the Ready pods; every sample names its pod.
    assert {sample.pod for sample in finals} == set(sandbox.ready_pods())


@pytest.mark.slow(reason="on the module's sandbox")
async def test_sandbox_refuses_a_wrong_token_and_a_missing_pod(
    sandbox: RunningSandbox, proxied: Gateway
) -> None:
    async with Gateway(_target(sandbox, token="wrong"), model="m") as stranger:
        sample = await stranger.chat(HELLO)
        health = await stranger.health()
    assert (sample.outcome, sample.status, sample.error_kind) == (Outcome.ERROR, 401, "http_401")
    assert (health.ok, health.error) == (False, "http_401")
    with pytest.raises(GatewayError) as raised:
        await proxied.pod_metrics("llm-backend-gone")
    assert raised.value.kind == "http_404"
    assert raised.value.detail  # the API server's Status message, kept as data


@pytest.mark.slow(reason="on the module's sandbox")
async def test_sandbox_a_force_killed_pod_truncates_its_stream(
    sandbox: RunningSandbox, proxied: Gateway
) -> None:
    ready = sandbox.ready_pods()
    first_text = asyncio.Event()
    chat = asyncio.create_task(
        proxied.chat(HELLO, max_tokens=200, on_text=lambda _: first_text.set())
    )
    await asyncio.wait_for(first_text.wait(), 30)
    # The pod serving the chat is the one with a chat in flight, as its /metrics say.
    inflight = {pod: (await proxied.pod_metrics(pod)).inflight for pod in ready}
    (victim,) = [pod for pod, count in inflight.items() if count == 1]

    def force_delete() -> None:
        with sandbox.http() as http:
            path = f"/api/v1/namespaces/{NAMESPACE}/pods/{victim}"
            http.delete(path, params={"gracePeriodSeconds": 0}).raise_for_status()

    await asyncio.to_thread(force_delete)
    sample = await asyncio.wait_for(chat, 30)
    assert (sample.outcome, sample.error_kind, sample.status) == (
        Outcome.ERROR,
        "truncated",
        200,
    ), sample
    assert sample.pod == victim
    assert 0 < sample.output_tokens < 200
    # The Deployment heals; later tests find two Ready pods again.
    await asyncio.to_thread(
        wait_for, lambda: len(sandbox.ready_pods()) >= 2, 60, "2 Ready pods after the kill"
    )
    after = await proxied.chat(HELLO, max_tokens=4)
    assert after.outcome is Outcome.OK, after
    assert after.pod != victim


# --------------------------------------------------------------------------------------------
# Client certificates (minikube's kubeconfig authenticates with one)


def _client_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A client CA, and a client certificate and key it signed: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-client-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cockpit")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "client-ca.crt", directory / "client.crt", directory / "client.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@contextlib.contextmanager
def _serve_mutual_tls(app: ASGIApp, server_pki: Pki, client_ca: Path) -> Iterator[str]:
    """Serve `app` over HTTPS on loopback, requiring a client certificate signed by `client_ca`."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ssl_certfile=str(server_pki.server_cert),
        ssl_keyfile=str(server_pki.server_key),
        ssl_ca_certs=str(client_ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "the TLS server did not start"
        assert time.monotonic() < deadline, "the TLS server did not start in 10 s"
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def test_a_client_certificate_is_presented(tmp_path: Path) -> None:
    server_pki = make_pki(tmp_path / "server")
    client_ca, cert, key = _client_pki(tmp_path)
    with _serve_mutual_tls(create_engine_app(EngineConfig()), server_pki, client_ca) as url:

        def trusting() -> ssl.SSLContext:
            return ssl.create_default_context(cafile=str(server_pki.ca_cert))

        with_cert = GatewayTarget(url, verify=trusting(), cert=(str(cert), str(key)))
        async with Gateway(with_cert) as gateway:
            assert await gateway.models() == ["tinyllama"]
            assert (await gateway.chat(HELLO, max_tokens=3)).outcome is Outcome.OK
        async with Gateway(GatewayTarget(url, verify=trusting())) as gateway:
            with pytest.raises(GatewayError) as raised:
                await gateway.models()
        assert raised.value.kind in ("network", "connect")
    with pytest.raises(ValueError, match="cannot load the client certificate"):
        Gateway(GatewayTarget(url, cert=(str(tmp_path / "missing.crt"), None)))


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None


class _RecordsAuthorization:
    """Passes requests on to an app, noting each one's path and Authorization header; as a pod
    proxy, it takes `/POD/rest` to `/rest` of the app."""

    def __init__(self, app: ASGIApp, pod_proxy: bool = False) -> None:
        self.app = app
        self.pod_proxy = pod_proxy
        self.seen: list[tuple[str, str | None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            authorization = dict(scope["headers"]).get(b"authorization")
            self.seen.append((scope["path"], authorization.decode() if authorization else None))
            if self.pod_proxy:
                rest = "/" + scope["path"].lstrip("/").partition("/")[2]
                scope = {**scope, "path": rest, "raw_path": rest.encode()}
        await self.app(scope, receive, send)


async def test_credentials_go_only_to_their_own_target() -> None:
    # --backend-url for chats, the API server's pod proxy (with its token) for /metrics.
    with running_engine(EngineConfig()) as engine:
        settings = dataclasses.replace(Settings(pod_name="test-pod"), engine_url=engine.url)
        service = _RecordsAuthorization(create_app(settings))
        pods = _RecordsAuthorization(create_app(settings), pod_proxy=True)
        with (
            serve_in_thread(service, lifespan="on") as service_url,
            serve_in_thread(pods, lifespan="on") as pods_url,
        ):
            api = GatewayTarget.direct(
                pods_url, pod_proxy=pods_url + "/{pod}", headers={"Authorization": "Bearer k8s"}
            )
            async with Gateway(GatewayTarget.direct(service_url), pods=api) as gateway:
                assert (await gateway.chat(HELLO)).outcome is Outcome.OK
                assert (await gateway.health()).ok
                assert (await gateway.pod_metrics("test-pod")).requests == 0
    assert [path for path, _ in service.seen] == ["/v1/models", "/v1/chat/completions", "/healthz"]
    assert all(authorization is None for _, authorization in service.seen)
    assert pods.seen == [("/test-pod/metrics", "Bearer k8s")]
