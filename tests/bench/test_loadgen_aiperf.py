"""bench/loadgen_aiperf.py's own logic, without aiperf: reading aiperf's exports and the
server's timings, and giving aiperf exactly the prompts our load engine sends."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType

import pytest

from tui.core.model import BackendMetrics, ChatSample, HealthSample, Outcome
from tui.services.load import LoadEngine

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def loadgen() -> ModuleType:
    """bench/ is scripts, not a package: load the module from its file."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("loadgen_aiperf", BENCH / "loadgen_aiperf.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def _record(phase: str, start: int, end: int, ttft_ms: float | None, e2e_ms: float) -> str:
    metrics: dict[str, object] = {
        "request_latency": {"value": e2e_ms, "unit": "ms"},
        "output_sequence_length": {"value": 12, "unit": "tokens"},
    }
    if ttft_ms is not None:
        metrics["time_to_first_token"] = {"value": ttft_ms, "unit": "ms"}
    meta = {"benchmark_phase": phase, "request_start_ns": start, "request_end_ns": end}
    return json.dumps({"metadata": meta, "metrics": metrics})


def test_records_give_seconds_failures_and_the_profiling_window(loadgen: ModuleType) -> None:
    lines = "\n".join(
        [
            _record("warmup", 1_000_000_000, 9_000_000_000, 5.0, 8.0),
            _record("profiling", 10_000_000_000, 12_500_000_000, 250.0, 2500.0),
            _record("profiling", 11_000_000_000, 14_000_000_000, None, 3000.0),
            "",
        ]
    )
    chats, failed, window = loadgen.parse_records(lines)
    assert chats == [loadgen.Chat(ttft=0.25, e2e=2.5, output_tokens=12)]
    assert failed == 1
    assert window == (10.0, 14.0)


def test_export_percentiles_in_seconds(loadgen: ModuleType) -> None:
    export = {
        "time_to_first_token": {"unit": "ms", "p50": 100.0, "p95": 200.0, "p99": 300.0},
        "request_latency": {"unit": "ms", "p50": 1000.0, "p95": 2000.0, "p99": 4000.0},
        "request_count": {"unit": "requests", "avg": 8},
    }
    assert loadgen.parse_export(export) == {
        "time_to_first_token": (0.1, 0.2, 0.3),
        "request_latency": (1.0, 2.0, 4.0),
    }


def test_server_timings_pair_each_prompt_eval_with_its_eval(loadgen: ModuleType) -> None:
    log = """\
llama_perf_context_print:        load time =     100.00 ms
llama_perf_context_print: prompt eval time =     232.29 ms /    16 tokens (   14.52 ms per token)
llama_perf_context_print:        eval time =    4385.60 ms /    64 runs   (   69.61 ms per token)
INFO:     127.0.0.1:5000 - "POST /v1/chat/completions HTTP/1.1" 200 OK
llama_perf_context_print: prompt eval time =       0.50 ms /     1 tokens
llama_perf_context_print:        eval time =       0.00 ms /     0 runs
"""
    timings = loadgen.parse_server_timings(log)
    assert [round(t.prompt_eval, 5) for t in timings] == [0.23229, 0.0005]
    assert timings[0].per_token == pytest.approx(4.3856 / 64)
    assert timings[1].per_token == 0.0


class _RecordingGateway:
    """Answers every chat at once and keeps the prompts it was sent."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        max_tokens: int,
        origin: str,
        on_text: Callable[[str], None] | None = None,
        stop: asyncio.Event | None = None,
        stream: bool = True,
    ) -> ChatSample:
        self.prompts.append(messages[-1]["content"])
        return ChatSample(started_at=0.0, origin=origin, outcome=Outcome.OK, ttft=0.1, e2e=0.2)

    async def health(self) -> HealthSample:
        raise NotImplementedError

    async def pod_metrics(self, pod: str) -> BackendMetrics:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Nothing to close."""


async def test_aiperf_gets_exactly_the_prompts_our_engine_sends(loadgen: ModuleType) -> None:
    users, chats_per_user = 4, 6
    prompts, aiperf_file = loadgen.round_prompts(10, users, chats_per_user)
    assert prompts == loadgen.round_prompts(10, users, chats_per_user)[0]  # a fixed seed
    assert prompts != loadgen.round_prompts(11, users, chats_per_user)[0]
    gateway = _RecordingGateway()
    engine = LoadEngine(gateway, on_sample=lambda sample: None, prompts=prompts)
    await engine.burst(users, chats_per_user)
    assert Counter(gateway.prompts) == Counter(aiperf_file)
    assert len(aiperf_file) == users * chats_per_user
