"""Server-side apply and field ownership: `metadata.managedFields`, as the API server keeps it.

The subset of sigs.k8s.io/structured-merge-diff that kubectl's `apply --server-side` needs for
the sandbox's manifests, read from upstream (`fieldpath/serialize.go` for the `FieldsV1`
format, `merge/update.go` for the apply and update rules, `internal/conflict.go` for the
conflict message). No maintained Python implementation exists, so this is one:

- A field set is a set of paths; a path element is `f:<field>`, `k:<JSON of the list-map
  keys>` for an item of a list of type `map`, or `v:<JSON value>` for an item of a `set`.
  Atomic maps and lists (and scalars) are leaves; an item of a keyed list is itself a member,
  written `".": {}` beside its fields, as upstream writes it.
- An apply (`application/apply-patch+yaml`, a `fieldManager` required) merges the applied
  configuration into the object, removes the fields the manager applied before and no longer
  applies (unless another manager owns them), and takes ownership of what it applied. A field
  another manager owns whose value the apply would change is a conflict: 409 with one cause per
  field, unless `force=true`, which takes the field from its owner.
- Any other write (create, update, patch) records what it changed under its manager (the
  `fieldManager` parameter, else the User-Agent's product) with operation `Update`, and takes
  those fields from every other manager, as upstream does without conflicts.

Identity and server-owned fields (`apiVersion`, `kind`, `metadata.name`, `namespace`, `uid`,
`resourceVersion`, `generation`, `creationTimestamp`, `managedFields`) and `status` (of the main
resource) are never owned.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from sandbox.apiserver.openapi import kind_schema
from sandbox.store.store import JSON, ApiError, ResourceType, timestamp

Path = tuple[str, ...]

_UNOWNED_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)


def _resolve(schema: Any, every: dict[str, JSON]) -> JSON:
    for _ in range(50):
        if not isinstance(schema, dict) or "$ref" not in schema:
            break
        schema = every.get(str(schema["$ref"]).removeprefix("#/$defs/"), {})
    return schema if isinstance(schema, dict) else {}


def _item_key(item: Any, keys: list[str]) -> str | None:
    if not isinstance(item, dict):
        return None
    return "k:" + json.dumps(
        {key: item[key] for key in keys if key in item}, sort_keys=True, separators=(",", ":")
    )


def _walk(value: Any, schema: JSON, every: dict[str, JSON], path: Path, out: set[Path]) -> None:
    schema = _resolve(schema, every)
    if isinstance(value, dict):
        if schema.get("x-kubernetes-map-type") == "atomic" or not value:
            out.add(path)
            return
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            child = properties.get(key, extra if isinstance(extra, dict) else {})
            _walk(sub, child, every, (*path, f"f:{key}"), out)
    elif isinstance(value, list):
        kind = schema.get("x-kubernetes-list-type")
        items = schema.get("items") or {}
        keys = schema.get("x-kubernetes-list-map-keys") or []
        if kind == "map" and keys:
            for item in value:
                element = _item_key(item, keys)
                if element is None:
                    continue
                out.add((*path, element))
                for key, sub in item.items():
                    _walk(sub, _child(items, key, every), every, (*path, element, f"f:{key}"), out)
        elif kind == "set":
            out.update((*path, "v:" + json.dumps(item, separators=(",", ":"))) for item in value)
        else:
            out.add(path)
    else:
        out.add(path)


def _child(schema: JSON, key: str, every: dict[str, JSON]) -> JSON:
    resolved = _resolve(schema, every)
    found = (resolved.get("properties") or {}).get(key)
    return found if isinstance(found, dict) else {}


def owned_paths(obj: JSON, rt: ResourceType, minor: int) -> set[Path]:
    """The field set of an object: every field it sets, as ownership counts them."""
    schemas = kind_schema(minor, rt)
    schema, every = schemas if schemas is not None else ({}, {})
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        body["metadata"] = {k: v for k, v in metadata.items() if k not in _UNOWNED_METADATA}
        if not body["metadata"]:
            del body["metadata"]
    out: set[Path] = set()
    for key, sub in body.items():
        _walk(sub, _child(schema, key, every), every, (f"f:{key}",), out)
    return out


def to_fields_v1(paths: set[Path]) -> JSON:
    """A field set in the `FieldsV1` form `managedFields` carries."""
    tree: JSON = {}
    for path in sorted(paths):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    for path in paths:
        node = tree
        for element in path:
            node = node[element]
        if node:
            node["."] = {}
    return tree


def from_fields_v1(tree: Any, prefix: Path = ()) -> set[Path]:
    """The paths of a `FieldsV1` field set."""
    paths: set[Path] = set()
    if not isinstance(tree, dict):
        return paths
    for element, sub in tree.items():
        if element == ".":
            paths.add(prefix)
        elif isinstance(sub, dict) and sub:
            paths |= from_fields_v1(sub, (*prefix, element))
        else:
            paths.add((*prefix, element))
    return paths


_MISSING = object()


def value_at(obj: Any, path: Path) -> Any:
    """The value a path names in an object (`_MISSING` when absent)."""
    node = obj
    for element in path:
        if element.startswith("f:") and isinstance(node, dict):
            node = node.get(element[2:], _MISSING)
        elif element.startswith("k:") and isinstance(node, list):
            wanted = json.loads(element[2:])
            node = next(
                (
                    item
                    for item in node
                    if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items())
                ),
                _MISSING,
            )
        elif element.startswith("v:") and isinstance(node, list):
            wanted = json.loads(element[2:])
            node = wanted if wanted in node else _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def _differs(before: Any, after: Any, path: Path) -> bool:
    """Whether a field changed between two objects; a list item (`k:`, `v:`) only by whether
    it exists, since its fields are owned one by one."""
    old, new = value_at(before, path), value_at(after, path)
    if path and path[-1][:2] in ("k:", "v:"):
        return (old is _MISSING) != (new is _MISSING)
    return bool(old != new)


def _remove(obj: Any, path: Path) -> None:
    """Remove the field (or list item) a path names, if present."""
    parent = value_at(obj, path[:-1]) if len(path) > 1 else obj
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last[:2] in ("k:", "v:") and isinstance(parent, list):
        target = value_at(obj, path)
        if target is not _MISSING:
            parent.remove(target)


def field_path(path: Path) -> str:
    """A path as upstream prints it in conflicts: `.spec.containers[name="app"].image`."""
    text = ""
    for element in path:
        if element.startswith("f:"):
            text += "." + element[2:]
        elif element.startswith("k:"):
            keys = json.loads(element[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        else:
            text += f"[={element[2:]}]"
    return text


def _entries(obj: JSON | None) -> list[JSON]:
    if obj is None:
        return []
    found = (obj.get("metadata") or {}).get("managedFields") or []
    return [copy.deepcopy(entry) for entry in found if isinstance(entry, dict)]


def _entry(
    manager: str, operation: str, rt: ResourceType, paths: set[Path], sub: str | None
) -> JSON:
    entry: JSON = {
        "manager": manager,
        "operation": operation,
        "apiVersion": rt.api_version,
        "time": timestamp(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(paths),
    }
    if sub:
        entry["subresource"] = sub
    return entry


def _store(obj: JSON, entries: list[JSON]) -> None:
    kept = [entry for entry in entries if entry.get("fieldsV1")]
    obj.setdefault("metadata", {})["managedFields"] = kept


def record_update(
    old: JSON | None, new: JSON, rt: ResourceType, minor: int, manager: str, sub: str | None
) -> None:
    """Record a non-apply write in `new`'s managedFields: `manager` owns what it changed."""
    new_paths = owned_paths(new, rt, minor)
    changed = {path for path in new_paths if old is None or _differs(old, new, path)}
    entries = _entries(old)
    for entry in entries:
        paths = from_fields_v1(entry.get("fieldsV1"))
        kept = {p for p in paths - changed if value_at(new, p) is not _MISSING}
        entry["fieldsV1"] = to_fields_v1(kept) if kept else {}
    mine = next(
        (
            e
            for e in entries
            if e.get("manager") == manager
            and e.get("operation") == "Update"
            and e.get("subresource") == sub
        ),
        None,
    )
    if mine is None:
        if changed:
            entries.append(_entry(manager, "Update", rt, changed, sub))
    else:
        merged = from_fields_v1(mine.get("fieldsV1")) | changed
        mine.update(_entry(manager, "Update", rt, merged, sub))
    _store(new, entries)


