"""The cockpit's client to the gateway: streamed chats, health probes and each pod's metrics.

One `Gateway` holds pooled clients per origin it talks to: the Service (through the API server's
service proxy, or a `--backend-url`) and, for per-pod `/metrics`, the API server's pod proxy.
Chats stream on `httpx2` (its SSE parser); the short requests (health probes, `/metrics`, the
model list) go on aiohttp (`tui.gateway.shortcalls`), which measured about a fifth of httpx2's
CPU per request and four times its requests/s on `GET /healthz` at concurrency 10 (1,920-2,020
against 469-470 req/s, 282-300 against 1,536-1,619 us of CPU per request, load average 4 on 2
cores). Credentials given for one target are only ever sent to that target's origin, so a
Kubernetes token never reaches a user's own backend URL. Targets and their credentials are in
`tui.gateway.target` (re-exported here).

Everything the server sends back (error bodies, header values, pod names) is untrusted: it is
kept as plain data in the samples and never formatted into markup here; the UI sanitises it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import Any

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from tui.core.model import BackendMetrics, ChatSample, HealthSample
from tui.gateway.auth import FreshHeaders
from tui.gateway.chatcall import (
    ChatCancelled,
    ChatProgress,
    check_messages,
    error_detail,
    parse_retry_after,
)
from tui.gateway.shortcalls import Answer, ShortCallError, ShortCalls
from tui.gateway.target import GatewayError, GatewayTarget, ssl_context_for

__all__ = ["Gateway", "parse_backend_metrics"]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
SERVED_BY = "x-served-by"

# A chat may wait long for its first token on a CPU model behind a queue; the backend enforces
# its own first-token deadline, so the read timeout here is only a safety net per chunk.
_CHAT_TIMEOUT = httpx2.Timeout(connect=5.0, read=120.0, write=10.0, pool=10.0)
# The load engine's user cap (64) plus the chat pane, health probes and metrics polls.
_LIMITS = httpx2.Limits(max_connections=96, max_keepalive_connections=96, keepalive_expiry=4.0)
_ERROR_BODY_BYTES = 4096
_DETAIL_CHARS = 300
# After [DONE], how long to wait for the end of the body so the connection can be reused.
_DRAIN_SECONDS = 1.0


def _client(target: GatewayTarget, tls: ssl.SSLContext | bool) -> httpx2.AsyncClient:
    # trust_env=False: no proxy or CA from the environment, so load goes only to this target.
    return httpx2.AsyncClient(
        base_url=target.base_url,
        headers=dict(target.headers),
        auth=FreshHeaders(target.auth) if target.auth is not None else None,
        verify=tls,
        timeout=_CHAT_TIMEOUT,
        limits=_LIMITS,
        trust_env=False,
        follow_redirects=False,
    )


def _kind_of(error: httpx2.TransportError, answered: bool) -> str:
    """The error kind of a transport failure; `answered` once a 200 stream has begun."""
    if isinstance(error, httpx2.ConnectError | httpx2.ConnectTimeout):
        return "connect"
    if isinstance(error, httpx2.TimeoutException):
        return "timeout"
    if isinstance(error, httpx2.SSEError):
        return "protocol"
    # The connection broke: mid-reply the user got part of an answer.
    return "truncated" if answered else "network"


class Gateway:
    """The gateway as the cockpit uses it: chats, health, models, and each pod's metrics.

    `pods` is where per-pod `/metrics` come from; by default `target` itself (its pod proxy).
    With a `--backend-url`, pass the API server's target here, so its token stays with it.
    `model` is the model asked for; None asks the gateway (`/v1/models`) once, on first use.
    """

    def __init__(
        self,
        target: GatewayTarget,
        model: str | None = None,
        *,
        pods: GatewayTarget | None = None,
    ) -> None:
        """Open the pooled clients (no connection is made until the first request)."""
        self.target = target
        self.pods_target = pods if pods is not None else target
        self._model = model
        tls = ssl_context_for(target)
        self._client = _client(target, tls)
        self._short = ShortCalls(dict(target.headers), tls, target.auth)
        self._pods_short = (
            self._short
            if pods is None
            else ShortCalls(dict(pods.headers), ssl_context_for(pods), pods.auth)
        )
        self._model_lock = asyncio.Lock()

    async def __aenter__(self) -> Gateway:
        """Use the gateway in `async with`; it closes on exit."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the clients."""
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._client.aclose()
        await self._short.aclose()
        if self._pods_short is not self._short:
            await self._pods_short.aclose()

    async def models(self) -> list[str]:
        """The model ids the gateway serves (`GET /v1/models`)."""
        answer = await self._get(self._short, self.target.base_url + MODELS_PATH)
        try:
            data = json.loads(answer.body)["data"]
            return [item["id"] for item in data if isinstance(item.get("id"), str)]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise GatewayError("protocol", "the model list is not in the OpenAI shape") from None

    async def model(self) -> str:
        """The model chats ask for: the one given, else the gateway's first (asked once)."""
        async with self._model_lock:
            if self._model is None:
                names = await self.models()
                if not names:
                    raise GatewayError("protocol", "the gateway lists no model")
                self._model = names[0]
            return self._model

    async def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        max_tokens: int = 64,
        origin: str = "chat",
        on_text: Callable[[str], None] | None = None,
        stop: asyncio.Event | None = None,
        stream: bool = True,
    ) -> ChatSample:
        """Send one chat and return how it went; never raises for a failed request.

        Streamed (the default), `on_text` gets each piece of the reply as it arrives; with
        `stream=False` the backend answers once, with the whole reply and its `usage`, and the
        sample has no TTFT and no gaps (`streamed` False). Setting `stop` (Escape) closes the
        reply at once and returns a sample with outcome `CANCELLED`. Cancelling the calling
        task also closes it, and raises `ChatCancelled` (a `CancelledError`, so the
        cancellation propagates as asyncio wants) carrying the chat's sample so far.
        A 429 is `Outcome.SHED` with the server's `Retry-After` in `retry_after`.
        """
        checked = check_messages(messages)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, not {max_tokens!r}")
        progress = ChatProgress(origin, on_text, streamed=stream)
        try:
            model = await self.model()
        except GatewayError as error:
            progress.status = error.status
            progress.fail(error.kind, error.detail)
            return progress.sample()
        body: dict[str, Any] = {"model": model, "messages": checked, "max_tokens": max_tokens}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        else:
            body["stream"] = False
        send = self._stream if stream else self._plain
        try:
            if stop is None:
                await send(body, progress)
            else:
                await self._until_stopped(send(body, progress), stop, progress)
        except asyncio.CancelledError as cancelled:
            progress.cancel("the chat's task was cancelled (the load stopped)")
            raise ChatCancelled(progress.sample()) from cancelled
        return progress.sample()

    @staticmethod
    async def _until_stopped(
        reading: Coroutine[Any, Any, None], stop: asyncio.Event, progress: ChatProgress
    ) -> None:
        """Read the reply until it ends or `stop` is set (then close it at once)."""
        reader = asyncio.ensure_future(reading)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not reader.done():
                reader.cancel()
                # Waiting (not awaiting) lets the reply close without raising its
                # CancelledError here; a cancellation of this task still propagates.
                await asyncio.wait({reader})
        if reader.cancelled():
            progress.cancel("stopped by the user")
        else:
            reader.result()  # a bug in on_text surfaces here

    async def _plain(self, body: dict[str, Any], progress: ChatProgress) -> None:
        """Send a chat with `stream: false` and read its one reply into `progress`."""
        progress.begin()
        try:
            async with self._client.stream("POST", CHAT_PATH, json=body) as response:
                progress.status = response.status_code
                progress.pod = response.headers.get(SERVED_BY)
                if response.status_code != 200:
                    await self._http_failure(response, progress)
                    return
                progress.take_reply(await response.aread())
        except httpx2.TransportError as error:
            progress.fail(_kind_of(error, progress.status == 200), str(error)[:_DETAIL_CHARS])

    async def _stream(self, body: dict[str, Any], progress: ChatProgress) -> None:
        """Send the chat and read its events into `progress`."""
        progress.begin()
        try:
            async with self._client.sse(CHAT_PATH, method="POST", json=body) as source:
                response = source.response
                progress.status = response.status_code
                progress.pod = response.headers.get(SERVED_BY)
                if response.status_code != 200:
                    await self._http_failure(response, progress)
                    return
                events = _events(source)
                async for event in events:
                    if progress.take(event.data):
                        break
                if progress.done:
                    await _drain(events)
        except httpx2.TransportError as error:
            progress.fail(_kind_of(error, progress.status == 200), str(error)[:_DETAIL_CHARS])

    @staticmethod
    async def _http_failure(response: httpx2.Response, progress: ChatProgress) -> None:
        status = response.status_code
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= _ERROR_BODY_BYTES:
                break
        progress.fail(f"http_{status}", error_detail(body[:_ERROR_BODY_BYTES]))
        progress.retry_after = parse_retry_after(response.headers.get("retry-after"))

    async def health(self) -> HealthSample:
        """`GET /healthz` through the Service, timed; failures are samples too."""
        at = time.time()
        started = time.perf_counter()
        try:
            answer = await self._short.get(self.target.base_url + HEALTH_PATH)
        except ShortCallError as error:
            return HealthSample(at=at, latency=None, error=error.kind)
        latency = time.perf_counter() - started
        status = answer.status
        return HealthSample(
            at=at,
            latency=latency,
            status=status,
            pod=answer.headers.get(SERVED_BY),
            error=None if status == 200 else f"http_{status}",
        )

    async def pod_metrics(self, pod: str) -> BackendMetrics:
        """One pod's gateway counters from its `/metrics`, through the pod proxy."""
        url = self.pods_target.pod_url(pod) + METRICS_PATH
        at = time.time()
        answer = await self._get(self._pods_short, url)
        return parse_backend_metrics(pod, answer.body.decode("utf-8", errors="replace"), at)

    @staticmethod
    async def _get(calls: ShortCalls, url: str) -> Answer:
        """A short GET; no answer or a non-200 one is a `GatewayError`."""
        try:
            answer = await calls.get(url)
        except ShortCallError as error:
            raise GatewayError(error.kind, str(error)) from None
        if answer.status != 200:
            detail = error_detail(answer.body[:_ERROR_BODY_BYTES])
            raise GatewayError(f"http_{answer.status}", detail, answer.status)
        return answer


