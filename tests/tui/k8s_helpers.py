"""What the Kubernetes adapter's tests share: a recorder of what the watcher hands over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from tui.cluster.kubeconfig import ClusterTarget
from tui.cluster.watch import Backoff
from tui.cluster.watcher import ClusterWatcher
from tui.core.model import ClusterEvent, ClusterSnapshot


class Recorder:
    """Collects the snapshots and events a watcher hands over, and waits for conditions."""

    def __init__(self) -> None:
        self.snapshots: list[ClusterSnapshot] = []
        self.events: list[ClusterEvent] = []

    @property
    def last(self) -> ClusterSnapshot:
        """The latest snapshot."""
        return self.snapshots[-1]

    async def until(
        self, predicate: Callable[[ClusterSnapshot], Any], timeout: float = 30, what: str = ""
    ) -> ClusterSnapshot:
        """The first latest snapshot that satisfies `predicate` (the first connect loads the
        client's API modules, which takes seconds on a busy machine)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.snapshots and predicate(self.last):
                return self.last
            await asyncio.sleep(0.02)
        last = self.snapshots[-1] if self.snapshots else None
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")

    async def events_at_least(self, count: int, timeout: float = 30) -> None:
        """Wait until `count` events arrived."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(self.events) >= count, self.events


def watching(target: ClusterTarget, **options: Any) -> tuple[ClusterWatcher, Recorder]:
    """A watcher on `target` that records into a new Recorder, with short backoffs."""
    recorder = Recorder()
    options.setdefault("backoff", Backoff(base=0.05, cap=0.5))
    watcher = ClusterWatcher(
        target,
        on_snapshot=recorder.snapshots.append,
        on_event=recorder.events.append,
        **options,
    )
    return watcher, recorder
