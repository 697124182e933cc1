"""One client's watch, as the API server streams it: replay, then live events, then the end.

A watch from resourceVersion 0 (or none), or with `sendInitialEvents`, starts with the current
objects as ADDED events; a watch from a newer resourceVersion replays the store's history after
it, or gets one ERROR event (410 Expired) when that history is gone. Events are filtered by
namespace and selectors the way the API server filters them: an object that starts or stops
matching is ADDED or DELETED for this watch. Bookmarks go out when the client allows them and
nothing else happened for a while. The stream ends at `timeoutSeconds` or when the store closes
its watches.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sandbox.apiserver.tables import table
from sandbox.store.store import (
    JSON,
    ApiError,
    Requirement,
    ResourceType,
    Store,
    WatchEvent,
    fields_match,
    labels_match,
)

# Without bookmarks a watch still wakes up this often, which costs nothing.
_IDLE_WAIT_SECONDS = 3600.0


@dataclass
class WatchOptions:
    """What a watch request asked for."""

    namespace: str | None
    labels: list[Requirement]
    fields: list[tuple[str, bool, str]]
    since: int | None
    """The resourceVersion to resume after; None (or "0") starts with the current objects."""
    send_initial: bool = False
    bookmark_seconds: float | None = None
    """How long a quiet watch waits before a bookmark; None when the client allows none."""
    timeout_seconds: float | None = None
    as_table: bool = False


class WatchStream:
    """The lines of one watch: JSON events, one per line."""

    def __init__(self, store: Store, rt: ResourceType, options: WatchOptions) -> None:
        self._store = store
        self._rt = rt
        self._options = options
        self._columns_sent = False

    def _matches(self, obj: JSON) -> bool:
        metadata = obj["metadata"]
        namespace = self._options.namespace
        if namespace and metadata.get("namespace") != namespace:
            return False
        fields = self._options.fields
        return labels_match(self._options.labels, metadata.get("labels")) and (
            not fields or fields_match(fields, obj)
        )

    def _visible(self, event: WatchEvent) -> str | None:
        """The event type this watch sees: ADDED or DELETED when the object enters or leaves
        the selection, None when it is not in it."""
        matches_now = self._matches(event.obj)
        if event.type != "MODIFIED" or event.previous is None:
            return event.type if matches_now else None
        matched_before = self._matches(event.previous)
        if matches_now:
            return "MODIFIED" if matched_before else "ADDED"
        return "DELETED" if matched_before else None

    def _line(self, event_type: str, obj: JSON) -> bytes:
        if self._options.as_table and event_type in ("ADDED", "MODIFIED", "DELETED"):
            resource_version = obj["metadata"].get("resourceVersion", "")
            obj = table(self._rt, [obj], resource_version, with_columns=not self._columns_sent)
            self._columns_sent = True
        return _encode(event_type, json.dumps(obj))

    def _event_line(self, event_type: str, event: WatchEvent) -> bytes:
        if self._options.as_table:
            return self._line(event_type, event.obj)
        # Every watch of this resource sends the same object: it is encoded once.
        return _encode(event_type, event.encoded_object)

    def _bookmark(self, initial_end: bool = False) -> bytes:
        metadata: JSON = {"resourceVersion": str(self._store.resource_version)}
        if initial_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        rt = self._rt
        return self._line(
            "BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": metadata}
        )

    async def lines(self) -> AsyncIterator[bytes]:
        """The watch's lines until its timeout, or until the store closes its watches."""
        options, store, rt = self._options, self._store, self._rt
        # Listing and subscribing happen together, with no await between: no event is lost.
        initial: list[JSON] = []
        backlog: list[WatchEvent] = []
        if options.since is None or options.send_initial:
            initial = store.list(rt, options.namespace, options.labels, options.fields)
            _, queue = store.subscribe(rt, None, bounded=True)
        else:
            try:
                backlog, queue = store.subscribe(rt, options.since, bounded=True)
            except ApiError as error:
                yield _encode("ERROR", json.dumps(error.status()))
                return
        loop = asyncio.get_running_loop()
        timeout = options.timeout_seconds
        deadline = loop.time() + timeout if timeout else None
        try:
            for obj in initial:
                yield self._line("ADDED", obj)
            if options.send_initial:
                yield self._bookmark(initial_end=True)
            for past in backlog:
                kind = self._visible(past)
                if kind is not None:
                    yield self._event_line(kind, past)
            while True:
                wait = options.bookmark_seconds
                if wait is None:
                    wait = _IDLE_WAIT_SECONDS
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        return
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=wait)
                except TimeoutError:
                    if options.bookmark_seconds is not None and queue.empty():
                        yield self._bookmark()
                    continue
                if event is None:
                    return
                kind = self._visible(event)
                if kind is not None:
                    yield self._event_line(kind, event)
        finally:
            store.unsubscribe(rt, queue)


def _encode(event_type: str, encoded_object: str) -> bytes:
    """One watch line, byte for byte what `json.dumps({"type": ..., "object": ...})` writes."""
    return f'{{"type": {json.dumps(event_type)}, "object": {encoded_object}}}\n'.encode()
