"""Proxy overhead of the backend: the same streamed chats through it and straight to the engine.

Starts the fake engine (fixed delays) and two ``python -m backend`` processes on loopback, one
with ``ENGINE_TRANSPORT=aiohttp`` (the default engine client) and one with
``ENGINE_TRANSPORT=httpx`` (httpx2's own transport, httpcore), then runs closed-loop streaming
clients at 1, 16 and 64 concurrent streams on three paths in the same run: direct to the
engine, through the aiohttp backend, through the httpx backend. The paths take turns in short
rounds (their order rotating each round), so a neighbour's burst of CPU falls on all three
alike. It prints time to first token (TTFT) and end to end (E2E) percentiles, the overhead
each backend adds (p50, p99, in ms), the throughput ratio to direct, the backend's CPU per
chat, aiohttp against httpx side by side, and the load average beside each row (the machine
may be shared: compare the paths of one run, not runs).

    .venv/bin/python bench/proxy_overhead.py [--concurrency 1 16 64] [--seconds 8] [--rounds 4]

Targets (issues 2 and 8): at 64 streams p50 overhead <= 1 ms, p99 <= 5 ms, throughput >= 95 %
of direct.
The client is a minimal HTTP/1.1 reader on uvloop so that it costs every path the same, little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "tinyllama"


@dataclass
class Run:
    """Samples of one (path, concurrency) run."""

    ttft: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # process name -> share of one core

    def merge(self, other: Run) -> None:
        """Pool another run's samples, time and CPU into this one."""
        for name, share in other.cpu.items():
            self.cpu[name] = (self.cpu.get(name, 0.0) * self.wall + share * other.wall) / (
                self.wall + other.wall
            )
        self.ttft += other.ttft
        self.e2e += other.e2e
        self.errors += other.errors
        self.wall += other.wall

    @property
    def throughput(self) -> float:
        """Completed streams per second."""
        return len(self.e2e) / self.wall if self.wall else 0.0


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def overhead_ms(direct: Run, proxied: Run, attr: str, q: float) -> float:
    """Backend minus direct, in ms, of the q-th percentile of ``attr`` (ttft or e2e)."""
    return (percentile(getattr(proxied, attr), q) - percentile(getattr(direct, attr), q)) * 1e3


def ms(samples: list[float], q: float) -> float:
    """The q-th percentile of ``samples`` in ms."""
    return percentile(samples, q) * 1e3


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(port: int, path: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until ``GET path`` answers 200 on ``port``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                )
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"nothing answered on port {port}")


class StreamClient:
    """One keep-alive HTTP/1.1 connection that posts streamed chats and times them."""

    def __init__(self, port: int, body: bytes) -> None:
        self.port = port
        self.request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self.reader, self.writer

    async def chat(self) -> tuple[float, float]:
        """Send one chat; return (seconds to the first content token, seconds to the end)."""
        reader, writer = await self._connect()
        started = time.perf_counter()
        writer.write(self.request)
        status = await reader.readline()
        if not status.startswith(b"HTTP/1.1 200"):
            self.writer = None
            raise RuntimeError(status.decode(errors="replace").strip())
        chunked = False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                chunked = True
        if not chunked:
            raise RuntimeError("expected a chunked stream")
        first = 0.0
        tail = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            if not first:
                seen = tail + data
                index = seen.find(b'"content":"')
                while index >= 0:
                    if seen[index + 11 : index + 12] not in (b'"', b""):
                        first = time.perf_counter() - started
                        break
                    index = seen.find(b'"content":"', index + 1)
                tail = seen[-16:]
        ended = time.perf_counter() - started
        if not first:
            raise RuntimeError("no content token in the stream")
        return first, ended

    def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    port: int, concurrency: int, seconds: float, body: bytes, pids: dict[str, int]
) -> Run:
    """Run ``concurrency`` closed-loop clients for ``seconds`` (after one warm-up round each)."""
    run = Run()
    clients = [StreamClient(port, body) for _ in range(concurrency)]
    measuring = asyncio.Event()
    stop_at = 0.0

    warm = 0
    all_warm = asyncio.Event()

    async def worker(client: StreamClient) -> None:
        nonlocal warm
        # A random first pause spreads the clients over a stream's length, as real users are.
        await asyncio.sleep(random.uniform(0, 0.3))
        await client.chat()
        warm += 1
        if warm == concurrency:
            all_warm.set()
        await measuring.wait()
        while time.perf_counter() < stop_at:
            try:
                ttft, e2e = await client.chat()
            except (RuntimeError, OSError, ValueError, asyncio.IncompleteReadError):
                run.errors += 1
                client.writer = None
                continue
            run.ttft.append(ttft)
            run.e2e.append(e2e)

    tasks = [asyncio.create_task(worker(client)) for client in clients]
    # Measuring starts once every worker has finished its warm-up chat, however long that
    # takes on a loaded machine (a fixed wait was once shorter than the warm-ups).
    await asyncio.wait_for(all_warm.wait(), timeout=60)
    started = time.perf_counter()
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    stop_at = started + seconds
    measuring.set()
    await asyncio.gather(*tasks)
    run.wall = time.perf_counter() - started
    run.cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / run.wall for name, pid in pids.items()}
    for client in clients:
        client.close()
    return run


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a helper process from the project root, its output discarded."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


