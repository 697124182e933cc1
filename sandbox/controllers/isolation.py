"""Failure isolation for the controllers: one bad object never stops a controller.

Validation at the API server's door keeps malformed objects out, but a controller must still
survive the one it did not foresee (a bug, an object stored before a rule existed). Each object
is handled on its own: a failure is logged once with its traceback, recorded as a Warning event
on the object, and retried after a backoff (1 s doubling to 60 s), while every other object
goes on being reconciled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sandbox.store.events import EventRecorder
from sandbox.store.store import JSON

log = logging.getLogger("sandbox.controllers")

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0


class ObjectFailures:
    """Per-object failures of one controller, with their retry times."""

    def __init__(
        self,
        component: str,
        recorder: EventRecorder | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._component = component
        self._recorder = recorder
        self._clock = clock
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}

    def run(self, obj: JSON, action: Callable[[JSON], None]) -> bool:
        """Run `action(obj)` unless the object is waiting out a backoff; whether it ran and
        succeeded. An exception is caught, recorded and scheduled for a retry."""
        key = _key(obj)
        if self._clock() < self._retry_at.get(key, 0.0):
            return False
        try:
            action(obj)
        except Exception as error:  # isolation: any failure of one object stays with it
            self._failed(obj, key, error)
            return False
        self._failures.pop(key, None)
        self._retry_at.pop(key, None)
        return True

    def _failed(self, obj: JSON, key: str, error: Exception) -> None:
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        delay = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (count - 1))
        self._retry_at[key] = self._clock() + delay
        what = f"{type(error).__name__}: {error}"
        message = f"the {self._component} failed on this object ({what}); retrying in {delay:g} s"
        # The traceback once; repeats of the same failure only as a line.
        log.warning(
            "%s: %s %s", self._component, key, message, exc_info=error if count == 1 else None
        )
        if self._recorder is not None:
            try:
                self._recorder.record(obj, "Warning", "FailedSync", message)
            except Exception:  # the event is a courtesy; the failure is already logged
                log.exception("%s: could not record the failure of %s", self._component, key)

    def next_retry_in(self) -> float | None:
        """Seconds until the earliest retry, None when nothing waits for one."""
        if not self._retry_at:
            return None
        return max(0.0, min(self._retry_at.values()) - self._clock())

    def forget_except(self, live: set[str]) -> None:
        """Drop the failures of objects that are gone (`live` holds `key`s of the others)."""
        for key in set(self._failures) - live:
            self._failures.pop(key, None)
            self._retry_at.pop(key, None)

    def failing(self) -> set[str]:
        """Keys of the objects whose last attempt failed."""
        return set(self._failures)


def _key(obj: JSON) -> str:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("uid") or f"{metadata.get('namespace')}/{metadata.get('name')}")


def object_key(obj: JSON) -> str:
    """The key `ObjectFailures` files an object under."""
    return _key(obj)
