"""The pieces of a chat's relay: engine events in, the client's reply out, and the deadlines.

``chat.ChatRelay`` puts them together. Nothing here knows which HTTP client reads the engine:
bodies arrive as ``EngineReply.chunks()``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from backend.admission import ActiveChat
from backend.engine_clients import EngineReply
from backend.errors import error_response, error_type_for, sse_error_event
from backend.jsontext import parse_json
from backend.metrics import Metrics
from backend.settings import Settings
from backend.validation import ChatRequest

__all__ = [
    "Deadline",
    "EngineEvents",
    "Failure",
    "Outcome",
    "Reply",
    "plain_completion",
    "read_plain",
    "status_failure",
]

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"
# The largest plain (non-streamed) engine reply read; a completion of MAX_TOKENS_CAP tokens is
# a small fraction of it.
_MAX_PLAIN_BYTES = 8 * 1024 * 1024
# After [DONE], how long the relay waits for the end of the engine's body (to reuse the connection).
_DRAIN_SECONDS = 1.0


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


def _engine_message(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
        message = parsed["error"]["message"] if "error" in parsed else parsed["detail"]
    except (ValueError, KeyError, TypeError):
        return None
    return message[:500] if isinstance(message, str) else None


async def status_failure(upstream: EngineReply) -> Failure:
    """The failure for an engine answer other than 200, from its status and error message."""
    body = b""
    async for chunk in upstream.chunks():
        body += chunk
        if len(body) > 65536:
            break
    status = upstream.status
    if status == 400:
        message = _engine_message(body) or "The engine rejected the request."
        return Failure(400, "engine_rejected", message)
    if status in (404, 429) or status >= 500:
        retry = upstream.header("retry-after") or "1"
        retry_after = int(retry) if retry.isdigit() and 0 < int(retry) <= 60 else 1
        return Failure(
            503, f"engine_{status}", "The engine is unavailable, retry shortly.", retry_after
        )
    return Failure(502, f"engine_{status}", f"The engine answered HTTP {status}.")


class EngineEvents:
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
        "done",
        "failure",
    )

    def __init__(
        self, outcome: Outcome, metrics: Metrics, chat: ChatRequest, arrived_perf: float
    ) -> None:
        """Account into ``outcome`` for ``chat``, which arrived at ``arrived_perf``."""
        self._outcome = outcome
        self._metrics = metrics
        self._include_usage = chat.include_usage
        self._arrived_perf = arrived_perf
        self.done = False
        self.failure: Failure | None = None

    def take(self, batch: list[bytes]) -> list[bytes]:
        """Account for ``batch``; return its events as SSE bytes to forward to the client."""
        outcome = self._outcome
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
            # choices[0].delta.content and choices[0].finish_reason, inline: this runs for
            # every event of every stream.
            content: str | None = None
            finish: str | None = None
            choices = chunk.get("choices")
            if isinstance(choices, list) and choices and isinstance(choices[0], dict):
                choice = choices[0]
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    content = delta.get("content")
                    if not isinstance(content, str):
                        content = None
                finish = choice.get("finish_reason")
                if not isinstance(finish, str):
                    finish = None
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                outcome.usage = usage
                if not choices and not self._include_usage:
                    continue  # the usage chunk was asked for the metrics, not by the client
            if finish is not None:
                outcome.finish_reason = finish
            if content:
                outcome.chunks += 1
            if outcome.ttft is None and (content or finish is not None):
                outcome.ttft = time.perf_counter() - self._arrived_perf
                self._metrics.ttft.observe(outcome.ttft)
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


class Reply:
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


def plain_completion(body: bytes, model: str, outcome: Outcome) -> Failure | None:
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


async def read_plain(upstream: EngineReply) -> bytes | None:
    """Read a plain engine reply whole; ``None`` when it is larger than any reply can be."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in upstream.chunks():
        size += len(chunk)
        if size > _MAX_PLAIN_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class Deadline:
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
