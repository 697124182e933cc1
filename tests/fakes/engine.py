"""A fake LLM engine speaking the OpenAI chat protocol, with configurable delays and failures.

In-process: ``create_engine_app(EngineConfig(...))`` returns a Starlette app whose
``app.state.engine`` (an ``EngineStats``) records what it was sent and how its streams ended.
As a process::

    python -m tests.fakes.engine --host 127.0.0.1 --port N --model NAME
        [--first-token-delay S] [--token-delay S] [--tokens N]
        [--fail {none,refuse,503,drip,midstream,hang}] [--busy-ms-per-token MS] [--reply TEXT]

Failures: ``refuse`` (the process listens on nothing, so connections are refused), ``503``
(every chat answers 503 with Retry-After), ``drip`` (a 200 whose stream, or plain reply,
arrives one byte every half second), ``midstream`` (half the tokens, then an error event;
``midstream_style="abort"`` in-process breaks the connection instead; a plain reply is a 500,
or with ``abort`` half a body, or with ``interrupt`` half the text and no finish reason),
``hang`` (the request is read, nothing is sent).

Usage: plain replies carry ``usage``; streams carry a usage chunk when the request asks with
``stream_options.include_usage`` (``--no-stream-usage`` turns that off, as llama-cpp-python's
server behaves).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

__all__ = ["FAILURES", "EngineConfig", "EngineStats", "create_engine_app", "main"]

FAILURES = ("none", "refuse", "503", "drip", "midstream", "hang")
_VOCABULARY: tuple[str, ...] = ("Hello", " from", " the", " fake", " engine", ",", " one")
_VOCABULARY += (" token", " at", " a", " time", ".")


@dataclass
class EngineConfig:
    """How the fake engine behaves; tests may change fields while it runs."""

    model: str = "tinyllama"
    first_token_delay: float = 0.0
    token_delay: float = 0.0
    tokens: int = 12
    fail: str = "none"
    busy_ms_per_token: float = 0.0
    reply: str | None = None
    drip_interval: float = 0.5
    drip_from_event: int = 0
    midstream_style: Literal["event", "abort", "interrupt"] = "event"
    # GET /v1/models waits while any chat is open, as llama-cpp-python's server does (its
    # listing takes the model lock that a generation holds).
    models_wait_for_streams: bool = False
    listed_models: list[str] | None = None
    # Streams carry a usage chunk when asked (``stream_options.include_usage``) and plain
    # replies always carry usage, as Ollama and vLLM do; turning these off gives what
    # llama-cpp-python's server does in a stream (no usage however asked).
    stream_usage: bool = True
    plain_usage: bool = True

    def models(self) -> list[str]:
        """The model ids ``GET /v1/models`` lists."""
        return [self.model] if self.listed_models is None else list(self.listed_models)


@dataclass
class EngineStats:
    """What the fake engine saw: request bodies and the fate of its streams."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    open_streams: int = 0
    finished_streams: int = 0
    disconnected_streams: int = 0
    model_listings: int = 0


def _pieces(config: EngineConfig, max_tokens: int | None) -> list[str]:
    if config.reply is not None:
        words = config.reply.split(" ")
        pieces = [word if i == 0 else " " + word for i, word in enumerate(words)]
    else:
        pieces = [_VOCABULARY[i % len(_VOCABULARY)] for i in range(config.tokens)]
    return pieces[:max_tokens] if max_tokens is not None else pieces


def _burn(ms: float) -> None:
    # A CPU-bound engine blocks while it computes a token; so does this one.
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


class _Counter:
    """Sequential completion ids, so replies are easy to tell apart."""

    def __init__(self) -> None:
        self.value = 0

    def next_id(self) -> str:
        self.value += 1
        return f"chatcmpl-fake-{self.value}"


