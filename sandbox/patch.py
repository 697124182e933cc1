"""PATCH bodies as the API server applies them: JSON merge, strategic merge, JSON patch, apply.

The strategic merge is the part of Kubernetes' that the sandbox's clients rely on: lists of
named objects (containers, env) merge by `name`; other lists are replaced.
"""

from __future__ import annotations

import json
from typing import Any

from sandbox.bodies import decode
from sandbox.store import JSON, ApiError, bad_request


def merge_patch(target: Any, patch: Any, strategic: bool = False) -> Any:
    """RFC 7386 merge patch; `strategic` also merges lists of named objects by `name`."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif (
            strategic
            and isinstance(value, list)
            and isinstance(result.get(key), list)
            and all(isinstance(v, dict) and "name" in v for v in value)
            and all(isinstance(v, dict) and "name" in v for v in result[key])
        ):
            merged = {item["name"]: item for item in result[key]}
            for item in value:
                merged[item["name"]] = merge_patch(merged.get(item["name"], {}), item, True)
            result[key] = list(merged.values())
        else:
            result[key] = merge_patch(result.get(key), value, strategic)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json_patch(target: JSON, operations: list[JSON]) -> JSON:
    """RFC 6902 JSON patch (add, replace, remove, test, copy, move)."""
    document: Any = json.loads(json.dumps(target))

    def parent_of(parts: list[str]) -> tuple[Any, str]:
        node = document
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, parts[-1]

    def read(path: str) -> Any:
        node = document
        for part in _pointer(path) if path else []:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def remove(path: str) -> Any:
        parent, last = parent_of(_pointer(path))
        return parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)

    def add(path: str, value: Any) -> None:
        parent, last = parent_of(_pointer(path))
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[last] = value

    try:
        for operation in operations:
            op, path = operation.get("op"), operation.get("path", "")
            if op == "add":
                add(path, operation.get("value"))
            elif op == "replace":
                remove(path)
                add(path, operation.get("value"))
            elif op == "remove":
                remove(path)
            elif op == "test":
                if read(path) != operation.get("value"):
                    raise ApiError(422, "Invalid", f"the test operation on {path} failed")
            elif op in ("copy", "move"):
                value = read(operation.get("from", ""))
                if op == "move":
                    remove(operation.get("from", ""))
                add(path, json.loads(json.dumps(value)))
            else:
                raise bad_request(f"unknown JSON patch operation {op!r}")
    except (KeyError, IndexError, ValueError, TypeError) as error:
        raise ApiError(422, "Invalid", f"the JSON patch could not be applied: {error}") from error
    if not isinstance(document, dict):
        raise bad_request("a JSON patch must leave an object")
    return document


def apply_patch(target: JSON, body: bytes, content_type: str) -> JSON:
    """Apply a PATCH body of any content type Kubernetes accepts."""
    media = content_type.split(";")[0].strip()
    patch = decode(body or b"{}", media)
    if media == "application/json-patch+json":
        if not isinstance(patch, list):
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
        assert isinstance(result, dict)
        return result
    raise ApiError(
        415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {media}"
    )
