"""``POST /v1/chat/completions``: validate, admit, and relay the engine's stream."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from backend.admission import ActiveChat, Refused
from backend.engine import parse_json, sse_batches
from backend.errors import ApiError, error_response, error_type_for, sse_error_event
from backend.metrics import Metrics
from backend.settings import Settings
from backend.state import BackendState, backend_state
from backend.validation import ChatRequest, validate_chat

__all__ = ["ChatRelay", "chat_completions", "models_endpoint"]

log = logging.getLogger("backend.chat")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"
_ENGINE_HEADERS = {
    "content-type": "application/json",
    "accept": "text/event-stream",
    "accept-encoding": "identity",
    "user-agent": "kube-llm-backend",
}
_ENGINE_PLAIN_HEADERS = {**_ENGINE_HEADERS, "accept": "application/json"}
# The largest plain (non-streamed) engine reply read; a completion of MAX_TOKENS_CAP tokens is
# a small fraction of it.
_MAX_PLAIN_BYTES = 8 * 1024 * 1024
# Status recorded for a chat whose client went away (nginx's convention; never sent).
_CLIENT_CLOSED = 499
# After [DONE], how long the relay waits for the end of the engine's body (to reuse the connection).
_DRAIN_SECONDS = 1.0
_RETRY_SOON = {"Retry-After": "1"}


@dataclass(slots=True)
class Failure:
    """Why a chat could not be completed, both as an HTTP error and as a terminal event."""

    status: int
    kind: str
    message: str
    retry_after: int | None = None

    def response(self) -> JSONResponse:
        """Return the failure as a JSON error, for a reply not yet started."""
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return error_response(self.status, self.message, code=self.kind, headers=headers)

    def event(self) -> bytes:
        """Return the failure as the terminal event of a stream already under way."""
        return sse_error_event(self.message, type_=error_type_for(self.status), code=self.kind)


@dataclass(slots=True)
class Outcome:
    """What happened to one admitted chat, for metrics and the log line."""

    status: int = 200
    chunks: int = 0  # streamed chunks that carried content
    ttft: float | None = None
    error_kind: str | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    completion: dict[str, Any] | None = None  # a plain reply, as the client gets it
    engine_headers: float | None = None

    @property
    def completion_tokens(self) -> int | None:
        """The output tokens the engine reported in its usage, if it did."""
        tokens = (self.usage or {}).get("completion_tokens")
        return tokens if isinstance(tokens, int) and tokens >= 0 else None

    @property
    def started(self) -> bool:
        """Whether the first token (or a finish reason) has come from the engine."""
        return self.ttft is not None


def _read_limit_error(limit: int) -> ApiError:
    return ApiError(
        413, f"Request body too large: at most {limit} bytes.", code="request_too_large"
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _read_limit_error(limit)
        except ValueError:
            raise ApiError(400, "Invalid Content-Length.", code="invalid_request") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _read_limit_error(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_body(raw: bytes) -> Any:
    try:
        return parse_json(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None


def _reason_for(error: ApiError) -> str:
    if error.status == 413:
        return "too_large"
    if error.status == 503:
        return "draining"
    return "invalid"


def _shutting_down() -> ApiError:
    return ApiError(503, "The server is shutting down.", code="shutting_down", headers=_RETRY_SOON)


def _busy(refused: Refused) -> ApiError:
    if refused.reason == "queue_timeout":
        message = f"No chat slot came free within {refused.waited:.0f} s, retry shortly."
    else:
        message = "Too many chats in progress and queued, retry shortly."
    return ApiError(429, message, code=refused.reason, headers=_RETRY_SOON)


async def chat_completions(request: Request) -> Response:
    """Serve ``POST /v1/chat/completions`` (streamed as SSE when ``stream`` is true)."""
    state = backend_state(request)
    arrived_perf = time.perf_counter()
    try:
        if state.gate.draining:
            raise _shutting_down()
        try:
            raw = await _read_body(request, state.settings.max_body_bytes)
        except ClientDisconnect:
            raise ApiError(400, "The client went away.", code="client_disconnected") from None
        chat = validate_chat(_parse_body(raw), state.settings)
    except ApiError as error:
        state.metrics.refused(_reason_for(error), error.status)
        return error.response()
    return ChatRelay(state, chat, arrived_perf)


async def models_endpoint(request: Request) -> Response:
    """Serve ``GET /v1/models``: the allowlisted models, in the OpenAI list shape."""
    settings = backend_state(request).settings
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "kube-llm"}
        for name in settings.models
    ]
    return JSONResponse({"object": "list", "data": data})


def _engine_request(url: httpx2.URL, chat: ChatRequest) -> httpx2.Request:
    # A Request built directly costs a fraction of client.build_request's URL and header
    # merging; the headers it needs are all here.
    body = json.dumps(chat.engine_payload, separators=(",", ":")).encode()
    headers = _ENGINE_HEADERS if chat.stream else _ENGINE_PLAIN_HEADERS
    return httpx2.Request("POST", url, content=body, headers=headers)


def _raw_stream(response: httpx2.Response) -> AsyncIterator[bytes]:
    # httpx2's aiter_raw re-chunks and counts bytes on every chunk; the relay needs neither.
    stream = response.stream
    assert isinstance(stream, httpx2.AsyncByteStream)
    return stream.__aiter__()


def _delta(chunk: dict[str, Any]) -> tuple[str | None, str | None]:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None, None
    choice = choices[0]
    delta = choice.get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    finish = choice.get("finish_reason")
    return (
        content if isinstance(content, str) else None,
        finish if isinstance(finish, str) else None,
    )


def _engine_message(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
        message = parsed["error"]["message"] if "error" in parsed else parsed["detail"]
    except (ValueError, KeyError, TypeError):
        return None
    return message[:500] if isinstance(message, str) else None


async def _status_failure(upstream: httpx2.Response) -> Failure:
    body = b""
    async for chunk in upstream.aiter_raw():
        body += chunk
        if len(body) > 65536:
            break
    status = upstream.status_code
    if status == 400:
        message = _engine_message(body) or "The engine rejected the request."
        return Failure(400, "engine_rejected", message)
    if status in (404, 429) or status >= 500:
        retry = upstream.headers.get("retry-after", "1")
        retry_after = int(retry) if retry.isdigit() and 0 < int(retry) <= 60 else 1
        return Failure(
            503, f"engine_{status}", "The engine is unavailable, retry shortly.", retry_after
        )
    return Failure(502, f"engine_{status}", f"The engine answered HTTP {status}.")


class _EngineEvents:
    """Reads the engine's events into an ``Outcome`` and says what goes on to the client.

    ``take`` handles one batch of SSE data payloads: it counts content chunks, notes the time
    to the first token, the finish reason and usage, and returns the events to forward (the
    usage chunk only when the client asked for it). It stops at ``[DONE]``
    (then ``done``) or at the first event that ends the chat (then ``failure``).
    """

    __slots__ = (
        "_arrived_perf",
        "_include_usage",
        "_metrics",
        "_outcome",
        "_stream",
        "done",
        "failure",
    )

    def __init__(
        self, outcome: Outcome, metrics: Metrics, chat: ChatRequest, arrived_perf: float
    ) -> None:
        """Account into ``outcome`` for ``chat``, which arrived at ``arrived_perf``."""
        self._outcome = outcome
        self._metrics = metrics
        self._stream = chat.stream
        self._include_usage = chat.include_usage
        self._arrived_perf = arrived_perf
        self.done = False
        self.failure: Failure | None = None

    def take(self, batch: list[bytes]) -> list[bytes]:
        """Account for ``batch``; return its events as SSE bytes for a streamed reply."""
        outcome = self._outcome
        stream = self._stream
        forward: list[bytes] = []
        for data in batch:
            if data == b"[DONE]":
                self.end()
                break
            try:
                chunk = parse_json(data)
            except (ValueError, RecursionError):
                chunk = None
            if not isinstance(chunk, dict):
                self.failure = Failure(502, "engine_protocol", "The engine sent bad data.")
                break
            if "error" in chunk:
                self.failure = Failure(
                    502, "engine_midstream", "The engine failed while answering."
                )
                break
            content, finish = _delta(chunk)
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                outcome.usage = usage
                if not chunk.get("choices") and not self._include_usage:
                    continue  # the usage chunk was asked for the metrics, not by the client
            if finish is not None:
                outcome.finish_reason = finish
            if content:
                outcome.chunks += 1
            if outcome.ttft is None and (content or finish is not None):
                outcome.ttft = time.perf_counter() - self._arrived_perf
                self._metrics.ttft.observe(outcome.ttft)
            if stream:
                forward.append(b"data: " + data + b"\n\n")
        return forward

    def end(self) -> None:
        """The engine ended its reply ([DONE] or the end of the body): done, or truncated."""
        # The protocol sends a finish_reason before the end; an engine that skips it cut the
        # reply short (llama-cpp-python does when another request interrupts it).
        if self._outcome.finish_reason is None:
            self.failure = Failure(502, "engine_truncated", "The engine reply ended early.")
        else:
            self.done = True


class _Reply:
    """The client's side of a chat: sends the reply and knows how far it has got.

    A streamed reply is held back until its first token, so that a failure before then is
    still a plain HTTP error (and could be retried elsewhere); then it is committed (status 200,
    SSE headers, the held events) and each batch is forwarded as it comes. It ends with
    ``[DONE]``, or after a commit with one terminal error event. A plain reply ends with the
    whole completion or a JSON error.
    """

    __slots__ = ("_held", "_model", "_send", "_stream", "committed", "complete")

    def __init__(self, send: Send, chat: ChatRequest) -> None:
        """Reply to ``chat`` through ``send``."""
        self._send = send
        self._stream = chat.stream
        self._model = chat.model
        self._held: list[bytes] = []
        self.committed = False  # the SSE reply has started
        self.complete = False  # the client has its whole reply

    async def forward(self, events: list[bytes], started: bool) -> None:
        """Pass ``events`` on once committed; hold them until the first token (``started``)."""
        if self.committed:
            if events:
                body = b"".join(events)
                await self._send({"type": "http.response.body", "body": body, "more_body": True})
        elif self._stream:
            self._held += events
            if started:
                await self._commit()
                held = b"".join(self._held)
                self._held.clear()
                await self._send({"type": "http.response.body", "body": held, "more_body": True})

    async def succeed(self, events: list[bytes], outcome: Outcome) -> None:
        """End a good reply: the last ``events`` and ``[DONE]``, or the whole completion."""
        if not self._stream:
            await self._respond(JSONResponse(outcome.completion))
            return
        if not self.committed:
            events = self._held + events
            await self._commit()
        events.append(_DONE)
        await self._last(b"".join(events))

    async def refuse(self, response: Response) -> None:
        """Answer with ``response`` (a refusal) instead of a chat."""
        await self._respond(response)

    async def fail(self, failure: Failure) -> None:
        """End the reply with ``failure``: a terminal event once committed, else an error."""
        if self.committed:
            await self._last(failure.event())
        else:
            await self._respond(failure.response())

    async def _commit(self) -> None:
        self.committed = True
        await self._send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})

    async def _respond(self, response: Response) -> None:
        start = {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
        await self._send(start)
        await self._last(response.body)

    async def _last(self, body: bytes | memoryview[int]) -> None:
        self.complete = True  # set first: uvicorn reports a disconnect once the reply is out
        await self._send({"type": "http.response.body", "body": body, "more_body": False})


def _plain_completion(body: bytes, model: str, outcome: Outcome) -> Failure | None:
    """Check the engine's plain reply; keep it on ``outcome`` in the OpenAI shape, with usage."""
    try:
        reply = parse_json(body)
    except (ValueError, RecursionError):
        reply = None
    if not isinstance(reply, dict):
        return Failure(502, "engine_protocol", "The engine sent bad data.")
    if "error" in reply:
        return Failure(502, "engine_failed", "The engine failed while answering.")
    choices = reply.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    if not isinstance(content, str):
        return Failure(502, "engine_protocol", "The engine sent bad data.")
    if not isinstance(finish, str):
        # As in a stream: a reply with no finish reason was cut short.
        return Failure(502, "engine_truncated", "The engine reply ended early.")
    outcome.finish_reason = finish
    usage = reply.get("usage")
    completion: dict[str, Any] = {
        "id": reply.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": reply.get("created") or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
    }
    if isinstance(usage, dict):
        outcome.usage = usage
        completion["usage"] = usage
    outcome.completion = completion
    return None


