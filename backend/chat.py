"""``POST /v1/chat/completions``: validate, admit, and relay the engine's stream."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from backend.admission import ActiveChat
from backend.engine import parse_json, sse_batches
from backend.errors import ApiError, error_body, sse_error_event
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
# Status recorded for a chat whose client went away (nginx's convention; never sent).
_CLIENT_CLOSED = 499
# After [DONE], how long the relay waits for the end of the engine's body (to reuse the connection).
_DRAIN_SECONDS = 1.0


@dataclass(slots=True)
class Failure:
    """Why a chat could not be completed, both as an HTTP error and as a terminal event."""

    status: int
    kind: str
    message: str
    retry_after: int | None = None
    type_: str = "server_error"

    def response(self) -> JSONResponse:
        """Return the failure as a JSON error, for a reply not yet started."""
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        body = error_body(self.message, type_=self.type_, code=self.kind)
        return JSONResponse(body, status_code=self.status, headers=headers)


@dataclass(slots=True)
class Outcome:
    """What happened to one admitted chat, for metrics and the log line."""

    status: int = 200
    tokens: int = 0
    ttft: float | None = None
    error_kind: str | None = None
    content: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    first_chunk: dict[str, Any] | None = None
    engine_headers: float | None = None


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


async def chat_completions(request: Request) -> Response:
    """Serve ``POST /v1/chat/completions`` (streamed as SSE when ``stream`` is true)."""
    state = backend_state(request)
    arrived = anyio.current_time()
    arrived_perf = time.perf_counter()
    try:
        if state.gate.draining:
            raise ApiError(
                503,
                "The server is shutting down.",
                code="shutting_down",
                headers={"Retry-After": "1"},
            )
        try:
            raw = await _read_body(request, state.settings.max_body_bytes)
        except ClientDisconnect:
            raise ApiError(400, "The client went away.", code="client_disconnected") from None
        chat = validate_chat(_parse_body(raw), state.settings)
    except ApiError as error:
        state.metrics.rejected.labels(_reason_for(error)).inc()
        state.metrics.requests.labels(str(error.status)).inc()
        return error.response()
    return ChatRelay(state, chat, arrived, arrived_perf)


async def models_endpoint(request: Request) -> Response:
    """Serve ``GET /v1/models``: the allowlisted models, in the OpenAI list shape."""
    settings = backend_state(request).settings
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "kube-llm"}
        for name in settings.models
    ]
    return JSONResponse({"object": "list", "data": data})


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
        return Failure(400, "engine_rejected", message, type_="invalid_request_error")
    if status in (404, 429) or status >= 500:
        retry = upstream.headers.get("retry-after", "1")
        retry_after = int(retry) if retry.isdigit() and 0 < int(retry) <= 60 else 1
        return Failure(
            503, f"engine_{status}", "The engine is unavailable, retry shortly.", retry_after
        )
    return Failure(502, f"engine_{status}", f"The engine answered HTTP {status}.")


class ChatRelay(Response):
    """The ASGI response for an admitted chat: admission, relay, deadlines and disconnects."""

    def __init__(
        self, state: BackendState, chat: ChatRequest, arrived: float, arrived_perf: float
    ) -> None:
        """Relay ``chat`` for a request that arrived at ``arrived`` (anyio's clock, for
        deadlines) and ``arrived_perf`` (``time.perf_counter``, precise, for metrics)."""
        self.state = state
        self.chat = chat
        self.arrived = arrived
        self.arrived_perf = arrived_perf
        self.status_code = 200
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit the chat (or refuse it at once), then relay it until done or disconnected."""
        state = self.state
        metrics = state.metrics
        if state.gate.draining:
            await self._refuse(scope, receive, send, 503, "draining", "shutting_down")
            return
        active = state.gate.try_admit()
        if active is None:
            await self._refuse(scope, receive, send, 429, "busy", "busy")
            return
        outcome = Outcome()
        client_gone = False
        replied = False

        async def send_and_track(message: Message) -> None:
            nonlocal replied
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                replied = True  # uvicorn reports a disconnect once the reply is complete
            await send(message)

        try:
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    nonlocal client_gone
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    if not replied:
                        client_gone = True
                        group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                await self._relay(send_and_track, active, outcome)
                group.cancel_scope.cancel()
        finally:
            state.gate.release(active)
            if client_gone:
                outcome.status = _CLIENT_CLOSED
                outcome.error_kind = outcome.error_kind or "client_disconnected"
            elapsed = time.perf_counter() - self.arrived_perf
            metrics.requests.labels(str(outcome.status)).inc()
            metrics.request_seconds.observe(elapsed)
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
                        "output_tokens": outcome.tokens,
                        "engine_headers_ms": _ms(outcome.engine_headers),
                        "ttft_ms": _ms(outcome.ttft),
                        "duration_ms": round(elapsed * 1e3, 1),
                        "error": outcome.error_kind,
                    }
                },
            )

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, reason: str, code: str
    ) -> None:
        message = (
            "Too many chats in progress, retry shortly."
            if status == 429
            else "The server is shutting down."
        )
        self.state.metrics.rejected.labels(reason).inc()
        self.state.metrics.requests.labels(str(status)).inc()
        response = ApiError(status, message, code=code, headers={"Retry-After": "1"}).response()
        await response(scope, receive, send)

    async def _relay(self, send: Send, active: ActiveChat, outcome: Outcome) -> None:
        """Send the chat to the engine and pass its reply on, enforcing every deadline."""
        state = self.state
        settings = state.settings
        metrics = state.metrics
        stream = self.chat.stream
        total_deadline = self.arrived + settings.request_timeout
        first_deadline = min(self.arrived + settings.first_token_timeout, total_deadline)
        read_timeout = settings.engine_read_timeout
        next_check = float("-inf")  # when the per-chunk deadline is next moved
        # A Request built directly costs a fraction of client.build_request's URL and header
        # merging; the headers it needs are all here.
        request = httpx2.Request(
            "POST",
            state.chat_url,
            content=json.dumps(self.chat.engine_payload, separators=(",", ":")).encode(),
            headers=_ENGINE_HEADERS,
        )
        committed = False
        pending: list[bytes] = []  # events held back until the first token
        failure: Failure | None = None
        replied = False  # the client has its whole reply
        upstream: httpx2.Response | None = None
        deadline_scope = anyio.CancelScope(deadline=first_deadline)
        active.scope = deadline_scope
        if active.abort_reason is not None:
            deadline_scope.cancel()
        clock = asyncio.get_running_loop().time  # the clock anyio's deadlines use, minus a layer
        tokens_counted = 0
        with deadline_scope:
            try:
                upstream = await state.client.send(request, stream=True)
                outcome.engine_headers = time.perf_counter() - self.arrived_perf
                if upstream.status_code != 200:
                    failure = await _status_failure(upstream)
                else:
                    # Each batch holds the events of every chunk already received, so a busy
                    # backend forwards several events with one write instead of one each.
                    async for batch in sse_batches(_raw_stream(upstream)):
                        if replied:
                            continue  # reading to the end lets the connection be reused
                        out: list[bytes] = []
                        for data in batch:
                            if data == b"[DONE]":
                                if outcome.finish_reason is None:
                                    # The protocol sends a finish_reason before [DONE]; an
                                    # engine that skips it cut the reply short (llama-cpp-python
                                    # does when another request interrupts it).
                                    failure = Failure(
                                        502, "engine_truncated", "The engine reply ended early."
                                    )
                                else:
                                    replied = True
                                break
                            try:
                                chunk = parse_json(data)
                            except (ValueError, RecursionError):
                                chunk = None
                            if not isinstance(chunk, dict):
                                failure = Failure(
                                    502, "engine_protocol", "The engine sent bad data."
                                )
                                break
                            if "error" in chunk:
                                failure = Failure(
                                    502, "engine_midstream", "The engine failed while answering."
                                )
                                break
                            content, finish = _delta(chunk)
                            if "usage" in chunk and isinstance(chunk["usage"], dict):
                                outcome.usage = chunk["usage"]
                            if finish is not None:
                                outcome.finish_reason = finish
                            if content:
                                outcome.tokens += 1
                            if outcome.ttft is None and (content or finish is not None):
                                outcome.ttft = time.perf_counter() - self.arrived_perf
                                metrics.ttft.observe(outcome.ttft)
                            if stream:
                                out.append(b"data: " + data + b"\n\n")
                            else:
                                if outcome.first_chunk is None:
                                    outcome.first_chunk = chunk
                                if content:
                                    outcome.content.append(content)
                        if outcome.tokens > tokens_counted:
                            metrics.output_tokens.inc(outcome.tokens - tokens_counted)
                            tokens_counted = outcome.tokens
                        if failure is not None:
                            # Tokens that came with the failure still reach the client.
                            if committed:
                                if out:
                                    body = b"".join(out)
                                    await send(
                                        {
                                            "type": "http.response.body",
                                            "body": body,
                                            "more_body": True,
                                        }
                                    )
                            elif stream and outcome.ttft is not None:
                                committed = True
                                await self._start_stream(send, b"".join(pending + out))
                            break
                        if outcome.ttft is not None:
                            now = clock()
                            if now >= next_check:
                                # Moving the deadline costs a timer; half a period of slack is
                                # enough for a per-chunk timeout.
                                next_check = now + read_timeout / 2
                                deadline_scope.deadline = min(total_deadline, now + read_timeout)
                        if replied:
                            if committed:
                                out.append(_DONE)
                                body = b"".join(out)
                                await send(
                                    {"type": "http.response.body", "body": body, "more_body": False}
                                )
                            else:
                                pending.extend(out)
                                await self._reply(send, outcome, committed, pending)
                            # Only the end of the chunked body is left; do not wait long for it.
                            deadline_scope.deadline = min(
                                deadline_scope.deadline, clock() + _DRAIN_SECONDS
                            )
                        elif committed:
                            if out:
                                body = b"".join(out)
                                await send(
                                    {"type": "http.response.body", "body": body, "more_body": True}
                                )
                        elif stream:
                            pending.extend(out)
                            if outcome.ttft is not None:
                                committed = True
                                await self._start_stream(send, b"".join(pending))
                                pending.clear()
                    else:
                        if not replied and failure is None:
                            if outcome.finish_reason is None:
                                failure = Failure(
                                    502, "engine_truncated", "The engine reply ended early."
                                )
                            else:  # an engine that ends without [DONE] but said it finished
                                await self._reply(send, outcome, committed, pending)
                                replied = True
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
        if replied:
            return
        if failure is None:
            failure = self._cancel_failure(active, outcome, total_deadline)
        outcome.error_kind = failure.kind
        if committed:
            event = sse_error_event(failure.message, type_=failure.type_, code=failure.kind)
            await send({"type": "http.response.body", "body": event, "more_body": False})
        else:
            outcome.status = failure.status
            await failure.response()({"type": "http"}, _no_receive, send)

    async def _reply(
        self, send: Send, outcome: Outcome, committed: bool, pending: list[bytes]
    ) -> None:
        """Send the end of a successful reply: the last events and [DONE], or the completion."""
        if not self.chat.stream:
            await self._send_completion(send, outcome)
            return
        if not committed:
            await self._start_stream(send, b"".join(pending))
        await send({"type": "http.response.body", "body": _DONE, "more_body": False})

    def _cancel_failure(
        self, active: ActiveChat, outcome: Outcome, total_deadline: float
    ) -> Failure:
        if active.abort_reason == "shutting_down":
            return Failure(503, "shutting_down", "The server is shutting down.", 1)
        if outcome.ttft is None:
            return Failure(504, "first_token_timeout", "The engine sent no token in time.")
        if anyio.current_time() >= total_deadline:
            return Failure(504, "request_timeout", "The reply took too long.")
        return Failure(504, "engine_read_timeout", "The engine stopped answering.")

    async def _start_stream(self, send: Send, first: bytes) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        await send({"type": "http.response.body", "body": first, "more_body": True})

    async def _send_completion(self, send: Send, outcome: Outcome) -> None:
        first = outcome.first_chunk or {}
        completion: dict[str, Any] = {
            "id": first.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": first.get("created") or int(time.time()),
            "model": self.chat.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(outcome.content)},
                    "finish_reason": outcome.finish_reason or "stop",
                    "logprobs": None,
                }
            ],
        }
        if outcome.usage is not None:
            completion["usage"] = outcome.usage
        await JSONResponse(completion)({"type": "http"}, _no_receive, send)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 2)


async def _no_receive() -> Message:
    # The request body was read before the relay began; nothing else is ever received here.
    raise RuntimeError("the chat relay does not receive")