def _events(source: httpx2.EventSource) -> AsyncIterator[httpx2.ServerSentEvent]:
    # One iterator for the whole stream, so reading can stop at [DONE] and resume to drain.
    return source.__aiter__()


async def _drain(events: AsyncIterator[httpx2.ServerSentEvent]) -> None:
    """Read the rest of a finished stream briefly, so its connection goes back to the pool."""
    with contextlib.suppress(TimeoutError, httpx2.TransportError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for _ in events:
                pass


# Sample names in the backend's /metrics (backend/metrics.py); counters end in `_total`.
_INFLIGHT = "kube_llm_inflight"
_REQUESTS = "kube_llm_requests_total"
_TTFT_SUM = "kube_llm_ttft_seconds_sum"
_TTFT_COUNT = "kube_llm_ttft_seconds_count"
_OUTPUT_TOKENS = "kube_llm_output_tokens_total"
# Chunks of replies the engine gave no usage for (llama-cpp-python's server when streaming).
_OUTPUT_CHUNKS = "kube_llm_output_chunks_total"
# Chats waiting for a slot in the backend's admission queue (absent from a backend without one).
_QUEUED = "kube_llm_queue_depth"


def parse_backend_metrics(pod: str, text: str, at: float) -> BackendMetrics:
    """A pod's `BackendMetrics` from its Prometheus text (labelled series are summed)."""
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    except ValueError as error:
        raise GatewayError("parse", f"not Prometheus text: {error}") from None
    if _INFLIGHT not in totals:
        raise GatewayError("parse", f"no {_INFLIGHT} in the metrics: not a kube-llm backend?")
    return BackendMetrics(
        pod=pod,
        at=at,
        inflight=totals[_INFLIGHT],
        requests=totals.get(_REQUESTS, 0.0),
        ttft_sum=totals.get(_TTFT_SUM, 0.0),
        ttft_count=totals.get(_TTFT_COUNT, 0.0),
        output_tokens=totals.get(_OUTPUT_TOKENS, 0.0),
        queued=totals.get(_QUEUED),
        output_chunks=totals.get(_OUTPUT_CHUNKS, 0.0),
    )
