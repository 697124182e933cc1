"""The cockpit's session without a screen: what `kube-llm load` and `kube-llm scenario` run on.

`headless_session` builds the same `Session` the cockpit uses (watcher, gateway, load engine,
health prober, recovery tracker, through `tui.connect.session_for`), runs its background services,
waits until the cluster is watched and a pod is Ready, and closes everything on the way out.
`HeadlessSink` takes what the session reports: recoveries and warnings go to stderr as lines.
`ProgressLine` redraws one status line on a terminal and stays quiet when output is piped.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TextIO

from tui.chaos import describe
from tui.connect import session_for
from tui.kubeconfig import ClusterTarget, KubeconfigError, load_target
from tui.model import BackendMetrics, ClusterEvent, ClusterSnapshot, Connection, RecoveryTimeline
from tui.sanitize import one_line
from tui.session import CockpitSettings, Session


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


@contextlib.asynccontextmanager
async def headless_session(
    settings: CockpitSettings,
    target: ClusterTarget,
    sink: HeadlessSink,
    *,
    ready_timeout: float = 60.0,
) -> AsyncIterator[Session]:
    """A running session on `target`, once the cluster is watched and a pod is Ready."""
    session = session_for(target, settings, sink)
    runner = asyncio.create_task(session.run(), name="session")
    try:
        deadline = time.monotonic() + ready_timeout
        while not (
            session.snapshot.connection is Connection.LIVE and session.snapshot.serving_pods
        ):
            if runner.done():
                runner.result()
                raise HeadlessError("the session stopped before the cluster was watched")
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


__all__ = [
    "HeadlessError",
    "HeadlessSink",
    "ProgressLine",
    "headless_session",
    "load_cluster",
    "tick_progress",
]
