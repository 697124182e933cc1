"""The engine side: model listing and server-sent event parsing (the clients are in
``engine_clients``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from backend.engine_clients import (
    MODELS_PATH,
    EngineClient,
    EngineError,
    EngineNoConnection,
    EngineTimedOut,
)

__all__ = [
    "EngineBusy",
    "EngineUnavailable",
    "SseParser",
    "list_models",
    "model_listed",
]


class EngineUnavailable(Exception):
    """The engine could not be asked, or answered something other than a model list."""


class EngineBusy(EngineUnavailable):
    """The engine accepted the request for its models but did not answer in time."""


async def list_models(client: EngineClient, seconds: float) -> list[str]:
    """Return the model ids the engine lists on ``GET /v1/models``."""
    try:
        status, body = await client.get_models(seconds)
    except (EngineTimedOut, EngineNoConnection) as exc:
        # Slow to answer, or every connection busy: a busy engine, not (yet) a dead one.
        raise EngineBusy(f"engine did not list its models within {seconds:g} s") from exc
    except EngineError as exc:
        raise EngineUnavailable(f"engine unreachable: {exc}") from exc
    if status != 200:
        raise EngineUnavailable(f"engine answered {status} on {MODELS_PATH}")
    try:
        parsed: Any = json.loads(body)
        return [str(item["id"]) for item in parsed["data"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineUnavailable(f"engine sent an unreadable model list: {exc!r}") from exc


def _base_name(model: str) -> str:
    return model.removesuffix(":latest")


def model_listed(model: str, listed: Iterable[str]) -> bool:
    """Say whether ``model`` is among ``listed``; ``name`` and ``name:latest`` are the same."""
    wanted = _base_name(model)
    return any(_base_name(item) == wanted for item in listed)


class SseParser:
    """Splits a byte stream into the ``data`` payloads of its server-sent events.

    ``feed`` takes the body in the pieces it arrives in and returns the payloads of the events
    those pieces completed. Events end with a blank line; pieces may split them anywhere.
    Comment lines and other fields are skipped; multi-line data is joined with newlines, as the
    SSE spec says. It is synchronous, so the relay pays no async-generator layer per chunk.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        """Start with nothing buffered."""
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Take the next piece of the body; return the payloads of the events it completed."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            # A lone trailing CR may be the first half of a CRLF split across chunks.
            keep_cr = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buffer = buffer[:-1] + b"\r"
        batch: list[bytes] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            event = buffer[start:end]
            if event.startswith(b"data: ") and b"\n" not in event:
                batch.append(event[6:])  # the usual event: one data line, nothing else
            elif (data := _event_data(event)) is not None:
                batch.append(data)
            start = end + 2
        self._buffer = buffer[start:] if start else buffer
        return batch


def _event_data(event: bytes) -> bytes | None:
    lines = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines) if lines else None
