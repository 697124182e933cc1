"""What a resource URL names, the RBAC verb of a request, and the errors routing answers with."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from sandbox.apiserver.discovery import unserved
from sandbox.store.store import ApiError, ResourceType, resource_type


@dataclass(frozen=True)
class Target:
    """What a resource URL names."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def not_found_error(why: str | None = None) -> ApiError:
    """A 404 Status, with the reason the sandbox lacks something when it knows one."""
    return ApiError(404, "NotFound", why or "the server could not find the requested resource")


def method_not_allowed() -> ApiError:
    """The 405 for a method a resource does not take."""
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def rbac_verb(request: Request, target: Target) -> str:
    """The RBAC verb of a request, as the API server derives it."""
    method = request.method
    if method in ("GET", "HEAD"):
        if target.name is None:
            return "watch" if request.query_params.get("watch") in ("true", "1") else "list"
        return "get"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if target.name is not None else "deletecollection"
    return method.lower()


def resolve_target(group: str, version: str, parts: list[str]) -> Target:
    """What the path after `/api/v1` or `/apis/GROUP/VERSION` names; 404 when nothing served."""
    namespace: str | None = None
    rest = parts
    if parts[0] == "namespaces" and len(parts) >= 3:
        namespace, rest = parts[1], parts[2:]
    rt = resource_type(group, rest[0])
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if rt is None or rt.version != version:
        # What kubectl users try most gets a message saying why it is missing here.
        raise not_found_error(unserved(group, rest[0], namespace))
    if sub is not None and sub not in rt.subresources:
        raise not_found_error(unserved(group, f"{rest[0]}/{sub}", namespace))
    if sub != "proxy" and len(rest) > 3:
        raise not_found_error()
    return Target(rt, namespace if rt.namespaced else None, name, sub)
