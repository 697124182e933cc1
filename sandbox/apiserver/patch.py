"""PATCH bodies as the API server applies them: JSON merge, strategic merge, JSON patch, apply.

JSON patches (RFC 6902) go through the `jsonpatch` library. The strategic merge is the part of
Kubernetes' that the sandbox's clients rely on, directives included:

- lists of objects merge by their merge key (`name` for containers, env, volumes and the like;
  `containerPort` or `port` for ports; `type` for conditions; `mountPath` for volume mounts);
  other lists are replaced, except `finalizers`, whose strings merge;
- `{"$patch": "delete", <key>: ...}` in a list removes that item (`kubectl set env NAME-`);
  `"$patch": "replace"` replaces a map or a list, `"$patch": "delete"` in a map deletes it;
- `$setElementOrder/<list>` orders the merged list; `$retainKeys` drops the map's other keys;
  `$deleteFromPrimitiveList/<list>` removes strings from a list of strings.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from sandbox.apiserver.bodies import decode
from sandbox.store.store import JSON, ApiError, bad_request

_MERGE_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "port"),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey",),
}
"""Merge keys of the object lists Kubernetes merges, by field name (first key present wins)."""

_MERGED_PRIMITIVES = {"finalizers"}

APPLY_PATCH = "application/apply-patch+yaml"
"""Server-side apply's content type (see `sandbox.apiserver.managed_fields`)."""

_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"


def _merge_key(field: str, items: list[Any]) -> str | None:
    """The key `field`'s items merge by, or None when the list is replaced whole."""
    for candidate in _MERGE_KEYS.get(field, ()):
        if all(isinstance(item, dict) and candidate in item for item in items):
            return candidate
    return None


def _merge_list(field: str, current: list[Any], patch: list[Any]) -> list[Any]:
    """A strategic merge of one list."""
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [item for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    if field in _MERGED_PRIMITIVES and all(isinstance(item, str) for item in patch):
        return current + [item for item in patch if item not in current]
    key = _merge_key(field, [item for item in patch if isinstance(item, dict)] + current)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return copy.deepcopy(patch)
    merged = copy.deepcopy(current)
    for item in patch:
        index = next((i for i, old in enumerate(merged) if old.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                merged.pop(index)
            continue
        if index is None:
            merged.append(merge_patch({}, item, strategic=True))
        else:
            merged[index] = merge_patch(merged[index], item, strategic=True)
    return merged


def _ordered(items: list[Any], order: list[Any], field: str) -> list[Any]:
    """`items` in the order `$setElementOrder` gives; items it does not name keep their place
    after the named ones."""
    key = _merge_key(field, [o for o in order if isinstance(o, dict)])
    if key is None:
        return items
    rank = {entry.get(key): index for index, entry in enumerate(order) if isinstance(entry, dict)}
    named = sorted(
        (item for item in items if isinstance(item, dict) and item.get(key) in rank),
        key=lambda item: rank[item.get(key)],
    )
    rest = [item for item in items if not (isinstance(item, dict) and item.get(key) in rank)]
    return named + rest


def merge_patch(target: Any, patch: Any, strategic: bool = False) -> Any:
    """RFC 7386 merge patch; `strategic` adds Kubernetes' list merging and directives."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if strategic:
        directive = patch.get("$patch")
        if directive == "delete":
            return None
        if directive == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
        if directive not in (None, "merge"):
            raise bad_request(f"unknown patch directive $patch: {directive!r}")
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif strategic and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], value)
        elif strategic and isinstance(value, list):
            result[key] = _merge_list(key, [], value)
        else:
            merged = merge_patch(result.get(key), value, strategic)
            if merged is None:
                result.pop(key, None)  # a map deleted with "$patch": "delete"
            else:
                result[key] = merged
    if strategic:
        _directives(result, patch)
    return result


def _directives(result: JSON, patch: JSON) -> None:
    """The map-level directives of a strategic merge patch, applied to `result` in place."""
    for key, value in patch.items():
        if key.startswith(_ORDER) and isinstance(value, list):
            field = key[len(_ORDER) :]
            if isinstance(result.get(field), list):
                result[field] = _ordered(result[field], value, field)
        elif key.startswith(_DELETE_FROM) and isinstance(value, list):
            field = key[len(_DELETE_FROM) :]
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in value]
        elif key == "$retainKeys":
            if not isinstance(value, list):
                raise bad_request("$retainKeys must be a list of field names")
            for name in [k for k in result if k not in value]:
                del result[name]
        elif key.startswith("$") and key != "$patch":
            raise bad_request(f"unknown strategic merge patch directive {key!r}")


def json_patch(target: JSON, operations: list[JSON]) -> JSON:
    """RFC 6902 JSON patch (add, replace, remove, test, copy, move); 422 when it does not apply."""
    try:
        document = jsonpatch.JsonPatch(operations).apply(target)
    except jsonpatch.JsonPatchTestFailed as error:
        raise ApiError(422, "Invalid", f"the test operation failed: {error}") from None
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        KeyError,
        IndexError,
        TypeError,
        ValueError,
    ) as error:
        raise ApiError(422, "Invalid", f"the JSON patch could not be applied: {error}") from None
    if not isinstance(document, dict):
        raise bad_request("a JSON patch must leave an object")
    return document


def apply_patch(target: JSON, body: bytes, content_type: str) -> JSON:
    """Apply a PATCH body of any content type Kubernetes accepts."""
    media = content_type.split(";")[0].strip()
    patch = decode(body or b"{}", media)
    if media == "application/json-patch+json":
        if not isinstance(patch, list) or not all(isinstance(op, dict) for op in patch):
            raise bad_request("a JSON patch must be a list of operations")
        return json_patch(target, patch)
    if media in (
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ):
        if not isinstance(patch, dict):
            raise bad_request("a merge patch must be an object")
        result = merge_patch(target, patch, strategic=media != "application/merge-patch+json")
        if not isinstance(result, dict):
            raise bad_request("the patch deleted the whole object")
        return result
    raise ApiError(
        415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {media}"
    )
