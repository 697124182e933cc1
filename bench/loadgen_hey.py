"""The `hey` half of bench/loadgen.py: `GET /healthz` against the backend, hey and ours in turns.

`hey` (Debian package `hey`) and the cockpit's gateway client (`tui.gateway.client.Gateway.health`,
what the health prober and the load engine use) take turns sending `GET /healthz` to one
`python -m backend` on loopback (its engine is the fake engine), at the same fixed concurrency
and request count. Rounds alternate, so a neighbour's CPU burst falls on both alike. It prints
requests/s and latency p50/p99 of each, ours as a share of hey's, each client's CPU per request,
and the load average. Targets: at least 80 % of hey's requests/s, p50 within 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from loadgen_common import children_cpu, free_port, load_average, median, start, stop, wait_ready

from tui.core.stats import percentile
from tui.gateway.client import Gateway
from tui.gateway.target import GatewayTarget

MODEL = "tinyllama"


@dataclass(frozen=True)
class Round:
    """One client's round: requests done, wall seconds, latencies, CPU seconds it used."""

    client: str
    requests: int
    failed: int
    wall: float
    latencies: tuple[float, ...]
    cpu: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This half's options."""
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)


def hey_round(hey: str, url: str, concurrency: int, requests: int) -> Round:
    """One `hey` run; its own summary gives the latencies (by percentile) and the statuses."""
    before = children_cpu()
    began = time.perf_counter()
    result = subprocess.run(
        [hey, "-n", str(requests), "-c", str(concurrency), "-disable-compression", url],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - began
    output = result.stdout
    # hey prints a distribution, not every latency: keep its p10..p99 as the samples' stand-in
    # and read p50/p99 from them directly below.
    points = {int(q): float(s) for q, s in re.findall(r"(\d+)% in ([0-9.]+) secs", output)}
    statuses = dict(
        (int(code), int(count))
        for code, count in re.findall(r"\[(\d+)\]\s+(\d+) responses", output)
    )
    total = re.search(r"Total:\s+([0-9.]+) secs", output)
    hey_wall = float(total.group(1)) if total else wall
    ok = statuses.get(200, 0)
    return Round(
        "hey",
        requests,
        requests - ok,
        hey_wall,
        (points.get(50, 0.0), points.get(99, 0.0)),
        children_cpu() - before,
    )


async def ours_round(base_url: str, concurrency: int, requests: int) -> Round:
    """The cockpit's gateway client: `concurrency` workers share `requests` health checks
    (`Gateway.health` asks for `/healthz` under `base_url`)."""
    latencies: list[float] = []
    failed = 0
    remaining = requests
    async with Gateway(GatewayTarget.direct(base_url)) as gateway:
        await gateway.health()  # the pool's first connection, as hey's warm-up is its own

        async def worker() -> None:
            nonlocal remaining, failed
            while remaining > 0:
                remaining -= 1
                sample = await gateway.health()
                if sample.ok and sample.latency is not None:
                    latencies.append(sample.latency)
                else:
                    failed += 1

        cpu = time.process_time()
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - began
        cpu = time.process_time() - cpu
    return Round("ours", requests, failed, wall, tuple(latencies), cpu)


def run(args: argparse.Namespace) -> None:
    """Run the rounds and print the table."""
    hey = shutil.which("hey")
    if hey is None:
        raise SystemExit("hey is not installed (Debian: apt-get install hey)")
    engine_port, backend_port = free_port(), free_port()
    engine = start(
        ["-m", "tests.fakes.engine", "--host", "127.0.0.1", "--port", str(engine_port),
         "--model", MODEL],
        {},
    )  # fmt: skip
    backend = start(
        ["-m", "backend"],
        {
            "ENGINE_URL": f"http://127.0.0.1:{engine_port}",
            "MODEL": MODEL,
            "HOST": "127.0.0.1",
            "PORT": str(backend_port),
            "POD_NAME": "bench-loadgen",
            "LOG_LEVEL": "warning",
        },
    )
    base_url = f"http://127.0.0.1:{backend_port}"
    url = f"{base_url}/healthz"
    rounds: list[Round] = []
    print(f"hey half: {load_average()} at the start", file=sys.stderr)
    try:
        wait_ready(f"http://127.0.0.1:{engine_port}/v1/models", engine)
        wait_ready(url, backend)
        for number in range(args.rounds):
            # Alternate who goes first, so neither always follows the other's warm pool.
            order = ("hey", "ours") if number % 2 == 0 else ("ours", "hey")
            for client in order:
                if client == "hey":
                    rounds.append(hey_round(hey, url, args.concurrency, args.requests))
                else:
                    rounds.append(
                        asyncio.run(ours_round(base_url, args.concurrency, args.requests))
                    )
                last = rounds[-1]
                print(f"round {number + 1} {client:<4} {last.requests / last.wall:8.0f} req/s  "
                      f"{load_average()}", file=sys.stderr)  # fmt: skip
    finally:
        stop(backend, engine)
    report(rounds, args.concurrency)


def report(rounds: list[Round], concurrency: int) -> None:
    """The comparison table: medians over the rounds of each client."""
    rows: dict[str, tuple[float, float, float, float, int]] = {}
    for client in ("hey", "ours"):
        mine = [r for r in rounds if r.client == client]
        rps = median([r.requests / r.wall for r in mine])
        if client == "hey":
            p50 = median([r.latencies[0] for r in mine])
            p99 = median([r.latencies[1] for r in mine])
        else:
            p50 = median([percentile(list(r.latencies), 50) or 0.0 for r in mine])
            p99 = median([percentile(list(r.latencies), 99) or 0.0 for r in mine])
        cpu = median([r.cpu / r.requests * 1e6 for r in mine])
        rows[client] = (rps, p50, p99, cpu, sum(r.failed for r in mine))
    print(f"GET /healthz, concurrency {concurrency}, medians of {len(rounds) // 2} rounds each; "
          f"{load_average()} at the end")  # fmt: skip
    print(f"{'client':<8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}{'failed':>8}")
    for client, (rps, p50, p99, cpu, failed) in rows.items():
        print(f"{client:<8}{rps:9.0f}{p50 * 1e3:9.2f}{p99 * 1e3:9.2f}{cpu:12.0f}{failed:8d}")
    hey_rps, hey_p50 = rows["hey"][0], rows["hey"][1]
    ours_rps, ours_p50 = rows["ours"][0], rows["ours"][1]
    share = ours_rps / hey_rps if hey_rps else 0.0
    drift = (ours_p50 - hey_p50) / hey_p50 if hey_p50 else 0.0
    print(
        f"ours/hey requests/s {share:.0%} (target >= 80 %): {'met' if share >= 0.8 else 'NOT met'}"
    )
    print(f"p50 difference {drift:+.0%} (target within 10 %): "
          f"{'met' if abs(drift) <= 0.10 else 'NOT met'}")  # fmt: skip