def server_side_apply(
    current: JSON | None,
    applied: JSON,
    rt: ResourceType,
    minor: int,
    manager: str,
    *,
    force: bool,
    merge: Any,
) -> JSON:
    """The object after `manager` applies `applied` to `current` (None: it is created);
    409 with the conflicts unless `force`. `merge(target, patch)` is the structural merge."""
    applied_paths = owned_paths(applied, rt, minor)
    base = copy.deepcopy(current) if current is not None else {}
    result = merge(base, {k: v for k, v in applied.items() if k != "status"})
    entries = _entries(current)
    mine = next(
        (e for e in entries if e.get("manager") == manager and e.get("operation") == "Apply"),
        None,
    )
    others = [e for e in entries if e is not mine]
    owned_by_others: set[Path] = set()
    conflicts: list[tuple[Path, JSON]] = []
    for entry in others:
        paths = from_fields_v1(entry.get("fieldsV1"))
        owned_by_others |= paths
        if entry.get("manager") == manager:
            continue
        for path in sorted(paths & applied_paths):
            if current is not None and _differs(current, result, path):
                conflicts.append((path, entry))
    if conflicts and not force:
        raise _conflict_error(conflicts, rt, str(applied.get("metadata", {}).get("name", "")))
    for path, entry in conflicts:
        paths = from_fields_v1(entry.get("fieldsV1")) - {path}
        entry["fieldsV1"] = to_fields_v1(paths) if paths else {}
    if mine is not None:
        # What this manager applied before and no longer applies goes, unless shared.
        for path in sorted(from_fields_v1(mine.get("fieldsV1")) - applied_paths, reverse=True):
            if path not in owned_by_others:
                _remove(result, path)
    new_entry = _entry(manager, "Apply", rt, applied_paths, None)
    entries = [new_entry if e is mine else e for e in entries]
    if mine is None:
        entries.append(new_entry)
    _store(result, entries)
    return dict(result)


def _conflict_error(conflicts: list[tuple[Path, JSON]], rt: ResourceType, name: str) -> ApiError:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{entry.get("manager")}" using {entry.get("apiVersion")}',
            "field": field_path(path),
        }
        for path, entry in conflicts
    ]
    count = len(causes)
    if count == 1:
        message = f"Apply failed with 1 conflict: {causes[0]['message']}: {causes[0]['field']}"
    else:
        listed = "\n".join(f"{c['message']}: {c['field']}" for c in causes)
        message = f"Apply failed with {count} conflicts: {listed}"
    return ApiError(
        409,
        "Conflict",
        message,
        {"name": name, "group": rt.group, "kind": rt.plural, "causes": causes},
    )


def manager_of(params: Any, user_agent: str) -> str:
    """The field manager of a write: `fieldManager`, else the User-Agent's product name."""
    given = params.get("fieldManager")
    if given:
        return str(given)
    return user_agent.split("/")[0] or "unknown"
