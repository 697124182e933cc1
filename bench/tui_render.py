"""How the cockpit copes with a big cluster and heavy load, measured headless (run by hand).

Feeds the real app (real session, recorder, widgets) 100 pods that change every second and 500
chat samples a second, and times key presses (the pods table's cursor moving) from the key
event to the first screen update sent to the (headless) terminal after the cursor moved, next
to the same measurement on an idle app in the same run.
Also the process's CPU over each phase. Targets (issue 7): key-press-to-screen p99 under 50 ms
and the app under 30 % of one core while loaded.

    .venv/bin/python bench/tui_render.py [--seconds 20] [--pods 100] [--samples 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from textual import events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.tui.scripted import ScriptedGateway, pod, rig, snapshot
from tui.core.model import ChatSample, HealthSample, Outcome
from tui.core.stats import percentile


@dataclass
class Phase:
    """One measured phase."""

    name: str
    presses: list[float]
    cpu_percent: float


def pods_snapshot(count: int, tick: int) -> object:
    """`count` pods; a few change state each tick, so the table really redraws."""
    pods = []
    for index in range(count):
        ready = (index + tick) % 17 != 0
        pods.append(
            pod(f"llm-backend-5d8f-{index:05d}", age=600 + index, ready=ready, restarts=tick % 3)
        )
    return snapshot(*pods)


async def feed(made: object, pods: int, samples_per_second: int, stop: asyncio.Event) -> None:
    """Push a snapshot every second and samples every 100 ms until `stop`."""
    app = made.app  # type: ignore[attr-defined]
    session = app.session
    tick = 0
    batch = max(1, samples_per_second // 10)
    next_snapshot = 0.0
    while not stop.is_set():
        now = time.time()
        if now >= next_snapshot:
            made.cluster.push(pods_snapshot(pods, tick))  # type: ignore[attr-defined]
            tick += 1
            next_snapshot = now + 1.0
        for _ in range(batch):
            ttft = random.uniform(0.05, 0.4)
            session._on_sample(
                ChatSample(
                    started_at=now - 1.0,
                    origin="load",
                    outcome=Outcome.OK if random.random() > 0.02 else Outcome.ERROR,
                    status=200,
                    error_kind=None,
                    pod=f"llm-backend-5d8f-{random.randrange(pods):05d}",
                    ttft=ttft,
                    e2e=ttft + random.uniform(0.5, 1.5),
                    gaps=(0.02,) * 15,
                    output_tokens=16,
                    tokens_from_usage=True,
                )
            )
        session.recorder.add_health(HealthSample(now, random.uniform(0.002, 0.01), 200, None))
        await asyncio.sleep(0.1)


async def presses(app: object, seconds: float) -> list[float]:
    """Press down/up for `seconds`; each press timed from the key event to the first screen
    update the compositor sends to the terminal after the cursor has moved."""
    timings: list[float] = []
    table = app.pods_table  # type: ignore[attr-defined]
    keys = ("down", "up")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        key = keys[len(timings) % 2]
        row = table.cursor_row
        shown.clear()
        started = time.perf_counter()
        event = events.Key(key, None)
        event.set_sender(app)  # type: ignore[arg-type]
        app._driver.send_message(event)  # type: ignore[attr-defined]  # as a terminal would
        while not (table.cursor_row != row and any(t > started for t in shown)):
            if time.perf_counter() - started > 5:
                raise RuntimeError("a key press was not shown within 5 s")
            await asyncio.sleep(0.001)
        timings.append(min(t for t in shown if t > started) - started)
        await asyncio.sleep(0.05)
    return timings


shown: list[float] = []
"""When the app sent each screen update to the (headless) terminal."""


def spy_on_display(app: object) -> None:
    """Note the moment of every screen update the app sends to its terminal."""
    original = app._display  # type: ignore[attr-defined]

    def display(screen: object, renderable: object) -> None:
        if renderable is not None:
            shown.append(time.perf_counter())
        original(screen, renderable)

    app._display = display  # type: ignore[attr-defined]


async def measure(seconds: float, pods: int, samples: int) -> list[Phase]:
    """An idle phase, then a loaded one, in the same app and run."""
    made = rig(clock=time.time)
    process = psutil.Process(os.getpid())
    phases: list[Phase] = []
    async with made.app.run_test(size=(200, 60)) as pilot:
        while not made.clusters or not made.app.pods_table.row_count:
            await pilot.pause(0.05)
        made.app.refresh_interval = 1.0
        made.app.set_interval(1.0, made.app._tick)
        await pilot.press("down")
        spy_on_display(made.app)
        for name, load in (("idle (2 pods, no samples)", False), ("loaded", True)):
            stop = asyncio.Event()
            feeder = asyncio.create_task(feed(made, pods, samples, stop)) if load else None
            if feeder is not None:
                await asyncio.sleep(2.0)  # fill the recorder's window first
            before = process.cpu_times()
            wall = time.perf_counter()
            timings = await presses(made.app, seconds)
            after = process.cpu_times()
            used = (after.user - before.user) + (after.system - before.system)
            cpu = 100 * used / (time.perf_counter() - wall)
            stop.set()
            if feeder is not None:
                await feeder
            phases.append(Phase(name, timings, cpu))
    return phases


def main() -> int:
    """Run both phases and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--samples", type=int, default=500, help="chat samples per second")
    args = parser.parse_args()
    _ = ScriptedGateway  # the rig's gateway: no network, the app's own work is measured
    phases = asyncio.run(measure(args.seconds, args.pods, args.samples))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'phase':<28} {'presses':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU % of a core':>16}")
    for phase in phases:
        p50 = percentile(phase.presses, 50) or 0.0
        p99 = percentile(phase.presses, 99) or 0.0
        print(
            f"{phase.name:<28} {len(phase.presses):>8} {p50 * 1000:>8.1f} {p99 * 1000:>8.1f} "
            f"{phase.cpu_percent:>16.1f}"
        )
    idle, loaded = phases
    ratio = (percentile(loaded.presses, 99) or 0) / (percentile(idle.presses, 99) or 1)
    print(f"loaded/idle p99 ratio: {ratio:.2f}")
    print(f"with {args.pods} pods and {args.samples} samples/s: target p99 < 50 ms, CPU < 30 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
