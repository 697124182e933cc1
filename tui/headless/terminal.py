"""The cockpit's session without a screen: what `kube-llm load` and `kube-llm scenario` run on.

`headless_session` builds the same `Session` the cockpit uses (watcher, gateway, load engine,
health prober, recovery tracker, through `tui.services.connect.session_for`), runs its
background services, waits until the cluster is watched and a pod is Ready, and closes
everything on the way out. `HeadlessSink` takes what the session reports: recoveries and
warnings go to stderr as lines. `ProgressLine` redraws one status line on a terminal and stays
quiet when output is piped. `Interrupts` turns a first Ctrl+C, SIGTERM or SIGHUP into "stop the
load, keep what was done" and a second one into an exit at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from tui.cluster.kubeconfig import ClusterTarget, KubeconfigError, load_target
from tui.core.model import (
    BackendMetrics,
    ClusterEvent,
    ClusterSnapshot,
    Connection,
    RecoveryTimeline,
)
from tui.core.sanitize import one_line
from tui.core.settings import CockpitSettings
from tui.services.chaos import describe
from tui.services.connect import session_for
from tui.services.session import Session


class HeadlessError(Exception):
    """A headless run cannot start or go on (the message says why, in words)."""


@dataclass
class HeadlessSink:
    """The session's reports as lines on `stream` (stderr): recoveries, warnings, errors."""

    stream: TextIO | None = None
    quiet: bool = False

    def _line(self, text: str) -> None:
        if not self.quiet:
            print(one_line(text), file=self.stream or sys.stderr, flush=True)

    def snapshot(self, snapshot: ClusterSnapshot) -> None:
        """The session keeps the snapshot itself; nothing to show."""

    def cluster_event(self, event: ClusterEvent) -> None:
        """Kubernetes events are not printed (the report lists the cockpit's own actions)."""

    def backend_metrics(self, metrics: BackendMetrics) -> None:
        """Per-pod counters are not printed."""

    def recovery(self, timeline: RecoveryTimeline) -> None:
        """A kill's timeline completed: its summary line."""
        self._line(f"recovery: {describe(timeline)[0]}")

    def note(self, text: str, severity: str = "information") -> None:
        """The session's actions and warnings."""
        self._line(text if severity == "information" else f"{severity}: {text}")


def load_cluster(settings: CockpitSettings) -> ClusterTarget:
    """The kubeconfig target of the settings; `HeadlessError` in words when it cannot load."""
    try:
        return load_target(settings.kubeconfig, settings.context, settings.namespace)
    except KubeconfigError as error:
        raise HeadlessError(str(error)) from None


FORBIDDEN_GRACE = 3.0
"""Seconds a 403 may last before a headless run gives up (a Role applied just before the run
takes effect within them)."""


@contextlib.asynccontextmanager
async def headless_session(
    settings: CockpitSettings,
    target: ClusterTarget,
    sink: HeadlessSink,
    *,
    ready_timeout: float = 60.0,
) -> AsyncIterator[Session]:
    """A running session on `target`, once the cluster is watched and a pod is Ready.

    A 403 that lasts `FORBIDDEN_GRACE` seconds ends the wait at once with its words: waiting
    out `ready_timeout` cannot help (only a Role can), and kubectl too fails at once."""
    session = session_for(target, settings, sink)
    runner = asyncio.create_task(session.run(), name="session")
    try:
        deadline = time.monotonic() + ready_timeout
        forbidden_since: float | None = None
        while not (
            session.snapshot.connection is Connection.LIVE and session.snapshot.serving_pods
        ):
            if runner.done():
                runner.result()
                raise HeadlessError("the session stopped before the cluster was watched")
            now = time.monotonic()
            if session.snapshot.connection is not Connection.FORBIDDEN:
                forbidden_since = None
            elif forbidden_since is None:
                forbidden_since = now
            elif now - forbidden_since >= FORBIDDEN_GRACE:
                raise HeadlessError(
                    f"the cockpit may not watch {session.snapshot.namespace}: "
                    f"{one_line(session.snapshot.detail)}"
                )
            if time.monotonic() > deadline:
                snapshot = session.snapshot
                raise HeadlessError(
                    f"no Ready pod of deployment/{settings.deployment} in namespace "
                    f"{snapshot.namespace} after {ready_timeout:g} s "
                    f"({snapshot.connection.value}: {one_line(snapshot.detail) or 'no detail'})"
                )
            await asyncio.sleep(0.1)
        yield session
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await session.close()


