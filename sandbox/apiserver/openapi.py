"""The OpenAPI documents kubectl reads (`/openapi/v3` and its per-group-version documents, and
`/openapi/v2`), built from the Kubernetes schemas `kubernetes-validate` ships, not written by
hand.

`kubernetes-validate` ships, per Kubernetes minor version, every definition of the API
(`_definitions.json`) as JSON Schema: the OpenAPI definitions with `type: [T, "null"]` and
`$ref: "#/$defs/NAME"`, and the Kubernetes extensions kept (`x-kubernetes-group-version-kind`,
patch merge keys and strategies, list types and map keys). They are turned back into the
OpenAPI shape the API server serves (`#/components/schemas/NAME` in v3, `#/definitions/NAME`
in v2; int-or-string as `x-kubernetes-int-or-string`), and only the definitions the served
kinds reach are served, so discovery and OpenAPI agree on what exists. The served kinds come
from `RESOURCE_TYPES`: a kind added there (a ReplicaSet) appears here with no change.

Each kind gets the paths kubectl looks at: the PATCH operation carries the kind's
`x-kubernetes-group-version-kind` and the `fieldValidation` parameter, which is how kubectl
(`resource.QueryParamVerifierV3`) decides to leave validation to the server (`Strict`).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from sandbox.store.store import JSON, RESOURCE_TYPES, ResourceType

_VIRTUAL_GROUPS = ("metrics.k8s.io", "authorization.k8s.io", "authentication.k8s.io")
"""Groups whose resources the sandbox answers without storing them: no schema is served."""

_EXTRA_DEFINITIONS = (
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
)


def _schema_folder(minor: int) -> Path:
    """The shipped schemas of the newest Kubernetes version not newer than `minor`."""
    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    shipped = sorted(
        (int(match.group(1)), folder)
        for folder in root.iterdir()
        if (match := re.fullmatch(r"v1\.(\d+)\.0-local", folder.name))
    )
    if not shipped:
        raise RuntimeError(f"kubernetes-validate ships no schemas under {root}")
    older = [entry for entry in shipped if entry[0] <= minor]
    return older[-1][1] if older else shipped[0][1]


def _to_openapi(node: Any, prefix: str) -> Any:
    """A JSON Schema node of kubernetes-validate back in OpenAPI's shape."""
    if isinstance(node, list):
        return [_to_openapi(item, prefix) for item in node]
    if not isinstance(node, dict):
        return node
    alternatives = node.get("oneOf")
    if isinstance(alternatives, list) and {
        json.dumps(alt.get("type")) for alt in alternatives if isinstance(alt, dict)
    } <= {'["string", "null"]', '["integer", "null"]', '["number", "null"]'}:
        # IntOrString and Quantity, as the API server's v3 documents describe them.
        result: JSON = {"x-kubernetes-int-or-string": True}
        if "description" in node:
            result["description"] = node["description"]
        return result
    converted: JSON = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            converted[key] = prefix + value.removeprefix("#/$defs/")
        elif key == "type" and isinstance(value, list):
            kept = [item for item in value if item != "null"]
            converted[key] = kept[0] if len(kept) == 1 else kept
        elif key in ("properties", "patternProperties") and isinstance(value, dict):
            converted[key] = {name: _to_openapi(sub, prefix) for name, sub in value.items()}
        else:
            converted[key] = _to_openapi(value, prefix)
    return converted


@functools.cache
def definitions(minor: int) -> dict[str, JSON]:
    """Every shipped definition of Kubernetes 1.`minor` (JSON Schema shape, `#/$defs/` refs)."""
    path = _schema_folder(minor) / "_definitions.json"
    loaded: dict[str, JSON] = json.loads(path.read_text())["$defs"]
    return loaded


def served_kinds() -> list[ResourceType]:
    """The resources whose objects are stored, so have a schema."""
    return [rt for rt in RESOURCE_TYPES if rt.group not in _VIRTUAL_GROUPS]


def _gvk(rt: ResourceType) -> JSON:
    return {"group": rt.group, "version": rt.version, "kind": rt.kind}


@functools.cache
def definition_names(minor: int) -> dict[str, str]:
    """The definition name of each served kind, by `group/plural`."""
    found: dict[str, str] = {}
    for name, schema in definitions(minor).items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            for rt in served_kinds():
                if gvk == _gvk(rt) and not name.endswith("List"):
                    found[rt.key] = name
    return found


def _reachable(minor: int, roots: list[str]) -> list[str]:
    """`roots` and every definition they refer to, directly or not."""
    every = definitions(minor)
    seen: set[str] = set()
    stack = [root for root in roots if root in every]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        text = json.dumps(every[name])
        stack.extend(ref for ref in re.findall(r'"#/\$defs/([^"]+)"', text) if ref not in seen)
    return sorted(seen)


