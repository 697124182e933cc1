"""Server-side field validation (`fieldValidation=Strict|Warn|Ignore`), against the served
OpenAPI schemas.

The API server decodes an object strictly when asked: a field its schema does not know is a
400 under `Strict` (`strict decoding error: unknown field "spec.foo"`), a `Warning` header
under `Warn` (the default when a client does not say), and nothing under `Ignore`. kubectl asks
for `Strict` with its default `--validate=true` once the OpenAPI v3 document shows the
parameter, and prints the warnings of `--validate=warn`. For a merge or strategic-merge patch
(and server-side apply) the patch is what is checked, as upstream checks it; the patch's
directives (`$patch`, `$setElementOrder/...`, `$retainKeys`) are not fields.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams

from sandbox.apiserver.openapi import kind_schema
from sandbox.store.store import JSON, ApiError, ResourceType, bad_request

_POLICIES = ("Strict", "Warn", "Ignore")


def policy(params: QueryParams) -> str:
    """The request's field validation (Warn when unset, as the API server's default)."""
    value = params.get("fieldValidation") or "Warn"
    if value not in _POLICIES:
        raise bad_request(
            f'fieldValidation: Invalid value: "{value}": must be one of "Ignore", "Warn" or '
            '"Strict"'
        )
    return value


def _resolve(schema: JSON, every: dict[str, JSON]) -> JSON:
    seen = 0
    while "$ref" in schema and seen < 50:
        schema = every.get(str(schema["$ref"]).removeprefix("#/$defs/"), {})
        seen += 1
    return schema


def unknown_fields(schema: JSON, every: dict[str, JSON], value: Any, path: str = "") -> list[str]:
    """The dotted paths of the fields in `value` its schema does not know."""
    found: list[str] = []
    stack: list[tuple[JSON, Any, str]] = [(schema, value, path)]
    while stack:
        node, item, where = stack.pop()
        node = _resolve(node, every)
        if isinstance(item, dict):
            properties = node.get("properties")
            extra = node.get("additionalProperties")
            for key, sub in item.items():
                if not isinstance(key, str) or key.startswith("$"):
                    continue  # a patch directive
                place = f"{where}.{key}" if where else key
                if isinstance(properties, dict):
                    if key in properties:
                        stack.append((properties[key], sub, place))
                    elif not isinstance(extra, dict):
                        found.append(place)
                elif isinstance(extra, dict):
                    stack.append((extra, sub, place))
        elif isinstance(item, list) and isinstance(node.get("items"), dict):
            stack.extend(
                (node["items"], sub, f"{where}[{index}]") for index, sub in enumerate(item)
            )
    return sorted(found)


def check_fields(minor: int, rt: ResourceType, params: QueryParams, value: Any) -> dict[str, str]:
    """Apply the request's field validation to `value` (an object or a patch of one): 400
    under Strict, else the `Warning` headers to answer with."""
    chosen = policy(params)
    if chosen == "Ignore" or not isinstance(value, dict):
        return {}
    found = kind_schema(minor, rt)
    if found is None:
        return {}
    unknown = unknown_fields(found[0], found[1], value)
    if not unknown:
        return {}
    listed = [f'unknown field "{path}"' for path in unknown]
    if chosen == "Strict":
        raise ApiError(
            400,
            "BadRequest",
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
            f"strict decoding error: {', '.join(listed)}",
        )
    return {"Warning": ", ".join(f'299 - "{text}"' for text in _escaped(listed))}


def _escaped(texts: list[str]) -> list[str]:
    return [text.replace("\\", "\\\\").replace('"', '\\"') for text in texts]