class ProgressLine:
    """One status line redrawn in place on a terminal; nothing at all when `stream` is not one
    (piped output stays clean for scripts)."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        """Draw on `stream` (stderr) when it is a terminal, unless `enabled` says otherwise."""
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._width = 0

    def show(self, text: str) -> None:
        """Replace the line with `text`."""
        if not self.enabled:
            return
        text = one_line(text)
        padding = " " * max(0, self._width - len(text))
        self.stream.write(f"\r{text}{padding}")
        self.stream.flush()
        self._width = len(text)

    def clear(self) -> None:
        """Remove the line (before other output, and at the end)."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


async def tick_progress(
    progress: ProgressLine, line: Callable[[], str], interval: float = 0.5
) -> None:
    """Redraw `progress` with `line()` every `interval` seconds until cancelled."""
    if not progress.enabled:
        return
    try:
        while True:
            progress.show(line())
            await asyncio.sleep(interval)
    finally:
        progress.clear()


STOP_SIGNALS = {
    signal.SIGINT: "Ctrl+C",
    signal.SIGTERM: "SIGTERM",
    signal.SIGHUP: "SIGHUP (terminal closed)",
}
"""The signals a headless run stops on, each with the words that name it in messages."""


def _say(text: str, stream: TextIO | None) -> None:
    """A line on `stream` (stderr) that never fails: after SIGHUP the terminal may be gone."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=stream or sys.stderr, flush=True)


class Interrupts:
    """Ctrl+C (SIGINT), SIGTERM and SIGHUP (the terminal closed) during a headless run, on the
    running event loop.

    The first one calls `on_first` (set it to whatever stops the current work: the load
    phase's task, a scenario's steps) and the run goes on to print and write what was done,
    then exits with `exit_code` (128 + the signal: 130, 143, 129); a second one exits at once
    with that code, writing nothing more. Used as a context manager inside the loop; on exit
    the signals get their previous handlers back (Ctrl+C is Python's `KeyboardInterrupt`).
    """

    def __init__(self, on_first: Callable[[], object], stream: TextIO | None = None) -> None:
        """Call `on_first` at the first signal; say so on `stream` (stderr)."""
        self.on_first = on_first
        self.stream = stream
        self.count = 0
        self.signal: signal.Signals | None = None
        """The first signal that stopped the run, if one did."""

    @property
    def interrupted(self) -> bool:
        """Whether a stop signal arrived."""
        return self.count > 0

    @property
    def cause(self) -> str:
        """The first signal in words ("Ctrl+C", "SIGTERM", ...); "Ctrl+C" before any."""
        return STOP_SIGNALS[self.signal or signal.SIGINT]

    @property
    def exit_code(self) -> int:
        """128 + the first signal's number, as shells report it (130 before any)."""
        return 128 + int(self.signal or signal.SIGINT)

    def __enter__(self) -> Interrupts:
        """Take the stop signals from their default handlers for the running loop."""
        loop = asyncio.get_running_loop()
        for number in STOP_SIGNALS:
            loop.add_signal_handler(number, self._pressed, number)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Give the signals back (the loop restores their previous handlers)."""
        loop = asyncio.get_running_loop()
        for number in STOP_SIGNALS:
            loop.remove_signal_handler(number)

    def _pressed(self, number: signal.Signals) -> None:
        self.count += 1
        if self.count == 1:
            self.signal = number
            again = "Ctrl+C" if number is signal.SIGINT else "another signal"
            _say(
                f"\nkube-llm: {STOP_SIGNALS[number]}: stopping the load; the table and the "
                f"report will cover what was done ({again} quits at once)",
                self.stream,
            )
            self.on_first()
            return
        _say(f"\nkube-llm: stopped at once (a second {STOP_SIGNALS[number]})", self.stream)
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        # At once: no cleanup that could hang (open streams, a report half written).
        os._exit(self.exit_code)


__all__ = [
    "STOP_SIGNALS",
    "HeadlessError",
    "HeadlessSink",
    "Interrupts",
    "ProgressLine",
    "headless_session",
    "load_cluster",
    "tick_progress",
]