def _group_versions() -> dict[str, list[ResourceType]]:
    """Served kinds by the OpenAPI v3 path of their group-version (`api/v1`, `apis/apps/v1`)."""
    grouped: dict[str, list[ResourceType]] = {}
    for rt in served_kinds():
        key = f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}"
        grouped.setdefault(key, []).append(rt)
    return grouped


_WRITE_PARAMETERS = [
    {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for name in ("dryRun", "fieldManager", "fieldValidation")
]


def _operations(rt: ResourceType, ref: str, prefix: str) -> dict[str, JSON]:
    """Paths and operations of one kind (object and collection), as the API server lists them."""
    base = f"/{'apis/' + rt.group if rt.group else 'api'}/{rt.version}"
    scope = "/namespaces/{namespace}" if rt.namespaced else ""
    collection = f"{base}{scope}/{rt.plural}"
    schema = {"$ref": prefix + ref}
    body = {"content": {"application/json": {"schema": schema}}}
    ok = {"200": {"description": "OK", **body}}

    def operation(action: str, *, parameters: list[JSON] | None = None, **more: Any) -> JSON:
        return {
            "operationId": f"{action}{rt.kind}",
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": _gvk(rt),
            "parameters": parameters or [],
            "responses": ok,
            **more,
        }

    patch_body = {
        "content": {
            media: {"schema": {"$ref": prefix + "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}
            for media in (
                "application/apply-patch+yaml",
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            )
        }
    }
    force = {"name": "force", "in": "query", "schema": {"type": "boolean"}}
    return {
        collection: {
            "get": operation("list"),
            "post": operation("post", parameters=_WRITE_PARAMETERS, requestBody=body),
        },
        f"{collection}/{{name}}": {
            "get": operation("get"),
            "put": operation("put", parameters=_WRITE_PARAMETERS, requestBody=body),
            "patch": operation(
                "patch", parameters=[*_WRITE_PARAMETERS, force], requestBody=patch_body
            ),
            "delete": operation("delete"),
        },
    }


def _v3_document(minor: int, group_version: str) -> JSON:
    prefix = "#/components/schemas/"
    kinds = _group_versions()[group_version]
    names = definition_names(minor)
    every = definitions(minor)
    paths: JSON = {}
    roots = list(_EXTRA_DEFINITIONS)
    for rt in kinds:
        if rt.key in names:
            paths.update(_operations(rt, names[rt.key], prefix))
            roots.append(names[rt.key])
    schemas = {name: _to_openapi(every[name], prefix) for name in _reachable(minor, roots)}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kube-llm sandbox)", "version": f"v1.{minor}.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _encoded(document: JSON) -> tuple[bytes, str]:
    text = json.dumps(document, sort_keys=True).encode()
    return text, hashlib.sha512(text).hexdigest().upper()


@functools.cache
def v3_documents(minor: int) -> dict[str, tuple[bytes, str]]:
    """Each group-version's OpenAPI v3 document (JSON) and its hash, by path (`apis/apps/v1`)."""
    return {path: _encoded(_v3_document(minor, path)) for path in _group_versions()}


def v3_index(minor: int) -> JSON:
    """`/openapi/v3`: where each group-version's document is, with the hash clients cache by."""
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
            for path, (_text, digest) in v3_documents(minor).items()
        }
    }


@functools.cache
def v2_document(minor: int) -> bytes:
    """`/openapi/v2` (Swagger 2.0, JSON): every served kind's paths and definitions."""
    prefix = "#/definitions/"
    names = definition_names(minor)
    every = definitions(minor)
    paths: JSON = {}
    for rt in served_kinds():
        if rt.key in names:
            for path, operations in _operations(rt, names[rt.key], prefix).items():
                paths[path] = {
                    method: {
                        key: value
                        for key, value in copy.deepcopy(op).items()
                        if key not in ("requestBody",)
                    }
                    | {
                        "responses": {
                            "200": {"description": "OK", "schema": {"$ref": prefix + names[rt.key]}}
                        }
                    }
                    for method, op in operations.items()
                }
    roots = [*_EXTRA_DEFINITIONS, *names.values()]
    document = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes (kube-llm sandbox)", "version": f"v1.{minor}.0"},
        "paths": paths,
        "definitions": {
            name: _to_openapi(every[name], prefix) for name in _reachable(minor, roots)
        },
    }
    return json.dumps(document, sort_keys=True).encode()


def kind_schema(minor: int, rt: ResourceType) -> tuple[JSON, dict[str, JSON]] | None:
    """The JSON Schema of `rt`'s objects and the definitions it refers to, if shipped."""
    name = definition_names(minor).get(rt.key)
    if name is None:
        return None
    every = definitions(minor)
    return every[name], every
