"""Kubernetes events (`core/v1` Event objects) recorded by the sandbox's controllers and kubelet.

Like the real event recorder, a repeat of the same reason and message about the same object
bumps `count` and `lastTimestamp` instead of adding an object, and old events are dropped
(here: beyond a fixed number per namespace) so a long demo does not grow without bound.
"""

from __future__ import annotations

import time

from sandbox.store.store import EVENTS, JSON, Store, timestamp

MAX_EVENTS_PER_NAMESPACE = 500


class EventRecorder:
    """Writes Event objects into the store on behalf of one component."""

    def __init__(self, store: Store, component: str, host: str | None = None) -> None:
        self._store = store
        self._component = component
        self._host = host
        self._names: dict[tuple[str, str, str, str], str] = {}
        self._order: dict[str, list[str]] = {}

    def _new_name(self, namespace: str, about: str) -> str:
        """`<object>.<time in hex>`, as the real recorder names events: names sort by age."""
        moment = time.time_ns()
        while self._store.find(EVENTS, namespace, f"{about}.{moment:x}") is not None:
            moment += 1
        return f"{about}.{moment:x}"

    def record(
        self,
        obj: JSON,
        event_type: str,
        reason: str,
        message: str,
        field_path: str | None = None,
    ) -> None:
        """Record an event about `obj` (`event_type` is Normal or Warning)."""
        metadata = obj.get("metadata") or {}
        namespace = metadata.get("namespace") or "default"
        uid = metadata.get("uid", "")
        key = (namespace, uid, reason, message + (field_path or ""))
        stamp = timestamp()
        existing_name = self._names.get(key)
        if existing_name is not None:
            existing = self._store.find(EVENTS, namespace, existing_name)
            if existing is not None:

                def bump(event: JSON) -> None:
                    event["count"] = int(event.get("count", 1)) + 1
                    event["lastTimestamp"] = stamp

                self._store.mutate(EVENTS, namespace, existing_name, bump)
                return
        source: JSON = {"component": self._component}
        if self._host:
            source["host"] = self._host
        event: JSON = {
            "metadata": {
                "name": self._new_name(namespace, metadata.get("name", "object")),
                "namespace": namespace,
            },
            "involvedObject": {
                "kind": obj.get("kind", ""),
                "namespace": namespace,
                "name": metadata.get("name", ""),
                "uid": uid,
                "apiVersion": obj.get("apiVersion", ""),
                "resourceVersion": metadata.get("resourceVersion", ""),
                **({"fieldPath": field_path} if field_path else {}),
            },
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": None,
            "count": 1,
            "type": event_type,
            "reportingComponent": self._component,
            "reportingInstance": self._host or "",
        }
        created = self._store.create(EVENTS, event, namespace)
        name = created["metadata"]["name"]
        self._names[key] = name
        order = self._order.setdefault(namespace, [])
        order.append(name)
        while len(order) > MAX_EVENTS_PER_NAMESPACE:
            oldest = order.pop(0)
            if self._store.find(EVENTS, namespace, oldest) is not None:
                self._store.delete(EVENTS, namespace, oldest)
            for stale_key in [k for k, v in self._names.items() if v == oldest]:
                del self._names[stale_key]
