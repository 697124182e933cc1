"""Writes: create, replace and patch (server-side apply included), with field validation and
field ownership (`metadata.managedFields`) recorded as the API server records them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.apiserver.bodies import decode, flag, query_dry_run, read_body, read_object
from sandbox.apiserver.context import ServerContext
from sandbox.apiserver.field_validation import check_fields
from sandbox.apiserver.managed_fields import manager_of, record_update, server_side_apply
from sandbox.apiserver.patch import APPLY_PATCH, apply_patch, merge_patch
from sandbox.apiserver.routing import Target
from sandbox.apiserver.validation import admit_create, validate
from sandbox.store.store import JSON, ApiError, bad_request


async def create(server: ServerContext, request: Request, target: Target) -> Response:
    """POST to a collection."""
    body = await read_object(request)
    warnings = _check_fields(server, request, target, body)
    admit_create(server.store, target.rt, target.namespace, body)
    _record(server, request, target, None, body)
    created = server.store.create(target.rt, body, target.namespace, dry_run=query_dry_run(request))
    return JSONResponse(created, status_code=201, headers=warnings)


async def replace(server: ServerContext, request: Request, target: Target) -> Response:
    assert target.name is not None
    body = await read_object(request)
    warnings = _check_fields(server, request, target, body)
    metadata = body.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise bad_request("metadata: Invalid value: must be an object")
    if metadata.get("name") not in (None, target.name):
        raise bad_request("the name of the object does not match the name on the URL")
    metadata["name"] = target.name
    metadata["namespace"] = target.namespace or ""
    current = server.store.get(target.rt, target.namespace or "", target.name)
    _record(server, request, target, current, body)
    if target.subresource == "status":
        validate(target.rt, {**current, "status": body.get("status")})
    else:
        validate(target.rt, {**body, "metadata": {**current["metadata"], **metadata}})
    updated = server.store.update(
        target.rt,
        body,
        subresource=target.subresource,
        check_version=True,
        dry_run=query_dry_run(request),
    )
    return JSONResponse(updated, headers=warnings)


def _check_fields(
    server: ServerContext, request: Request, target: Target, value: Any
) -> dict[str, str]:
    """Field validation as the request asks (400 under Strict), or its warnings."""
    if target.subresource not in (None, "status"):
        return {}
    return check_fields(server.version.minor, target.rt, request.query_params, value)


async def patch(server: ServerContext, request: Request, target: Target) -> Response:
    assert target.name is not None
    namespace = target.namespace or ""
    body, content_type = await read_body(request), request.headers.get("content-type", "")
    params = request.query_params
    applying = content_type.split(";")[0].strip() == APPLY_PATCH
    if params.get("force") and not applying:
        raise ApiError(422, "Invalid", "force: Forbidden: may not be specified for non-apply patch")
    if applying:
        current = server.store.find(target.rt, namespace, target.name)
        patched = _apply(server, request, target, current, decode(body, content_type))
    else:
        current = server.store.get(target.rt, namespace, target.name)
        patched = apply_patch(current, body, content_type)
    # The patch is checked for unknown fields (a JSON patch by its result), as upstream.
    warnings = _check_fields(
        server,
        request,
        target,
        patched if "json-patch" in content_type else decode(body, content_type),
    )
    if not isinstance(patched.get("metadata", {}), dict):
        raise bad_request("metadata: Invalid value: must be an object")
    patched.setdefault("metadata", {})
    patched["metadata"]["name"] = target.name
    patched["metadata"]["namespace"] = namespace
    if current is None:
        # Server-side apply of an object that does not exist creates it.
        admit_create(server.store, target.rt, target.namespace, patched)
        created = server.store.create(
            target.rt, patched, target.namespace, dry_run=query_dry_run(request)
        )
        return JSONResponse(created, status_code=201, headers=warnings)
    if not applying:
        _record(server, request, target, current, patched)
    validate(target.rt, patched)
    updated = server.store.update(
        target.rt, patched, subresource=target.subresource, dry_run=query_dry_run(request)
    )
    return JSONResponse(updated, headers=warnings)


def _apply(
    server: ServerContext, request: Request, target: Target, current: JSON | None, applied: Any
) -> JSON:
    """Server-side apply: the object after the request's field manager applies `applied`."""
    if not isinstance(applied, dict):
        raise bad_request("an apply patch must be an object")
    manager = request.query_params.get("fieldManager")
    if not manager:
        raise ApiError(
            422,
            "Invalid",
            'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
            "required for apply patch",
        )
    if applied.get("apiVersion") != target.rt.api_version or applied.get("kind") != target.rt.kind:
        raise bad_request(
            f"the apply patch's apiVersion and kind must be {target.rt.api_version} "
            f"{target.rt.kind}"
        )
    return server_side_apply(
        current,
        applied,
        target.rt,
        server.version.minor,
        manager,
        force=flag(request.query_params, "force"),
        merge=lambda base, patch: merge_patch(base, patch, strategic=True),
    )


def _record(
    server: ServerContext, request: Request, target: Target, old: JSON | None, new: JSON
) -> None:
    """Record a write's changed fields under its field manager (operation Update)."""
    manager = manager_of(request.query_params, request.headers.get("user-agent", ""))
    record_update(old, new, target.rt, server.version.minor, manager, target.subresource)
