"""One chat attempt as the client saw it: what `tui.gateway.client` reads from a reply, kept until
the attempt ends and then turned into a `ChatSample`.

`ChatProgress` takes a streamed reply one SSE event's data at a time (`take`) or a plain reply
(`stream: false`) whole (`take_reply`). `ChatCancelled` is the `CancelledError` a chat raises when
its task is cancelled mid-reply (the load engine stopping it): it carries the chat's sample so
far, so the caller can record what the user had been given before the stop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

from tui.core.model import ChatSample, Outcome

_DETAIL_CHARS = 300


class ChatCancelled(asyncio.CancelledError):
    """The chat's task was cancelled mid-reply; `sample` is the chat as far as it went (outcome
    `CANCELLED`). It is a `CancelledError`, so the cancellation propagates as asyncio wants."""

    def __init__(self, sample: ChatSample) -> None:
        """Cancelled with the chat's `sample` so far."""
        super().__init__("chat cancelled")
        self.sample = sample


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None if absent
    or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def error_detail(body: bytes) -> str:
    """The server's words from an error body: OpenAI's `error.message`, a Kubernetes Status
    `message`, else the start of the text."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip()[:_DETAIL_CHARS]
    message: Any = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        message = error.get("message") if isinstance(error, dict) else parsed.get("message")
        if isinstance(error, dict) and isinstance(error.get("code"), str) and message:
            message = f"{error['code']}: {message}"
    return (message if isinstance(message, str) else text.strip())[:_DETAIL_CHARS]


def check_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """The messages as plain dicts; `ValueError` in words when one is malformed."""
    if not messages:
        raise ValueError("a chat needs at least one message")
    checked = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise ValueError("each message needs a string 'role' and 'content'")
        checked.append({"role": role, "content": content})
    return checked


class ChatProgress:
    """What one chat attempt has seen so far; turned into a `ChatSample` when it ends."""

    def __init__(
        self, origin: str, on_text: Callable[[str], None] | None, *, streamed: bool = True
    ) -> None:
        """A chat from `origin`; `on_text` gets each piece of the reply."""
        self.origin = origin
        self.on_text = on_text
        self.streamed = streamed
        self.started_at = time.time()
        self.started = time.perf_counter()
        self.status: int | None = None
        self.pod: str | None = None
        self.ttft: float | None = None
        self.last_chunk: float | None = None
        self.gaps: list[float] = []
        self.chunks = 0
        self.usage_tokens: int | None = None
        self.finish_reason: str | None = None
        self.done = False
        self.cancelled = False
        self.error_kind: str | None = None
        self.error_detail: str | None = None
        self.retry_after: float | None = None

    def begin(self) -> None:
        """The request is about to go out: its times count from here (a first chat's model
        lookup is not in its TTFT)."""
        self.started_at = time.time()
        self.started = time.perf_counter()

    def take(self, data: str) -> bool:
        """Account for one event's data; return True when the stream has ended (either way)."""
        if not data:
            return False  # an event with no data carries nothing (a keep-alive)
        if data == "[DONE]":
            if self.finish_reason is None:
                self.fail("truncated", "the stream ended with no finish_reason")
            else:
                self.done = True
            return True
        chunk = self._object(data)
        if chunk is None:
            return True
        self._usage(chunk)
        choice = _first_choice(chunk)
        if choice is not None:
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                self._content(content)
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
        return False

    def take_reply(self, body: bytes) -> None:
        """Account for a whole plain (`stream: false`) reply: its text, usage and finish."""
        chunk = self._object(body.decode("utf-8", errors="replace"))
        if chunk is None:
            return
        self._usage(chunk)
        choice = _first_choice(chunk)
        message = choice.get("message") if choice is not None else None
        content = message.get("content") if isinstance(message, dict) else None
        if choice is None or not isinstance(content, str):
            self.fail("protocol", "a reply with no choices[0].message.content")
            return
        if content and self.on_text is not None:
            self.on_text(content)
        if not isinstance(choice.get("finish_reason"), str):
            self.fail("truncated", "the reply has no finish_reason")
            return
        self.finish_reason = choice["finish_reason"]
        self.done = True

    def _object(self, data: str) -> dict[str, Any] | None:
        """The JSON object in `data`, or None after noting the failure (not JSON, an error)."""
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            self.fail("protocol", "an event that is not a JSON object")
            return None
        if "error" in chunk:
            error = chunk["error"]
            self.fail("stream_error", error_detail(json.dumps({"error": error}).encode()))
            return None
        return chunk

    def _usage(self, chunk: dict[str, Any]) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.usage_tokens = usage["completion_tokens"]

    def _content(self, content: str) -> None:
        now = time.perf_counter()
        if self.last_chunk is None:
            self.ttft = now - self.started
        else:
            self.gaps.append(now - self.last_chunk)
        self.last_chunk = now
        self.chunks += 1
        if self.on_text is not None:
            self.on_text(content)

    def fail(self, kind: str, detail: str = "") -> None:
        """Note the first failure (a later one is a consequence of it)."""
        if self.error_kind is None:
            self.error_kind = kind
            self.error_detail = detail or None

    def cancel(self, detail: str) -> None:
        """The client stopped the chat (Escape, or the load stopping)."""
        self.cancelled = True
        self.fail("cancelled", detail)

    def sample(self) -> ChatSample:
        """The chat as the user felt it, at this moment."""
        if self.status == 429:
            outcome = Outcome.SHED
        elif self.done and self.error_kind is None:
            outcome = Outcome.OK
        elif self.cancelled and self.error_kind == "cancelled":
            outcome = Outcome.CANCELLED
        else:
            outcome = Outcome.ERROR
            if self.error_kind is None:
                self.error_kind = "truncated"  # the body ended with no [DONE]
        from_usage = self.usage_tokens is not None
        return ChatSample(
            started_at=self.started_at,
            origin=self.origin,
            outcome=outcome,
            status=self.status,
            error_kind=None if outcome is Outcome.OK else self.error_kind,
            pod=self.pod,
            ttft=self.ttft,
            e2e=time.perf_counter() - self.started,
            gaps=tuple(self.gaps),
            output_tokens=self.usage_tokens if self.usage_tokens is not None else self.chunks,
            tokens_from_usage=from_usage,
            retry_after=self.retry_after,
            error_detail=self.error_detail,
            streamed=self.streamed,
        )


def _first_choice(chunk: dict[str, Any]) -> dict[str, Any] | None:
    choices = chunk.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


__all__ = [
    "ChatCancelled",
    "ChatProgress",
    "check_messages",
    "error_detail",
    "parse_retry_after",
]
