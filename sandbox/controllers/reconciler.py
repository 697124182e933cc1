"""The loop every level-triggered controller of the sandbox runs: reconcile on every change
of the resources it watches (bursts coalesced), each object on its own (`isolation`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sandbox.controllers.isolation import FIRST_RETRY_SECONDS, ObjectFailures
from sandbox.store.events import EventRecorder
from sandbox.store.store import JSON, ResourceType, Store, timestamp

log = logging.getLogger("sandbox.controllers")


def set_condition(
    conditions: list[JSON], kind: str, status: bool, reason: str, message: str
) -> None:
    """Set one condition in a list, moving its transition time only when its status changes."""
    text = "True" if status else "False"
    stamp = timestamp()
    for condition in conditions:
        if condition["type"] == kind:
            if condition["status"] != text:
                condition["lastTransitionTime"] = stamp
                condition["lastUpdateTime"] = stamp
            condition.update(status=text, reason=reason, message=message)
            return
    conditions.append(
        {
            "type": kind,
            "status": text,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
            "reason": reason,
            "message": message,
        }
    )


class Reconciler:
    """Runs `reconcile` whenever one of the watched resources changes (coalescing bursts)."""

    def __init__(
        self, store: Store, watched: tuple[ResourceType, ...], component: str = "controller"
    ) -> None:
        self.store = store
        self._watched = watched
        self._dirty = asyncio.Event()
        self.failures = ObjectFailures(component, EventRecorder(store, component))

    def reconcile(self) -> None:
        """Bring the world towards the desired state (synchronous: one consistent view)."""
        raise NotImplementedError

    def wake(self) -> None:
        """Reconcile again soon (a timer's callback: a deadline or a wait has passed)."""
        self._dirty.set()

    async def run(self) -> None:
        """Reconcile on every change until cancelled."""
        loop = asyncio.get_running_loop()
        queues = [self.store.subscribe(rt)[1] for rt in self._watched]
        forwarders = [asyncio.create_task(self._forward(q)) for q in queues]
        try:
            self._dirty.set()
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                try:
                    self.reconcile()
                except Exception:  # one failed pass is retried; the controller keeps running
                    log.exception("reconcile failed; retrying in %g s", FIRST_RETRY_SECONDS)
                    loop.call_later(FIRST_RETRY_SECONDS, self._dirty.set)
                retry = self.failures.next_retry_in()
                if retry is not None:
                    # An object waiting out its backoff is tried again when it ends.
                    loop.call_later(retry, self._dirty.set)
                await asyncio.sleep(0)
        finally:
            for task in forwarders:
                task.cancel()
            for rt, queue in zip(self._watched, queues, strict=True):
                self.store.unsubscribe(rt, queue)

    async def _forward(self, queue: asyncio.Queue[Any]) -> None:
        while True:
            await queue.get()
            self._dirty.set()
