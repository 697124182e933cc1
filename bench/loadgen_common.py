"""Helpers shared by the two halves of bench/loadgen.py (hey and aiperf)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tui.core.stats import percentile  # noqa: E402


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    """Wait until `url` answers 200 (or the process exits, or `seconds` pass)."""
    import httpx2

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {process.returncode}")
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered at {url} within {seconds:g} s")


def start(
    args: list[str], env: dict[str, str], log: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """A helper Python process from the project root; its output to `log`, else discarded."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
    )


def stop(*processes: subprocess.Popen[bytes]) -> None:
    """Terminate the processes this bench started, and wait for each (kill if it lingers)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def children_cpu() -> float:
    """CPU seconds used so far by this process's waited-for children (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median(values: list[float]) -> float:
    """The median, 0 for no values."""
    found = percentile(values, 50)
    return 0.0 if found is None else found


def load_average() -> str:
    """The 1, 5 and 15 minute load averages and the core count, for a results line."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


class TreeCpu:
    """Samples the CPU seconds of a process and its descendants, so the CPU of one window of a
    run (aiperf's profiling phase, not its start-up) can be read afterwards."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        """Start sampling `pid`'s tree in a thread."""
        self.samples: list[tuple[float, float]] = []
        self._seen: dict[int, float] = {}
        self._root = psutil.Process(pid)
        self._every = every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self._every):
            try:
                tree = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                continue
            for process in tree:
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue  # gone: its last sample stays counted
                self._seen[process.pid] = times.user + times.system
            self.samples.append((time.time(), sum(self._seen.values())))

    def stop(self) -> None:
        """Stop sampling."""
        self._done.set()
        self._thread.join()

    def between(self, began: float, ended: float) -> float:
        """CPU seconds used from `began` to `ended` (epoch seconds), from the nearest samples."""

        def at(moment: float) -> float:
            before = [cpu for when, cpu in self.samples if when <= moment]
            return before[-1] if before else 0.0

        return at(ended) - at(began)