PATHS = ("direct", "aiohttp", "httpx")


def cpu_ms_per_chat(run: Run, name: str) -> float:
    """CPU time the process ``name`` spent per completed chat during ``run``, in ms."""
    return run.cpu.get(name, 0.0) * run.wall / len(run.e2e) * 1e3 if run.e2e else 0.0


def ratio(numerator: float, denominator: float) -> str:
    """``numerator / denominator`` as a percentage, or ``-`` when undefined."""
    return f"{numerator / denominator:.1%}" if denominator else "-"


def main() -> None:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=8.0, help="per path and concurrency")
    parser.add_argument("--rounds", type=int, default=4, help="turns each path takes")
    parser.add_argument("--first-token-delay", type=float, default=0.05)
    parser.add_argument("--token-delay", type=float, default=0.02)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()

    engine_port = free_port()
    engine = start(
        [
            "-m", "tests.fakes.engine", "--host", "127.0.0.1", "--port", str(engine_port),
            "--model", MODEL, "--first-token-delay", str(args.first_token_delay),
            "--token-delay", str(args.token_delay), "--tokens", str(args.tokens),
        ],
        {},
    )  # fmt: skip
    ports = {"direct": engine_port}
    backends: dict[str, subprocess.Popen[bytes]] = {}
    for transport in PATHS[1:]:
        ports[transport] = free_port()
        backends[transport] = start(
            ["-m", "backend"],
            {
                "ENGINE_URL": f"http://127.0.0.1:{engine_port}",
                "ENGINE_TRANSPORT": transport,
                "MODEL": MODEL,
                "HOST": "127.0.0.1",
                "PORT": str(ports[transport]),
                "MAX_INFLIGHT": str(max(args.concurrency) * 2),
                "POD_NAME": f"bench-{transport}",
            },
        )
    try:
        wait_http(engine_port, "/v1/models", engine)
        for transport, process in backends.items():
            wait_http(ports[transport], "/readyz", process)
        pids = {
            "engine": engine.pid,
            **{transport: process.pid for transport, process in backends.items()},
            "client": os.getpid(),
        }
        body = json.dumps(
            {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
        ).encode()
        runner: Callable[[Coroutine[Any, Any, Run]], Run] = asyncio.run
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
        print(
            f"fake engine: first token {args.first_token_delay * 1e3:.0f} ms, "
            f"{args.tokens} tokens {args.token_delay * 1e3:.0f} ms apart; "
            f"{args.seconds:g} s per path in {args.rounds} rotating rounds; "
            f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at start"
        )
        print(
            f"{'streams':>7} {'path':>7} {'n':>6} {'err':>4} {'TTFT p50':>9} {'p99':>7} "
            f"{'E2E p50':>8} {'p99':>7} {'req/s':>7}   CPU: "
            + " ".join(f"{name:>7}" for name in pids)
            + "  load"
        )
        summary: list[tuple[int, dict[str, Run]]] = []
        for concurrency in args.concurrency:
            runs = {path: Run() for path in PATHS}
            for round_ in range(args.rounds):
                order = PATHS[round_ % len(PATHS) :] + PATHS[: round_ % len(PATHS)]
                for path in order:
                    run = runner(
                        measure(ports[path], concurrency, args.seconds / args.rounds, body, pids)
                    )
                    runs[path].merge(run)
            for path, run in runs.items():
                print(
                    f"{concurrency:>7} {path:>7} {len(run.e2e):>6} {run.errors:>4} "
                    f"{ms(run.ttft, 50):>9.2f} {ms(run.ttft, 99):>7.2f} "
                    f"{ms(run.e2e, 50):>8.2f} {ms(run.e2e, 99):>7.2f} {run.throughput:>7.1f}"
                    + " " * 8
                    + " ".join(f"{run.cpu.get(name, 0.0):>7.0%}" for name in pids)
                    + f"  {os.getloadavg()[0]:.2f}"
                )
            summary.append((concurrency, runs))

        print("\noverhead of each backend (ms; backend minus direct, same percentile)")
        print(
            f"{'streams':>7} {'ENGINE_TRANSPORT':>16} {'TTFT p50':>9} {'TTFT p99':>9} "
            f"{'E2E p50':>8} {'E2E p99':>8} {'throughput':>11} {'CPU ms/chat':>12}"
        )
        for concurrency, runs in summary:
            direct = runs["direct"]
            for transport in PATHS[1:]:
                proxied = runs[transport]
                print(
                    f"{concurrency:>7} {transport:>16} "
                    f"{overhead_ms(direct, proxied, 'ttft', 50):>9.2f} "
                    f"{overhead_ms(direct, proxied, 'ttft', 99):>9.2f} "
                    f"{overhead_ms(direct, proxied, 'e2e', 50):>8.2f} "
                    f"{overhead_ms(direct, proxied, 'e2e', 99):>8.2f} "
                    f"{ratio(proxied.throughput, direct.throughput):>11} "
                    f"{cpu_ms_per_chat(proxied, transport):>12.2f}"
                )

        print(
            "\naiohttp against httpx (TTFT and E2E: httpx minus aiohttp, ms; throughput and "
            "backend CPU per chat: aiohttp / httpx)"
        )
        print(
            f"{'streams':>7} {'TTFT p50':>9} {'TTFT p99':>9} {'E2E p50':>8} {'E2E p99':>8} "
            f"{'throughput':>11} {'CPU/chat':>9}"
        )
        for concurrency, runs in summary:
            chosen, httpx = runs["aiohttp"], runs["httpx"]
            chosen_cpu = cpu_ms_per_chat(chosen, "aiohttp")
            print(
                f"{concurrency:>7} {overhead_ms(chosen, httpx, 'ttft', 50):>9.2f} "
                f"{overhead_ms(chosen, httpx, 'ttft', 99):>9.2f} "
                f"{overhead_ms(chosen, httpx, 'e2e', 50):>8.2f} "
                f"{overhead_ms(chosen, httpx, 'e2e', 99):>8.2f} "
                f"{ratio(chosen.throughput, httpx.throughput):>11} "
                f"{ratio(chosen_cpu, cpu_ms_per_chat(httpx, 'httpx')):>9}"
            )

        concurrency, runs = summary[-1]
        direct = runs["direct"]
        print(
            f"\ntarget at {concurrency} streams (TTFT overhead p50 <= 1 ms, p99 <= 5 ms, "
            "throughput >= 95 % of direct):"
        )
        for transport in PATHS[1:]:
            proxied = runs[transport]
            met = (
                overhead_ms(direct, proxied, "ttft", 50) <= 1
                and overhead_ms(direct, proxied, "ttft", 99) <= 5
                and proxied.throughput / direct.throughput >= 0.95
            )
            print(f"  {transport:>7}: {'met' if met else 'missed'}")
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        processes = [*backends.values(), engine]
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
