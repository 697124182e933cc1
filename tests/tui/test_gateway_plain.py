"""Chats asked with `stream: false` (`kube-llm load --no-stream`), against a real
`python -m backend` process in front of the fake engine: the backend passes the engine's
`usage` through on a whole reply, and the client records end to end and output tokens from it,
with no TTFT and no inter-token gaps; the table and the report say so instead of showing
numbers that cannot exist."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.backend.conftest import FakeEngine, backend_process, running_engine
from tests.fakes.engine import EngineConfig
from tui.core.figures import CockpitRecord, LoadPhase, figures
from tui.core.model import ChatSample, Outcome
from tui.gateway.client import Gateway
from tui.gateway.target import GatewayTarget
from tui.headless.load import load_table
from tui.report.record_json import record_from_json, record_json
from tui.report.writer import render
from tui.services.load import LoadEngine

HELLO = [{"role": "user", "content": "Hello"}]
REPLY = "Hello from the fake engine, one token at a time."


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeEngine, str]]:
    """The fake engine (12 tokens, 20 ms apart) and a `python -m backend` process before it."""
    config = EngineConfig(token_delay=0.02)
    with (
        running_engine(config) as engine,
        backend_process(engine.url, tmp_path_factory.mktemp("plain")) as backend,
    ):
        yield engine, backend.url


def direct(url: str) -> Gateway:
    return Gateway(GatewayTarget.direct(url, pod_proxy=url))


async def test_a_whole_reply_has_end_to_end_and_usage_tokens_but_no_ttft(
    served: tuple[FakeEngine, str],
) -> None:
    engine, url = served
    engine.config.plain_usage = True
    async with direct(url) as gateway:
        pieces: list[str] = []
        started = time.perf_counter()
        sample = await gateway.chat(HELLO, max_tokens=32, stream=False, on_text=pieces.append)
        took = time.perf_counter() - started
    assert sample.outcome is Outcome.OK, sample
    assert (sample.status, sample.pod, sample.error_kind) == (200, "proc-pod", None)
    assert not sample.streamed
    # No first token or gaps to time: the reply came in one piece, all at the end.
    assert (sample.ttft, sample.gaps) == (None, ())
    assert pieces == [REPLY]
    assert sample.output_tokens == 12
    assert sample.tokens_from_usage
    assert sample.e2e is not None
    assert 12 * 0.02 * 0.9 <= sample.e2e <= took
    sent = engine.stats.requests[-1]
    assert sent["stream"] is False
    assert "stream_options" not in sent
    assert sent["max_tokens"] == 32


async def test_a_whole_reply_without_usage_counts_no_tokens(
    served: tuple[FakeEngine, str],
) -> None:
    engine, url = served
    engine.config.plain_usage = False
    try:
        async with direct(url) as gateway:
            sample = await gateway.chat(HELLO, stream=False)
    finally:
        engine.config.plain_usage = True
    assert sample.outcome is Outcome.OK, sample
    # Nothing to count in one piece of text: no tokens rather than a guess.
    assert (sample.output_tokens, sample.tokens_from_usage) == (0, False)


async def test_stop_closes_a_whole_reply_still_being_made(
    served: tuple[FakeEngine, str],
) -> None:
    engine, url = served
    engine.config.token_delay = 0.2
    try:
        async with direct(url) as gateway:
            await gateway.model()
            stop = asyncio.Event()
            chat = asyncio.create_task(gateway.chat(HELLO, stream=False, stop=stop))
            await asyncio.sleep(0.5)
            stop.set()
            sample = await asyncio.wait_for(chat, 2)
    finally:
        engine.config.token_delay = 0.02
    assert (sample.outcome, sample.error_kind) == (Outcome.CANCELLED, "cancelled")
    assert (sample.ttft, sample.output_tokens, sample.streamed) == (None, 0, False)


async def test_unstreamed_load_and_its_table_and_report(
    served: tuple[FakeEngine, str],
) -> None:
    engine, url = served
    begun = len(engine.stats.requests)
    samples: list[ChatSample] = []
    async with direct(url) as gateway:
        load = LoadEngine(gateway, samples.append, max_tokens=12, stream=False)
        started = time.time()
        finals = await load.burst(users=3, chats_per_user=2)
        ended = time.time()
    assert len(finals) == 6
    assert all(s.outcome is Outcome.OK and not s.streamed for s in finals), finals
    assert all(r["stream"] is False for r in engine.stats.requests[begun:])
    record = CockpitRecord(
        started_at=started,
        ended_at=ended,
        context="test",
        namespace="test",
        backend=url,
        chats=tuple(samples),
        phases=(LoadPhase("burst", 3, started, ended),),
    )
    chats = figures(record).chats
    assert (chats.ok, chats.unstreamed, chats.ttft.count, chats.inter_token.count) == (6, 6, 0, 0)
    assert chats.end_to_end.count == 6
    assert chats.tokens_per_second is not None
    assert not chats.tokens_are_chunks
    table = load_table(record).splitlines()
    ttft = next(line for line in table if "time to first token" in line)
    gaps = next(line for line in table if "inter-token gap" in line)
    assert ttft.split()[4:] == ["n/a", "(not", "streamed)", "0"]
    assert gaps.split()[2:] == ["n/a", "(not", "streamed)", "0"]
    end_to_end = next(line for line in table if line.strip().startswith("end to end"))
    assert end_to_end.split()[-1] == "6"
    assert "n/a" not in end_to_end
    markdown = render(record, ended)
    assert "| time to first token | n/a (not streamed) | n/a (not streamed) |" in markdown
    assert "6 chats asked with `stream: false`" in markdown
    # The JSON keeps which chats were streamed, so its figures recompute the same.
    data = record_json(record)
    assert record_json(record_from_json(data)) == data
    assert {c["streamed"] for c in data["record"]["chats"]} == {False}
