"""``POST /v1/chat/completions``: validate, admit (or queue), and relay the engine's reply."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from backend.admission import ActiveChat, Refused
from backend.engine import SseParser
from backend.engine_clients import EngineBroken, EngineReply, EngineTimedOut, EngineUnreachable
from backend.errors import ApiError
from backend.jsontext import parse_json
from backend.replies import (
    Deadline,
    EngineEvents,
    Failure,
    Outcome,
    Reply,
    plain_completion,
    read_plain,
    status_failure,
)
from backend.state import BackendState, backend_state
from backend.validation import ChatRequest, validate_chat

__all__ = ["ChatRelay", "chat_completions", "models_endpoint"]

log = logging.getLogger("backend.chat")

# Status recorded for a chat whose client went away (nginx's convention; never sent).
_CLIENT_CLOSED = 499
_RETRY_SOON = {"Retry-After": "1"}
# json.dumps with separators builds an encoder per call; this one is made once.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


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
        reply = Reply(send, self.chat)
        client_gone = False
        active: ActiveChat | None = None

        async def serve() -> None:
            nonlocal active
            try:
                active = await state.gate.admit()
            except Refused as refused:
                reason = refused.reason
                error = _shutting_down() if reason == "draining" else _busy(refused)
                state.metrics.refused(reason, error.status)
                await reply.refuse(error.response())
            else:
                await self._relay(reply, active, outcome)
            watcher.cancel()  # the reply is out: nothing left to watch

        async def watch_disconnect() -> None:
            nonlocal client_gone
            while (await receive())["type"] != "http.disconnect":
                pass
            if not reply.complete:
                client_gone = True
                relay.cancel()

        try:
            # asyncio's own task group: anyio's costs about 190 us a chat on this path (the
            # cancel of the watcher alone formats a task's repr), asyncio's about 25 us. The
            # relay runs in a task of its own: every chunk wakes it, and a task resumes every
            # frame it awaits through, so this one skips the dozen frames of middleware and
            # routing above this response.
            async with asyncio.TaskGroup() as group:
                relay = group.create_task(serve())
                watcher = group.create_task(watch_disconnect())
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

    async def _relay(self, reply: Reply, active: ActiveChat, outcome: Outcome) -> None:
        """Send the chat to the engine, once, and pass its reply on, within the deadlines."""
        state = self.state
        chat = self.chat
        body = _COMPACT_JSON.encode(chat.engine_payload).encode()
        # The engine's deadlines run from admission: a wait in the queue is not the engine's
        # slowness (QUEUE_TIMEOUT bounds it). TTFT is still measured from arrival.
        deadline = Deadline(anyio.current_time(), state.settings, chat.stream)
        active.attach(deadline.scope)
        failure: Failure | None = None
        upstream: EngineReply | None = None
        with deadline.scope:
            try:
                upstream = await state.client.send_chat(body, stream=chat.stream)
                outcome.engine_headers = time.perf_counter() - self.arrived_perf
                if upstream.status != 200:
                    failure = await status_failure(upstream)
                else:
                    state.readiness.engine_answered()
                    if chat.stream:
                        failure = await self._pass_on(upstream, reply, deadline, outcome)
                    else:
                        failure = await self._pass_on_plain(upstream, reply, outcome)
            except EngineUnreachable:
                failure = Failure(503, "engine_unavailable", "The engine is unavailable.", 1)
            except EngineTimedOut:
                failure = Failure(504, "engine_read_timeout", "The engine stopped answering.")
            except EngineBroken:
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
        self, upstream: EngineReply, reply: Reply, deadline: Deadline, outcome: Outcome
    ) -> Failure | None:
        """Relay the engine's events to ``reply``; return the failure that ended it, if any."""
        events = EngineEvents(outcome, self.state.metrics, self.chat, self.arrived_perf)
        parser = SseParser()
        # Each chunk holds everything already received, so a busy backend forwards several
        # events with one write instead of one each.
        chunks = upstream.chunks()
        async for chunk in chunks:
            batch = parser.feed(chunk)
            if not batch:
                continue
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
                async for _ in chunks:
                    pass  # reading to the end lets the connection be reused
                return None
            await reply.forward(forward, started)
        events.end()  # an engine may end its body without [DONE]
        if events.failure is None:
            await reply.succeed([], outcome)
        return events.failure

    async def _pass_on_plain(
        self, upstream: EngineReply, reply: Reply, outcome: Outcome
    ) -> Failure | None:
        """Read the engine's plain reply and answer with it; return the failure, if any."""
        body = await read_plain(upstream)
        if body is None:
            return Failure(502, "engine_protocol", "The engine sent an oversized reply.")
        failure = plain_completion(body, self.chat.model, outcome)
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
