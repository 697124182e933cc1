"""The sandbox's object store: Kubernetes objects in memory, with the API server's bookkeeping.

Every write takes the next value of one global counter as the object's `resourceVersion`, as
etcd's revision does, and is appended to a bounded history per resource type. Watches replay
that history from any resourceVersion still in it and get `410 Gone` for an older one, exactly
the behaviour clients must survive on a real cluster. Objects are plain JSON-shaped dicts; the
store hands out deep copies so a caller can never change stored state by accident, and never
changes a stored object in place (a watch event's object stays as it was).
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import functools
import json
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.store.apierrors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    gone,
    not_found,
    now,
    parse_timestamp,
    success_status,
    timestamp,
)
from sandbox.store.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    ENDPOINTS,
    EVENTS,
    HPAS,
    JSON,
    NAMESPACES,
    NODES,
    PDBS,
    PODS,
    RESOURCE_TYPES,
    ROLEBINDINGS,
    ROLES,
    SERVICEACCOUNTS,
    SERVICES,
    ResourceType,
    resource_for_kind,
    resource_type,
)
from sandbox.store.selectors import (
    Requirement,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    selector_from_label_selector,
)

# The store is where the rest of the sandbox finds these; they live in their own modules.
__all__ = [
    "CONFIGMAPS",
    "DEPLOYMENTS",
    "ENDPOINTS",
    "EVENTS",
    "HPAS",
    "JSON",
    "NAMESPACES",
    "NODES",
    "PDBS",
    "PODS",
    "RESOURCE_TYPES",
    "ROLEBINDINGS",
    "ROLES",
    "SERVICEACCOUNTS",
    "SERVICES",
    "ApiError",
    "Requirement",
    "ResourceType",
    "Store",
    "WatchEvent",
    "already_exists",
    "bad_request",
    "conflict",
    "fields_match",
    "gone",
    "labels_match",
    "not_found",
    "now",
    "parse_field_selector",
    "parse_label_selector",
    "parse_timestamp",
    "random_suffix",
    "resource_for_kind",
    "resource_type",
    "selector_from_label_selector",
    "success_status",
    "timestamp",
]


@dataclass(frozen=True)
class WatchEvent:
    """One change to one object: ADDED, MODIFIED or DELETED, at resourceVersion `rv`.

    `obj` is the stored object itself, shared by every subscriber: read it, never change it.
    """

    type: str
    rv: int
    obj: JSON
    previous: JSON | None = None
    """The object before a MODIFIED change (for watches with selectors)."""

    @functools.cached_property
    def encoded_object(self) -> str:
        """`obj` as JSON text, encoded once for all the watches that send it."""
        return json.dumps(self.obj)


@dataclass
class _History:
    events: deque[WatchEvent]
    # Events with rv > floor are all in `events` (or none happened); a watch from an
    # older resourceVersion cannot be served.
    floor: int = 0
    watchers: set[asyncio.Queue[WatchEvent | None]] = field(default_factory=set)


class Store:
    """In-memory objects of every served resource, with watch history and subscribers."""

    def __init__(self, history_size: int = 1000) -> None:
        self._history_size = history_size
        self._rv = 0
        self._objects: dict[str, dict[tuple[str, str], JSON]] = {}
        self._history: dict[str, _History] = {}
        for rt in RESOURCE_TYPES:
            self._objects.setdefault(rt.key, {})
            self._history.setdefault(rt.key, _History(deque()))

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out."""
        return self._rv

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(
        self, rt: ResourceType, event_type: str, obj: JSON, previous: JSON | None = None
    ) -> None:
        history = self._history[rt.key]
        event = WatchEvent(event_type, int(obj["metadata"]["resourceVersion"]), obj, previous)
        history.events.append(event)
        while len(history.events) > self._history_size:
            history.floor = history.events.popleft().rv
        for queue in list(history.watchers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A watch this far behind (a client that stopped reading) is ended, as the
                # API server ends slow watches; its client resumes from the history.
                history.watchers.discard(queue)
                _end_watch(queue)

    def history_floor(self, rt: ResourceType) -> int:
        """The oldest resourceVersion a watch (or a list's continue token) of `rt` may resume
        from: every change after it is still in the history."""
        return self._history[rt.key].floor

    def compact(self) -> None:
        """Forget all watch history, as etcd compaction does (fault injection for tests)."""
        for history in self._history.values():
            history.events.clear()
            history.floor = self._rv

    # -- reads ---------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> JSON:
        """A copy of one object, or 404."""
        obj = self._objects[rt.key].get((namespace if rt.namespaced else "", name))
        if obj is None:
            raise not_found(rt, name)
        return copy.deepcopy(obj)

    def find(self, rt: ResourceType, namespace: str, name: str) -> JSON | None:
        """A copy of one object, or None."""
        obj = self._objects[rt.key].get((namespace if rt.namespaced else "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_selector: list[Requirement] | None = None,
        field_selector: list[tuple[str, bool, str]] | None = None,
        *,
        at: int | None = None,
    ) -> list[JSON]:
        """Copies of matching objects, ordered by namespace and name: as they are now, or as
        they were at resourceVersion `at` (410 Gone when the history no longer reaches it)."""
        objects = self._objects[rt.key] if at is None else self._snapshot(rt, at)
        items = []
        for (ns, _name), obj in sorted(objects.items()):
            if namespace and rt.namespaced and ns != namespace:
                continue
            if label_selector and not labels_match(label_selector, obj["metadata"].get("labels")):
                continue
            if field_selector and not fields_match(field_selector, obj):
                continue
            items.append(copy.deepcopy(obj))
        return items

    def _snapshot(self, rt: ResourceType, rv: int) -> dict[tuple[str, str], JSON]:
        """The objects of `rt` as they were at resourceVersion `rv`, as etcd reads a revision:
        the objects now, with every change after `rv` undone from the history (newest first).
        """
        history = self._history[rt.key]
        if rv < history.floor:
            raise gone(rv, history.floor)
        objects = dict(self._objects[rt.key])
        for event in reversed(history.events):
            if event.rv <= rv:
                break
            metadata = event.obj["metadata"]
            key = (metadata.get("namespace", "") if rt.namespaced else "", metadata["name"])
            if event.type == "ADDED":
                objects.pop(key, None)
            elif event.type == "MODIFIED":
                assert event.previous is not None  # every MODIFIED event carries it
                objects[key] = event.previous
            else:  # DELETED: the object as it was when it went
                objects[key] = event.obj
        return objects

    # -- writes --------------------------------------------------------------------------------

    def create(
        self, rt: ResourceType, obj: JSON, namespace: str | None = None, *, dry_run: bool = False
    ) -> JSON:
        """Store a new object, filling in the metadata the API server owns.

        With `dry_run`, everything but the storing: the answer is the object as it would be.
        """
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        if rt.namespaced:
            metadata["namespace"] = namespace or metadata.get("namespace") or "default"
        else:
            metadata.pop("namespace", None)
        if not metadata.get("name"):
            prefix = metadata.get("generateName")
            if not prefix:
                raise ApiError(
                    422, "Invalid", f"{rt.kind} is invalid: metadata.name: Required value"
                )
            metadata["name"] = prefix + random_suffix()
        key = (metadata.get("namespace", ""), metadata["name"])
        if key in self._objects[rt.key]:
            raise already_exists(rt, metadata["name"])
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = timestamp()
        if "spec" in obj:
            metadata["generation"] = 1
        if dry_run:
            return obj
        metadata["resourceVersion"] = str(self._next_rv())
        self._objects[rt.key][key] = obj
        self._emit(rt, "ADDED", obj)
        return copy.deepcopy(obj)

    def update(
        self,
        rt: ResourceType,
        obj: JSON,
        *,
        subresource: str | None = None,
        check_version: bool = False,
        dry_run: bool = False,
    ) -> JSON:
        """Replace an object (or only its status with `subresource="status"`); with `dry_run`,
        the answer is the object as it would be, and nothing changes."""
        metadata = obj.get("metadata") or {}
        name = metadata.get("name", "")
        namespace = metadata.get("namespace", "") if rt.namespaced else ""
        current = self._objects[rt.key].get((namespace, name))
        if current is None:
            raise not_found(rt, name)
        if check_version and metadata.get("resourceVersion") not in (
            None,
            "",
            current["metadata"]["resourceVersion"],
        ):
            raise conflict(rt, name)
        new = copy.deepcopy(current)
        if subresource == "status":
            new["status"] = copy.deepcopy(obj.get("status"))
        else:
            for section, value in obj.items():
                if section not in ("metadata", "status", "apiVersion", "kind"):
                    new[section] = copy.deepcopy(value)
            # Server-owned metadata stays; labels, annotations and the like follow the caller.
            for meta_key in ("labels", "annotations", "ownerReferences", "finalizers"):
                if meta_key in metadata:
                    new["metadata"][meta_key] = copy.deepcopy(metadata[meta_key])
                else:
                    new["metadata"].pop(meta_key, None)
            if "managedFields" in metadata:
                # Who owns which field (server-side apply); kept as it was when not given.
                new["metadata"]["managedFields"] = copy.deepcopy(metadata["managedFields"])
            if subresource is None and "status" in obj and rt.plural in ("events",):
                new["status"] = copy.deepcopy(obj["status"])
            _bump_generation(new, current)
        return self._replace(rt, (namespace, name), current, new, dry_run)

    def mutate(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        change: Callable[[JSON], None],
        *,
        dry_run: bool = False,
    ) -> JSON:
        """Apply `change` to a copy of the object and store it (spec, metadata and status);
        with `dry_run`, only answer what it would store."""
        current = self._objects[rt.key].get((namespace if rt.namespaced else "", name))
        if current is None:
            raise not_found(rt, name)
        new = copy.deepcopy(current)
        change(new)
        new["metadata"]["name"] = name
        if rt.namespaced:
            new["metadata"]["namespace"] = namespace
        for owned in ("uid", "creationTimestamp", "resourceVersion"):
            new["metadata"][owned] = current["metadata"][owned]
        # The kubelet binding a pod to the node (spec.nodeName) is no new generation.
        if rt is not PODS:
            _bump_generation(new, current)
        key = (namespace if rt.namespaced else "", name)
        return self._replace(rt, key, current, new, dry_run)

    def _replace(
        self,
        rt: ResourceType,
        key: tuple[str, str],
        current: JSON,
        new: JSON,
        dry_run: bool = False,
    ) -> JSON:
        """Store `new` in place of `current` with a new resourceVersion, unless nothing changed
        (or this is a dry run)."""
        if new == current or dry_run:
            return copy.deepcopy(new)
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        self._objects[rt.key][key] = new
        self._emit(rt, "MODIFIED", new, current)
        return copy.deepcopy(new)

    def delete(self, rt: ResourceType, namespace: str, name: str, *, dry_run: bool = False) -> JSON:
        """Remove an object at once; the DELETED event carries a new resourceVersion.

        With `dry_run`, the object stays and the answer is it as it is."""
        key = (namespace if rt.namespaced else "", name)
        current = self._objects[rt.key].get(key)
        if current is None:
            raise not_found(rt, name)
        if dry_run:
            return copy.deepcopy(current)
        del self._objects[rt.key][key]
        # A copy: the stored object is also the last event's in the watch history, which
        # must keep its own resourceVersion.
        deleted = {**current, "metadata": {**current["metadata"]}}
        deleted["metadata"]["resourceVersion"] = str(self._next_rv())
        self._emit(rt, "DELETED", deleted)
        return copy.deepcopy(deleted)

    # -- watches -------------------------------------------------------------------------------

    def subscribe(
        self, rt: ResourceType, since: int | None = None, *, bounded: bool = False
    ) -> tuple[builtins.list[WatchEvent], asyncio.Queue[WatchEvent | None]]:
        """Events after resourceVersion `since` still in history, and a queue of later ones.

        `since=None` replays nothing. Raises 410 Gone when `since` is older than the history.
        A `bounded` queue (a client's watch) holds at most the history's length: when it is
        full the watch ends with None, and the store stops feeding it. Call `unsubscribe` with
        the queue when done.
        """
        history = self._history[rt.key]
        backlog: builtins.list[WatchEvent] = []
        if since is not None:
            if since < history.floor:
                raise gone(since, history.floor)
            backlog = [event for event in history.events if event.rv > since]
        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue(
            self._history_size if bounded else 0
        )
        history.watchers.add(queue)
        return backlog, queue

    def unsubscribe(self, rt: ResourceType, queue: asyncio.Queue[WatchEvent | None]) -> None:
        """Stop delivering events to a queue from `subscribe`."""
        self._history[rt.key].watchers.discard(queue)

    def close_watches(self) -> None:
        """End every open watch (a dropped connection for clients; shutdown, fault injection)."""
        for history in self._history.values():
            for queue in list(history.watchers):
                _end_watch(queue)


def _end_watch(queue: asyncio.Queue[WatchEvent | None]) -> None:
    """Make None the next thing a watch's queue gives, even when the queue is full."""
    if queue.full():
        while not queue.empty():
            queue.get_nowait()
    queue.put_nowait(None)


def _bump_generation(new: JSON, current: JSON) -> None:
    """A spec change is a new generation (`metadata.generation`), as the API server counts."""
    if "spec" in new and new.get("spec") != current.get("spec"):
        new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1


_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(length: int = 5) -> str:
    """A random name suffix from Kubernetes' alphabet (no vowels, no confusable digits)."""
    return "".join(_SUFFIX_ALPHABET[b % len(_SUFFIX_ALPHABET)] for b in uuid.uuid4().bytes[:length])