async def _read_plain(upstream: httpx2.Response) -> bytes | None:
    """Read a plain engine reply whole; ``None`` when it is larger than any reply can be."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in _raw_stream(upstream):
        size += len(chunk)
        if size > _MAX_PLAIN_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _Deadline:
    """The relay's cancel scope, and the one deadline it moves through the chat.

    Until the first token it is the first-token deadline; then ``ENGINE_READ_TIMEOUT`` past
    the latest chunk; once the reply is out, a short wait for the end of the engine's body;
    never past the total deadline. A shutdown cancels the scope through the ``ActiveChat``.
    """

    __slots__ = ("_clock", "_next_move", "_read_timeout", "_streamed", "scope", "total")

    def __init__(self, arrived: float, settings: Settings, streamed: bool) -> None:
        """Set the deadlines of a chat that arrived at ``arrived`` (anyio's clock).

        A plain (not ``streamed``) chat has only the total deadline: its engine call sends no
        token before the whole reply, so no first token can be waited for.
        """
        self.total = arrived + settings.request_timeout
        self._streamed = streamed
        first = arrived + settings.first_token_timeout if streamed else self.total
        self.scope = anyio.CancelScope(deadline=min(first, self.total))
        self._read_timeout = settings.engine_read_timeout
        self._next_move = float("-inf")
        self._clock = asyncio.get_running_loop().time  # anyio's deadline clock, minus a layer

    def chunk_arrived(self) -> bool:
        """Give the engine ``ENGINE_READ_TIMEOUT`` from now for its next chunk.

        Return whether the deadline moved (at most every half period), for callers that want
        to note the engine's progress at that rate rather than on every chunk.
        """
        now = self._clock()
        if now < self._next_move:
            return False
        # Moving the deadline costs a timer; half a period of slack is enough for a
        # per-chunk timeout.
        self._next_move = now + self._read_timeout / 2
        self.scope.deadline = min(self.total, now + self._read_timeout)
        return True

    def drain(self) -> None:
        """Only the end of the engine's body is left: do not wait long for it."""
        self.scope.deadline = min(self.scope.deadline, self._clock() + _DRAIN_SECONDS)

    def failure(self, active: ActiveChat, started: bool) -> Failure:
        """Say why the scope was cancelled: shutdown, or which deadline passed."""
        if active.abort_reason == "shutting_down":
            return Failure(503, "shutting_down", "The server is shutting down.", 1)
        if not started and self._streamed:
            return Failure(504, "first_token_timeout", "The engine sent no token in time.")
        if anyio.current_time() >= self.total:
            return Failure(504, "request_timeout", "The reply took too long.")
        return Failure(504, "engine_read_timeout", "The engine stopped answering.")


class ChatRelay(Response):
    """The ASGI response for an admitted chat: admission, relay, deadlines and disconnects."""

    def __init__(self, state: BackendState, chat: ChatRequest, arrived_perf: float) -> None:
        """Relay ``chat`` for a request that arrived at ``arrived_perf`` (``time.perf_counter``,
        for the metrics: TTFT and duration include any wait in the queue)."""
        self.state = state
        self.chat = chat
        self.arrived_perf = arrived_perf
        self.status_code = 200
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit the chat (queued if need be, or refused), then relay it until done or
        disconnected. A client that leaves while queued gives up its place in the queue."""
        state = self.state
        outcome = Outcome()
        reply = _Reply(send, self.chat)
        client_gone = False
        active: ActiveChat | None = None
        try:
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    nonlocal client_gone
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    if not reply.complete:
                        client_gone = True
                        group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                try:
                    active = await state.gate.admit()
                except Refused as refused:
                    error = _shutting_down() if refused.reason == "draining" else _busy(refused)
                    state.metrics.refused(refused.reason, error.status)
                    await reply.refuse(error.response())
                else:
                    await self._relay(reply, active, outcome)
                group.cancel_scope.cancel()
        finally:
            if active is not None:
                state.gate.release(active)
                if client_gone:
                    outcome.status = _CLIENT_CLOSED
                    outcome.error_kind = outcome.error_kind or "client_disconnected"
                self._record(outcome)
            elif client_gone:
                # Left while queued: no chat ran, but the request was answered (by leaving).
                state.metrics.requests.labels(str(_CLIENT_CLOSED)).inc()

    async def _relay(self, reply: _Reply, active: ActiveChat, outcome: Outcome) -> None:
        """Send the chat to the engine and pass its reply on, within the deadlines."""
        state = self.state
        request = _engine_request(state.chat_url, self.chat)
        # The engine's deadlines run from admission: a wait in the queue is not the engine's
        # slowness (QUEUE_TIMEOUT bounds it). TTFT is still measured from arrival.
        deadline = _Deadline(anyio.current_time(), state.settings, self.chat.stream)
        active.attach(deadline.scope)
        failure: Failure | None = None
        upstream: httpx2.Response | None = None
        with deadline.scope:
            try:
                upstream = await state.client.send(request, stream=True)
                outcome.engine_headers = time.perf_counter() - self.arrived_perf
                if upstream.status_code != 200:
                    failure = await _status_failure(upstream)
                else:
                    state.readiness.engine_answered()
                    if self.chat.stream:
                        failure = await self._pass_on(upstream, reply, deadline, outcome)
                    else:
                        failure = await self._pass_on_plain(upstream, reply, outcome)
            except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout):
                failure = Failure(503, "engine_unavailable", "The engine is unavailable.", 1)
            except httpx2.TimeoutException:
                failure = Failure(504, "engine_read_timeout", "The engine stopped answering.")
            except httpx2.TransportError:
                failure = Failure(502, "engine_disconnected", "The engine connection broke.")
            finally:
                if upstream is not None:
                    with anyio.CancelScope(shield=True):
                        await upstream.aclose()
        if reply.complete:
            return  # whatever happened after the reply (the drain) is no failure of the chat
        if failure is None:  # the scope was cancelled
            failure = deadline.failure(active, outcome.started)
        outcome.error_kind = failure.kind
        if not reply.committed:
            outcome.status = failure.status
        await reply.fail(failure)

    async def _pass_on(
        self, upstream: httpx2.Response, reply: _Reply, deadline: _Deadline, outcome: Outcome
    ) -> Failure | None:
        """Relay the engine's events to ``reply``; return the failure that ended it, if any."""
        events = _EngineEvents(outcome, self.state.metrics, self.chat, self.arrived_perf)
        # Each batch holds the events of every chunk already received, so a busy backend
        # forwards several events with one write instead of one each.
        batches = sse_batches(_raw_stream(upstream))
        async for batch in batches:
            forward = events.take(batch)
            started = outcome.started
            if events.failure is not None:
                # Tokens that came with the failure still reach the client.
                await reply.forward(forward, started)
                return events.failure
            if started and deadline.chunk_arrived():
                self.state.readiness.engine_answered()
            if events.done:
                await reply.succeed(forward, outcome)
                deadline.drain()
                async for _ in batches:
                    pass  # reading to the end lets the connection be reused
                return None
            await reply.forward(forward, started)
        events.end()  # an engine may end its body without [DONE]
        if events.failure is None:
            await reply.succeed([], outcome)
        return events.failure

    async def _pass_on_plain(
        self, upstream: httpx2.Response, reply: _Reply, outcome: Outcome
    ) -> Failure | None:
        """Read the engine's plain reply and answer with it; return the failure, if any."""
        body = await _read_plain(upstream)
        if body is None:
            return Failure(502, "engine_protocol", "The engine sent an oversized reply.")
        failure = _plain_completion(body, self.chat.model, outcome)
        if failure is None:
            self.state.readiness.engine_answered()
            await reply.succeed([], outcome)
        return failure

    def _record(self, outcome: Outcome) -> None:
        """Count the finished chat in the metrics and write its log line."""
        metrics = self.state.metrics
        elapsed = time.perf_counter() - self.arrived_perf
        metrics.requests.labels(str(outcome.status)).inc()
        metrics.request_seconds.observe(elapsed)
        tokens = outcome.completion_tokens
        if tokens is not None:
            metrics.output_tokens.inc(tokens)
        elif outcome.chunks:
            # The engine gave no usage (llama-cpp-python's server in a stream): count what
            # can be counted, under its own name, rather than call chunks tokens.
            metrics.output_chunks.inc(outcome.chunks)
        if outcome.error_kind and outcome.error_kind not in (
            "client_disconnected",
            "shutting_down",
        ):
            metrics.engine_errors.labels(outcome.error_kind).inc()
        log.info(
            "chat",
            extra={
                "fields": {
                    "status": outcome.status,
                    "model": self.chat.model,
                    "stream": self.chat.stream,
                    "prompt_chars": self.chat.prompt_chars,
                    "output_tokens": tokens,
                    "output_chunks": outcome.chunks,
                    "engine_headers_ms": _ms(outcome.engine_headers),
                    "ttft_ms": _ms(outcome.ttft),
                    "duration_ms": round(elapsed * 1e3, 1),
                    "error": outcome.error_kind,
                }
            },
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 2)
