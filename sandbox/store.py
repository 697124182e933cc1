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
import datetime as dt
import functools
import json
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True)
class ResourceType:
    """One API resource (plural name in an API group and version) the sandbox serves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """The `apiVersion` field of this resource's objects."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Identity of the resource across versions: `group/plural`."""
        return f"{self.group}/{self.plural}"

    @property
    def singular(self) -> str:
        """Lower-case kind, as discovery reports it."""
        return self.kind.lower()


_RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), _RW, ("status",)),
    ResourceType(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        ("po",),
        _RW,
        ("status", "eviction", "proxy", "log"),
        ("all",),
    ),
    ResourceType(
        "", "v1", "services", "Service", True, ("svc",), _RW, ("status", "proxy"), ("all",)
    ),
    ResourceType("", "v1", "endpoints", "Endpoints", True, ("ep",), _RW),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",), _RW),
    ResourceType("", "v1", "events", "Event", True, ("ev",), _RW),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), _RW, ("token",)),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), _RW, ("status",)),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        ("deploy",),
        _RW,
        ("status", "scale"),
        ("all",),
    ),
    ResourceType(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        ("hpa",),
        _RW,
        ("status",),
        ("all",),
    ),
    ResourceType(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        ("pdb",),
        _RW,
        ("status",),
    ),
    ResourceType(
        "networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",), _RW
    ),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True, (), _RW),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, (), _RW),
    ResourceType(
        "metrics.k8s.io",
        "v1beta1",
        "pods",
        "PodMetrics",
        True,
        (),
        ("get", "list"),
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        False,
        (),
        ("create",),
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        False,
        (),
        ("create",),
    ),
    ResourceType(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        False,
        (),
        ("create",),
    ),
)


def resource_type(group: str, plural: str) -> ResourceType | None:
    """The served resource `plural` in `group`, if any."""
    for rt in RESOURCE_TYPES:
        if rt.group == group and rt.plural == plural:
            return rt
    return None


def resource_for_kind(api_version: str, kind: str) -> ResourceType | None:
    """The served resource for a manifest's `apiVersion` and `kind`, if any."""
    group = api_version.rpartition("/")[0]
    virtual = ("metrics.k8s.io", "authorization.k8s.io", "authentication.k8s.io")
    for rt in RESOURCE_TYPES:
        if rt.group == group and rt.kind == kind and rt.group not in virtual:
            return rt
    return None


def _must(group: str, plural: str) -> ResourceType:
    rt = resource_type(group, plural)
    assert rt is not None, plural
    return rt


PODS = _must("", "pods")
SERVICES = _must("", "services")
EVENTS = _must("", "events")
CONFIGMAPS = _must("", "configmaps")
NAMESPACES = _must("", "namespaces")
NODES = _must("", "nodes")
ENDPOINTS = _must("", "endpoints")
SERVICEACCOUNTS = _must("", "serviceaccounts")
ROLES = _must("rbac.authorization.k8s.io", "roles")
ROLEBINDINGS = _must("rbac.authorization.k8s.io", "rolebindings")
DEPLOYMENTS = _must("apps", "deployments")
HPAS = _must("autoscaling", "horizontalpodautoscalers")
PDBS = _must("policy", "poddisruptionbudgets")


def now() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.UTC)


def timestamp(moment: dt.datetime | None = None) -> str:
    """RFC 3339 time with second precision, as Kubernetes writes `metav1.Time`."""
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> dt.datetime:
    """Parse a Kubernetes timestamp (with or without fractional seconds)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def success_status(code: int = 200, details: JSON | None = None) -> JSON:
    """A `Status` object for a successful call."""
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


class ApiError(Exception):
    """An error the API server answers with a `Status` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> JSON:
        """The `Status` object for this error."""
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _object_error(rt: ResourceType, name: str, code: int, reason: str, message: str) -> ApiError:
    """An error about one named object, with the `details` Kubernetes gives it."""
    return ApiError(code, reason, message, {"name": name, "group": rt.group, "kind": rt.plural})


def _group_resource(rt: ResourceType) -> str:
    """`plural.group`, or the plural alone for the core group, as error messages name it."""
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def not_found(rt: ResourceType, name: str) -> ApiError:
    """The Kubernetes 404 for a missing object."""
    return _object_error(rt, name, 404, "NotFound", f'{_group_resource(rt)} "{name}" not found')


