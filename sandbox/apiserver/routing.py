"""What a resource URL names, the RBAC verb of a request, and the errors routing answers with."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse

from sandbox.apiserver.discovery import unserved
from sandbox.store.store import ApiError, ResourceType, resource_type


@dataclass(frozen=True)
class Target:
    """What a resource URL names."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def status_response(error: ApiError) -> JSONResponse:
    """An error as a Kubernetes `Status` response."""
    return JSONResponse(error.status(), status_code=error.code, headers=error.headers)


def not_found_error(why: str | None = None) -> ApiError:
    """A 404 Status, with the reason the sandbox lacks something when it knows one."""
    return ApiError(404, "NotFound", why or "the server could not find the requested resource")


def method_not_allowed() -> ApiError:
    """The 405 for a method a resource does not take."""
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def rbac_verb(request: Request, name: str | None) -> str:
    """The RBAC verb of a request for object `name` (None: the collection), as the API server
    derives it."""
    method = request.method
    if method in ("GET", "HEAD"):
        if name is None:
            return "watch" if request.query_params.get("watch") in ("true", "1") else "list"
        return "get"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if name is not None else "deletecollection"
    return method.lower()


@dataclass(frozen=True)
class RequestPath:
    """What a resource URL asks for, before anything says whether it is served: what RBAC
    judges (the API server authorises a request before it looks the resource up, so a user
    who may not read secrets learns 403, not whether the sandbox serves them)."""

    group: str
    version: str
    namespace: str | None
    resource: str
    name: str | None
    subresource: str | None
    extra: int
    """Path segments after the subresource (only a proxy takes them)."""

    @property
    def rbac_resource(self) -> str:
        """`resource` or `resource/subresource`, as RBAC rules name it."""
        return self.resource + (f"/{self.subresource}" if self.subresource else "")


def request_path(group: str, version: str, parts: list[str]) -> RequestPath:
    """Split the path after `/api/v1` or `/apis/GROUP/VERSION` (non-empty `parts`)."""
    namespace: str | None = None
    rest = parts
    if parts[0] == "namespaces" and len(parts) >= 3:
        namespace, rest = parts[1], parts[2:]
    return RequestPath(
        group,
        version,
        namespace,
        rest[0],
        rest[1] if len(rest) > 1 else None,
        rest[2] if len(rest) > 2 else None,
        max(0, len(rest) - 3),
    )


def resolve_target(path: RequestPath) -> Target:
    """The served resource a request path names; 404 when nothing served."""
    group, namespace, sub = path.group, path.namespace, path.subresource
    rt = resource_type(group, path.resource)
    if rt is None or rt.version != path.version:
        # What kubectl users try most gets a message saying why it is missing here.
        raise not_found_error(unserved(group, path.resource, namespace))
    if sub is not None and sub not in rt.subresources:
        raise not_found_error(unserved(group, f"{path.resource}/{sub}", namespace))
    if sub != "proxy" and path.extra:
        raise not_found_error()
    return Target(rt, namespace if rt.namespaced else None, path.name, sub)