def _chunk(ident: str, model: str, delta: dict[str, Any], finish: str | None) -> bytes:
    body = {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


class _Stream(Response):
    """An SSE reply that notices a client going away even while it waits."""

    def __init__(
        self,
        config: EngineConfig,
        stats: EngineStats,
        ident: str,
        pieces: list[str],
        usage: bool,
        prompt_tokens: int,
    ) -> None:
        self.config = config
        self.stats = stats
        self.ident = ident
        self.pieces = pieces
        self.usage = usage
        self.prompt_tokens = prompt_tokens
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.stats.open_streams += 1
        disconnected = False
        replied = False

        async def send_and_track(message: Message) -> None:
            nonlocal replied
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                replied = True  # uvicorn reports a disconnect once the reply is complete
            await send(message)

        try:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    nonlocal disconnected
                    await _wait_for_disconnect(receive)
                    if not replied:
                        disconnected = True
                        group.cancel_scope.cancel()

                group.start_soon(watch)
                await self._produce(send_and_track)
                group.cancel_scope.cancel()
        finally:
            self.stats.open_streams -= 1
            if disconnected:
                self.stats.disconnected_streams += 1
            else:
                self.stats.finished_streams += 1

    def _events(self) -> list[bytes]:
        model = self.config.model
        events = [_chunk(self.ident, model, {"role": "assistant", "content": ""}, None)]
        events += [_chunk(self.ident, model, {"content": piece}, None) for piece in self.pieces]
        events.append(_chunk(self.ident, model, {}, "stop"))
        if self.usage:
            usage = {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": len(self.pieces),
                "total_tokens": self.prompt_tokens + len(self.pieces),
            }
            body = {
                "id": self.ident,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [],
                "usage": usage,
            }
            events.append(b"data: " + json.dumps(body).encode() + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        return events

    async def _produce(self, send: Send) -> None:
        config = self.config
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        events = self._events()
        if config.fail == "drip":
            # The first ``drip_from_event`` events arrive whole, the rest one byte at a time.
            whole = b"".join(events[: config.drip_from_event])
            if whole:
                await send({"type": "http.response.body", "body": whole, "more_body": True})
            for byte in b"".join(events[config.drip_from_event :]):
                await send({"type": "http.response.body", "body": bytes([byte]), "more_body": True})
                await anyio.sleep(config.drip_interval)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.body", "body": events[0], "more_body": True})
        if config.first_token_delay:
            await anyio.sleep(config.first_token_delay)
        content = events[1 : 1 + len(self.pieces)]
        for index, event in enumerate(content):
            if index and config.token_delay:
                await anyio.sleep(config.token_delay)
            if config.busy_ms_per_token:
                _burn(config.busy_ms_per_token)
            if config.fail == "midstream" and index == len(content) // 2:
                if config.midstream_style == "abort":
                    raise RuntimeError("fake engine breaks the connection mid-stream")
                if config.midstream_style == "interrupt":
                    # What llama-cpp-python's server does when another request interrupts
                    # this one: a bare [DONE] with no finish_reason, then a cut connection.
                    done = b"data: [DONE]\n\n"
                    await send({"type": "http.response.body", "body": done, "more_body": True})
                    raise RuntimeError("fake engine interrupted mid-stream")
                body = b"data: " + json.dumps(_error_body("fake engine failure")).encode() + b"\n\n"
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send({"type": "http.response.body", "body": event, "more_body": True})
        tail = b"".join(events[1 + len(self.pieces) :])
        await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _PlainBody(Response):
    """A plain reply sent badly: dripped a byte at a time (``drip``) or cut off (``midstream``
    with ``midstream_style="abort"``)."""

    def __init__(self, config: EngineConfig, body: bytes) -> None:
        self.config = config
        self.body = body
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if self.config.fail != "drip":
            half = self.body[: len(self.body) // 2]
            await send({"type": "http.response.body", "body": half, "more_body": True})
            raise RuntimeError("fake engine breaks the connection mid-reply")
        for byte in self.body:
            await send({"type": "http.response.body", "body": bytes([byte]), "more_body": True})
            await anyio.sleep(self.config.drip_interval)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Hang(Response):
    """Read the request, then send nothing until the client goes away."""

    def __init__(self, stats: EngineStats) -> None:
        self.stats = stats
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.stats.open_streams += 1
        try:
            await _wait_for_disconnect(receive)
            self.stats.disconnected_streams += 1
        finally:
            self.stats.open_streams -= 1


def _error_body(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(_error_body(message), status_code=status, headers=headers)


def create_engine_app(config: EngineConfig | None = None) -> Starlette:
    """Build the fake engine; ``app.state.engine`` holds its ``EngineStats``."""
    config = EngineConfig() if config is None else config
    stats = EngineStats()
    counter = _Counter()

    async def models(request: Request) -> Response:
        stats.model_listings += 1
        while config.models_wait_for_streams and stats.open_streams:
            await anyio.sleep(0.01)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "fake"}
            for name in config.models()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat(request: Request) -> Response:
        body = await request.json()
        stats.requests.append(body)
        if config.fail == "503":
            return _error(503, "fake engine overloaded", {"Retry-After": "2"})
        if config.fail == "hang":
            return _Hang(stats)
        if body.get("model") not in config.models():
            return _error(404, f"model {body.get('model')!r} not found")
        max_tokens = body.get("max_tokens")
        pieces = _pieces(config, max_tokens if isinstance(max_tokens, int) else None)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        ident = counter.next_id()
        if body.get("stream"):
            include_usage = config.stream_usage and bool(
                (body.get("stream_options") or {}).get("include_usage")
            )
            return _Stream(config, stats, ident, pieces, include_usage, prompt_tokens)
        await anyio.sleep(config.first_token_delay + config.token_delay * len(pieces))
        if config.busy_ms_per_token:
            _burn(config.busy_ms_per_token * len(pieces))
        finish: str | None = "stop"
        if config.fail == "midstream":
            # The plain-reply forms of a failure while generating (see the module docstring).
            if config.midstream_style == "event":
                return _error(500, "fake engine failure")
            pieces = pieces[: len(pieces) // 2]
            finish = None
        text = "".join(pieces)
        reply: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": config.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ],
        }
        if config.plain_usage:
            reply["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(pieces),
                "total_tokens": prompt_tokens + len(pieces),
            }
        body = json.dumps(reply).encode()
        if config.fail == "drip" or (
            config.fail == "midstream" and config.midstream_style == "abort"
        ):
            return _PlainBody(config, body)
        return Response(body, media_type="application/json")

    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )
    app.state.engine = stats
    return app


def main(argv: list[str] | None = None) -> None:
    """Run the fake engine as a process (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.engine", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--model", default="tinyllama")
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--fail", choices=FAILURES, default="none")
    parser.add_argument("--busy-ms-per-token", type=float, default=0.0)
    parser.add_argument("--reply", default=None, help="reply with these words instead")
    parser.add_argument(
        "--no-stream-usage",
        action="store_true",
        help="never send a usage chunk in a stream, as llama-cpp-python's server does",
    )
    args = parser.parse_args(argv)
    if args.fail == "refuse":
        # Listen on nothing: every connection to the port is refused, as by a dead engine.
        while True:
            time.sleep(3600)
    config = EngineConfig(
        model=args.model,
        first_token_delay=args.first_token_delay,
        token_delay=args.token_delay,
        tokens=args.tokens,
        fail=args.fail,
        busy_ms_per_token=args.busy_ms_per_token,
        reply=args.reply,
        stream_usage=not args.no_stream_usage,
    )
    uvicorn.run(
        create_engine_app(config),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="auto",
        http="auto",
    )


if __name__ == "__main__":
    main()