def already_exists(rt: ResourceType, name: str) -> ApiError:
    """The Kubernetes 409 for a create over an existing object."""
    message = f'{_group_resource(rt)} "{name}" already exists'
    return _object_error(rt, name, 409, "AlreadyExists", message)


def conflict(rt: ResourceType, name: str) -> ApiError:
    """The Kubernetes 409 for an update based on a stale resourceVersion."""
    message = (
        f'Operation cannot be fulfilled on {_group_resource(rt)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    return _object_error(rt, name, 409, "Conflict", message)


def gone(rv: int, oldest: int) -> ApiError:
    """The Kubernetes 410 for a resourceVersion older than the retained history."""
    return ApiError(410, "Expired", f"too old resource version: {rv} ({oldest})")


def bad_request(message: str) -> ApiError:
    """A 400 Bad Request."""
    return ApiError(400, "BadRequest", message)


# ---------------------------------------------------------------------------------------------
# Selectors


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector."""

    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether `labels` satisfy this clause."""
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!":
            return self.key not in labels
        if self.operator in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        # "!=" and "notin" match objects without the key, as Kubernetes does.
        return labels.get(self.key) not in self.values


_SET_RE = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    """Split a selector at commas outside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a label selector string (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`)."""
    if not text:
        return []
    requirements: list[Requirement] = []
    for clause in _split_selector(text):
        set_match = _SET_RE.match(clause)
        if set_match:
            values = tuple(v.strip() for v in set_match.group(3).split(",") if v.strip())
            requirements.append(Requirement(set_match.group(1), set_match.group(2), values))
        elif "!=" in clause:
            key, value = clause.split("!=", 1)
            requirements.append(Requirement(key.strip(), "!=", (value.strip(),)))
        elif "==" in clause or "=" in clause:
            key, value = clause.split("==", 1) if "==" in clause else clause.split("=", 1)
            requirements.append(Requirement(key.strip(), "=", (value.strip(),)))
        elif clause.startswith("!"):
            requirements.append(Requirement(clause[1:].strip(), "!"))
        elif re.fullmatch(r"[A-Za-z0-9./_-]+", clause):
            requirements.append(Requirement(clause, "exists"))
        else:
            raise bad_request(f"unable to parse requirement: {clause!r}")
    return requirements


def selector_from_label_selector(selector: JSON | None) -> list[Requirement]:
    """Requirements from a `LabelSelector` object (`matchLabels`, `matchExpressions`)."""
    if not selector:
        return []
    requirements = [
        Requirement(key, "=", (str(value),))
        for key, value in (selector.get("matchLabels") or {}).items()
    ]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expression in selector.get("matchExpressions") or []:
        requirements.append(
            Requirement(
                expression["key"],
                operators[expression["operator"]],
                tuple(expression.get("values") or ()),
            )
        )
    return requirements


def labels_match(requirements: Iterable[Requirement], labels: dict[str, str] | None) -> bool:
    """Whether labels satisfy every requirement."""
    present = labels or {}
    return all(requirement.matches(present) for requirement in requirements)


def _field(obj: JSON, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    return str(value)


def parse_field_selector(text: str | None) -> list[tuple[str, bool, str]]:
    """Parse a field selector into (path, equal, value) triples."""
    if not text:
        return []
    clauses: list[tuple[str, bool, str]] = []
    for clause in _split_selector(text):
        if "!=" in clause:
            path, value = clause.split("!=", 1)
            clauses.append((path.strip(), False, value.strip()))
        elif "=" in clause:
            path, value = clause.split("==", 1) if "==" in clause else clause.split("=", 1)
            clauses.append((path.strip(), True, value.strip()))
        else:
            raise bad_request(f"invalid selector: {clause!r}; can't understand {clause!r}")
    return clauses


def fields_match(clauses: Iterable[tuple[str, bool, str]], obj: JSON) -> bool:
    """Whether an object satisfies field selector clauses (any dotted path)."""
    return all((_field(obj, path) == value) == equal for path, equal, value in clauses)


# ---------------------------------------------------------------------------------------------
# Store


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
    ) -> list[JSON]:
        """Copies of matching objects, ordered by namespace and name."""
        items = []
        for (ns, _name), obj in sorted(self._objects[rt.key].items()):
            if namespace and rt.namespaced and ns != namespace:
                continue
            if label_selector and not labels_match(label_selector, obj["metadata"].get("labels")):
                continue
            if field_selector and not fields_match(field_selector, obj):
                continue
            items.append(copy.deepcopy(obj))
        return items

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
