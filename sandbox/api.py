"""The sandbox's API server: the subset of the Kubernetes REST API that kubectl and the cockpit use.

Discovery, list/watch/get/create/update/patch/delete of the served resources, the `status`,
`scale`, `eviction` and `log` subresources, the service and pod proxies (`sandbox.proxy`),
`metrics.k8s.io` pod metrics and server-side Table printing for `kubectl get`. Errors are
`Status` objects with Kubernetes' reasons and messages. Every request needs the bearer token
from the written kubeconfig.

`POST /sandbox/faults` (same token) injects faults a client must survive: failing or stalled
requests, dropped watches, and compaction (every resumed watch then gets 410 Gone).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import math
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

import httpx2
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox import proxy
from sandbox.store import (
    DEPLOYMENTS,
    JSON,
    PDBS,
    PODS,
    RESOURCE_TYPES,
    ROLEBINDINGS,
    ROLES,
    SERVICEACCOUNTS,
    ApiError,
    ResourceType,
    Store,
    WatchEvent,
    bad_request,
    conflict,
    fields_match,
    labels_match,
    now,
    parse_field_selector,
    parse_label_selector,
    resource_type,
    selector_from_label_selector,
    timestamp,
)
from sandbox.tables import table, wants_table

SERVER_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-kube-llm-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


class Runtime(Protocol):
    """What the API server needs from the kubelet and the metrics sampler."""

    def pod_port(self, namespace: str, pod: str, port: str | int) -> int | None:
        """The loopback port standing in for a pod's container port (number or name)."""

    def pod_metrics(self, namespace: str | None) -> list[JSON]:
        """`metrics.k8s.io` PodMetrics objects of the pods measured last."""

    def log_path(self, namespace: str, pod: str, container: str | None) -> Path | None:
        """The file holding a container's output, if it ran."""


@dataclass
class Faults:
    """Injected faults (for the cockpit's resilience tests)."""

    fail_next: int = 0
    fail_code: int = 500
    stall_next: int = 0
    stall_seconds: float = 0.0


def status_response(error: ApiError) -> JSONResponse:
    """An error as a Kubernetes `Status` response."""
    return JSONResponse(error.status(), status_code=error.code, headers=error.headers)


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


@dataclass(frozen=True)
class User:
    """Who a bearer token belongs to: the sandbox's admin, or a ServiceAccount."""

    name: str
    admin: bool = False
    service_account: tuple[str, str] | None = None  # (namespace, name)


class Authenticator:
    """Bearer tokens: the admin token of the kubeconfig plus tokens issued to ServiceAccounts."""

    def __init__(self, admin_token: str) -> None:
        self._users: dict[str, User] = {admin_token: User("kube-llm-sandbox-admin", admin=True)}

    def issue(self, namespace: str, service_account: str) -> str:
        """A new token for a ServiceAccount (what TokenRequest returns)."""
        token = secrets.token_urlsafe(32)
        name = f"system:serviceaccount:{namespace}:{service_account}"
        self._users[token] = User(name, service_account=(namespace, service_account))
        return token

    def user(self, supplied: bytes) -> User | None:
        """The user of a token, compared in constant time."""
        found = None
        for token, user in self._users.items():
            if hmac.compare_digest(supplied, token.encode()):
                found = user
        return found


USER_SCOPE_KEY = "kube_llm_user"


class BearerAuth:
    """Pure ASGI middleware: every HTTP request needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self._app = app
        self._authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        supplied = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"Bearer "):
                supplied = value[len(b"Bearer ") :].strip()
        user = self._authenticator.user(supplied) if supplied else None
        if user is None:
            error = ApiError(401, "Unauthorized", "Unauthorized")
            await status_response(error)(scope, receive, send)
            return
        scope[USER_SCOPE_KEY] = user
        await self._app(scope, receive, send)


def _rule_allows(rule: JSON, verb: str, group: str, resource: str, name: str | None) -> bool:
    def has(values: list[str] | None, wanted: str) -> bool:
        return values is not None and ("*" in values or wanted in values)

    if not (
        has(rule.get("verbs"), verb)
        and has(rule.get("apiGroups"), group)
        and has(rule.get("resources"), resource)
    ):
        return False
    names = rule.get("resourceNames")
    return not names or (name is not None and name in names)


def authorize(
    store: Store,
    user: User,
    verb: str,
    group: str,
    resource: str,
    namespace: str | None,
    name: str | None,
) -> None:
    """RBAC for ServiceAccounts through namespaced Roles and RoleBindings (403 when denied)."""
    if user.admin:
        return
    allowed = False
    if namespace and user.service_account is not None:
        sa_namespace, sa_name = user.service_account
        for binding in store.list(ROLEBINDINGS, namespace):
            subjects = binding.get("subjects") or []
            if not any(
                s.get("kind") == "ServiceAccount"
                and s.get("name") == sa_name
                and (s.get("namespace") or namespace) == sa_namespace
                for s in subjects
            ):
                continue
            ref = binding.get("roleRef") or {}
            if ref.get("kind") != "Role":
                continue
            role = store.find(ROLES, namespace, ref.get("name", ""))
            if role and any(
                _rule_allows(rule, verb, group, resource, name) for rule in role.get("rules") or []
            ):
                allowed = True
                break
    if allowed:
        return
    subject = f'{resource} "{name}"' if name else resource
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    raise ApiError(
        403,
        "Forbidden",
        f'{subject} is forbidden: User "{user.name}" cannot {verb} resource "{resource}" '
        f'in API group "{group}"{where}',
        {"name": name or "", "group": group, "kind": resource.split("/")[0]},
    )


# ---------------------------------------------------------------------------------------------
# Patches


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
    try:
        if media == "application/apply-patch+yaml":
            patch = yaml.safe_load(body)
        else:
            patch = json.loads(body or b"{}")
    except (ValueError, yaml.YAMLError) as error:
        raise bad_request(f"the patch body is not valid: {error}") from error
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


# ---------------------------------------------------------------------------------------------
# Pod deletion and disruption budgets (shared with the controllers through the store)


def pod_is_ready(pod: JSON) -> bool:
    """Whether the pod's Ready condition is True."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def pod_is_healthy(pod: JSON) -> bool:
    """Ready and not terminating: what a disruption budget and a Service count."""
    return pod_is_ready(pod) and not pod["metadata"].get("deletionTimestamp")


def begin_pod_deletion(store: Store, namespace: str, name: str, grace: int | None) -> JSON:
    """Delete a pod as the API server does: mark it terminating, or remove it for grace 0.

    The kubelet sees the deletionTimestamp, runs preStop, sends SIGTERM and removes the object
    once the containers stopped; with grace 0 (force) the object goes at once and the kubelet
    kills the processes.
    """
    pod = store.get(PODS, namespace, name)
    if grace is None:
        grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
    grace = max(0, grace)
    if grace == 0:
        return store.delete(PODS, namespace, name)
    current = pod["metadata"].get("deletionGracePeriodSeconds")
    if current is not None and int(current) <= grace:
        return pod

    def mark(obj: JSON) -> None:
        moment = now()
        obj["metadata"]["deletionTimestamp"] = timestamp(moment + dt.timedelta(seconds=grace))
        obj["metadata"]["deletionGracePeriodSeconds"] = grace
        if "generation" in obj["metadata"]:
            obj["metadata"]["generation"] = int(obj["metadata"]["generation"]) + 1

    return store.mutate(PODS, namespace, name, mark)


def _scaled(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        fraction = float(value[:-1]) * total / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(value)


def pdb_numbers(store: Store, pdb: JSON) -> JSON:
    """A PodDisruptionBudget's status numbers, computed from the pods as the controller does."""
    namespace = pdb["metadata"]["namespace"]
    spec = pdb.get("spec") or {}
    selector = selector_from_label_selector(spec.get("selector"))
    pods = [
        pod
        for pod in store.list(PODS, namespace)
        if selector and labels_match(selector, pod["metadata"].get("labels"))
    ]
    expected = len([p for p in pods if not p["metadata"].get("deletionTimestamp")])
    for deployment in store.list(DEPLOYMENTS, namespace):
        template_labels = (
            (deployment["spec"].get("template") or {}).get("metadata", {}).get("labels")
        )
        if selector and labels_match(selector, template_labels):
            expected = int(deployment["spec"].get("replicas", 1))
    healthy = sum(1 for pod in pods if pod_is_healthy(pod))
    if "minAvailable" in spec:
        desired = _scaled(spec["minAvailable"], expected, True)
    elif "maxUnavailable" in spec:
        desired = max(0, expected - _scaled(spec["maxUnavailable"], expected, True))
    else:
        desired = expected
    return {
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": max(0, healthy - desired),
    }


def evict_pod(store: Store, namespace: str, name: str, grace: int | None) -> JSON:
    """The Eviction API: delete the pod unless that would break its disruption budget (429)."""
    pod = store.get(PODS, namespace, name)
    if pod["metadata"].get("deletionTimestamp"):
        return success_status(201)
    budgets = [
        pdb
        for pdb in store.list(PDBS, namespace)
        if labels_match(
            selector_from_label_selector((pdb.get("spec") or {}).get("selector")) or [],
            pod["metadata"].get("labels"),
        )
        and (pdb.get("spec") or {}).get("selector")
    ]
    if len(budgets) > 1:
        raise ApiError(
            500,
            "InternalError",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource "
            "does not support.",
        )
    if budgets:
        pdb = budgets[0]
        numbers = pdb_numbers(store, pdb)
        policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
        unhealthy_allowed = not pod_is_ready(pod) and (
            policy == "AlwaysAllow" or numbers["currentHealthy"] >= numbers["desiredHealthy"]
        )
        if not unhealthy_allowed and numbers["disruptionsAllowed"] <= 0:
            raise ApiError(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                {
                    "causes": [
                        {
                            "reason": "DisruptionBudget",
                            "message": f"The disruption budget {pdb['metadata']['name']} needs "
                            f"{numbers['desiredHealthy']} healthy pods and has "
                            f"{numbers['currentHealthy']} currently",
                        }
                    ]
                },
            )
    begin_pod_deletion(store, namespace, name, grace)
    return success_status(201)


# ---------------------------------------------------------------------------------------------
# Discovery


def _api_resources(group: str, version: str) -> list[JSON]:
    resources: list[JSON] = []
    for rt in RESOURCE_TYPES:
        if rt.group != group or rt.version != version:
            continue
        entry: JSON = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            sub_entry: JSON = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "eviction":
                sub_entry.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
            elif sub == "proxy":
                sub_entry.update(
                    kind="PodProxyOptions" if rt.plural == "pods" else "ServiceProxyOptions",
                    verbs=["create", "delete", "get", "patch", "update"],
                )
            elif sub == "log":
                sub_entry.update(kind="Pod", verbs=["get"])
            elif sub == "token":
                sub_entry.update(
                    group="authentication.k8s.io",
                    version="v1",
                    kind="TokenRequest",
                    verbs=["create"],
                )
            resources.append(sub_entry)
    return resources


def _groups() -> list[JSON]:
    groups: dict[str, JSON] = {}
    for rt in RESOURCE_TYPES:
        if not rt.group or rt.group in groups:
            continue
        version = {"groupVersion": rt.api_version, "version": rt.version}
        groups[rt.group] = {"name": rt.group, "versions": [version], "preferredVersion": version}
    return list(groups.values())


# ---------------------------------------------------------------------------------------------
# The server


@dataclass(frozen=True)
class Target:
    """What a resource URL names."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


class ApiServer:
    """Request handlers over one store."""

    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        authenticator: Authenticator,
        *,
        bookmark_seconds: float = 10.0,
        faults: Faults | None = None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.authenticator = authenticator
        self.bookmark_seconds = bookmark_seconds
        self.faults = faults or Faults()
        self.http: httpx2.AsyncClient | None = None
        self.proxy_rotation: dict[tuple[str, str], int] = {}

    # -- routing -------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """Starlette routes of the API server."""
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        return [
            Route("/version", self._version),
            Route("/healthz", self._ok),
            Route("/livez", self._ok),
            Route("/readyz", self._ok),
            Route("/sandbox/faults", self._faults, methods=["POST"]),
            Route("/api", self._core_versions),
            Route("/apis", self._group_list),
            Route("/api/{rest:path}", self._dispatch_core, methods=methods),
            Route("/apis/{rest:path}", self._dispatch_groups, methods=methods),
        ]

    async def _ok(self, request: Request) -> Response:
        return Response("ok", media_type="text/plain")

    async def _version(self, request: Request) -> Response:
        return JSONResponse(SERVER_VERSION)

    async def _core_versions(self, request: Request) -> Response:
        server = f"{request.url.hostname}:{request.url.port}"
        return JSONResponse(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": server}
                ],
            }
        )

    async def _group_list(self, request: Request) -> Response:
        return JSONResponse({"kind": "APIGroupList", "apiVersion": "v1", "groups": _groups()})

    async def _faults(self, request: Request) -> Response:
        user: User = request.scope[USER_SCOPE_KEY]
        if not user.admin:
            return status_response(ApiError(403, "Forbidden", "fault injection is for the admin"))
        spec = await request.json()
        if spec.get("compact"):
            self.store.compact()
        if spec.get("drop_watches"):
            self.store.close_watches()
        self.faults.fail_next = int(spec.get("fail_next", self.faults.fail_next))
        self.faults.fail_code = int(spec.get("fail_code", self.faults.fail_code))
        self.faults.stall_next = int(spec.get("stall_next", self.faults.stall_next))
        self.faults.stall_seconds = float(spec.get("stall_seconds", self.faults.stall_seconds))
        return JSONResponse(
            {
                "fail_next": self.faults.fail_next,
                "fail_code": self.faults.fail_code,
                "stall_next": self.faults.stall_next,
                "stall_seconds": self.faults.stall_seconds,
            }
        )

    async def _injected(self) -> Response | None:
        if self.faults.stall_next > 0:
            self.faults.stall_next -= 1
            await asyncio.sleep(self.faults.stall_seconds)
        if self.faults.fail_next > 0:
            self.faults.fail_next -= 1
            code = self.faults.fail_code
            reason = {500: "InternalError", 503: "ServiceUnavailable", 429: "TooManyRequests"}
            return status_response(
                ApiError(code, reason.get(code, "InternalError"), "injected fault (sandbox)")
            )
        return None

    async def _dispatch_core(self, request: Request) -> Response:
        parts = [p for p in request.path_params["rest"].split("/") if p]
        if not parts or parts[0] != "v1":
            return status_response(
                ApiError(404, "NotFound", "the server could not find the requested resource")
            )
        return await self._dispatch(request, "", "v1", parts[1:])

    async def _dispatch_groups(self, request: Request) -> Response:
        parts = [p for p in request.path_params["rest"].split("/") if p]
        if not parts:
            return await self._group_list(request)
        group = parts[0]
        known = [g for g in _groups() if g["name"] == group]
        if not known:
            return status_response(
                ApiError(404, "NotFound", "the server could not find the requested resource")
            )
        if len(parts) == 1:
            return JSONResponse({"kind": "APIGroup", "apiVersion": "v1", **known[0]})
        return await self._dispatch(request, group, parts[1], parts[2:])

    async def _dispatch(
        self, request: Request, group: str, version: str, parts: list[str]
    ) -> Response:
        try:
            injected = await self._injected()
            if injected is not None:
                return injected
            if not parts:
                group_version = f"{group}/{version}" if group else version
                resources = _api_resources(group, version)
                if not resources:
                    raise ApiError(
                        404, "NotFound", "the server could not find the requested resource"
                    )
                return JSONResponse(
                    {
                        "kind": "APIResourceList",
                        "apiVersion": "v1",
                        "groupVersion": group_version,
                        "resources": resources,
                    }
                )
            target = self._target(group, version, parts)
            if target.rt.plural == "selfsubjectaccessreviews":
                # Anyone may ask what they may do (system:basic-user).
                return await self._access_review(request)
            authorize(
                self.store,
                request.scope[USER_SCOPE_KEY],
                _verb(request, target),
                target.rt.group,
                target.rt.plural + (f"/{target.subresource}" if target.subresource else ""),
                target.namespace,
                target.name,
            )
            if target.subresource in ("proxy",):
                return await self._proxy(request, target)
            return await self._handle(request, target)
        except ApiError as error:
            return status_response(error)

    def _target(self, group: str, version: str, parts: list[str]) -> Target:
        namespace: str | None = None
        rest = parts
        if parts[0] == "namespaces" and len(parts) >= 3:
            namespace, rest = parts[1], parts[2:]
        rt = resource_type(group, rest[0])
        if rt is None or rt.version != version:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in rt.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub != "proxy" and len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return Target(rt, namespace if rt.namespaced else None, name, sub)

    # -- resources -----------------------------------------------------------------------------

    async def _handle(self, request: Request, target: Target) -> Response:
        rt, method = target.rt, request.method
        if rt.group == "metrics.k8s.io":
            return self._metrics(target)
        params = request.query_params
        if target.name is None:
            if method == "GET":
                if params.get("watch") in ("true", "1"):
                    return self._watch(request, target)
                return self._list(request, target)
            if method == "POST":
                body = await self._json(request)
                created = self.store.create(rt, body, target.namespace)
                return JSONResponse(created, status_code=201)
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        namespace = target.namespace or ""
        if target.subresource == "eviction":
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", "eviction accepts only POST")
            body = await self._json(request)
            options = body.get("deleteOptions") or {}
            result = evict_pod(
                self.store, namespace, target.name, options.get("gracePeriodSeconds")
            )
            return JSONResponse(result, status_code=201)
        if target.subresource == "token":
            return await self._token_request(request, target)
        if target.subresource == "log":
            return self._log(target, request)
        if target.subresource == "scale":
            return await self._scale(request, target)
        if method in ("GET", "HEAD"):
            return JSONResponse(self.store.get(rt, namespace, target.name))
        if method == "PUT":
            body = await self._json(request)
            body.setdefault("metadata", {})
            if body["metadata"].get("name") not in (None, target.name):
                raise bad_request("the name of the object does not match the name on the URL")
            body["metadata"]["name"] = target.name
            body["metadata"]["namespace"] = namespace
            updated = self.store.update(
                rt, body, subresource=target.subresource, check_version=True
            )
            return JSONResponse(updated)
        if method == "PATCH":
            current = self.store.get(rt, namespace, target.name)
            patched = apply_patch(
                current, await request.body(), request.headers.get("content-type", "")
            )
            patched.setdefault("metadata", {})
            patched["metadata"]["name"] = target.name
            patched["metadata"]["namespace"] = namespace
            updated = self.store.update(rt, patched, subresource=target.subresource)
            return JSONResponse(updated)
        if method == "DELETE":
            if "protobuf" in request.headers.get("content-type", ""):
                options = {}  # DeleteOptions as protobuf: the query parameters still apply
            else:
                options = await self._json(request, allow_empty=True)
            grace_text = params.get("gracePeriodSeconds")
            grace = int(grace_text) if grace_text is not None else options.get("gracePeriodSeconds")
            if rt is PODS:
                return JSONResponse(begin_pod_deletion(self.store, namespace, target.name, grace))
            deleted = self.store.delete(rt, namespace, target.name)
            propagation = params.get("propagationPolicy") or options.get("propagationPolicy")
            if rt is DEPLOYMENTS and propagation != "Orphan":
                self._cascade(deployed=deleted)
            return JSONResponse(deleted)
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    def _cascade(self, deployed: JSON) -> None:
        """Background cascading deletion: the pods a deleted Deployment owned go too."""
        uid = deployed["metadata"]["uid"]
        for pod in self.store.list(PODS, deployed["metadata"]["namespace"]):
            if any(ref.get("uid") == uid for ref in pod["metadata"].get("ownerReferences") or []):
                begin_pod_deletion(
                    self.store, pod["metadata"]["namespace"], pod["metadata"]["name"], None
                )

    async def _json(self, request: Request, allow_empty: bool = False) -> JSON:
        body = await request.body()
        if not body.strip():
            if allow_empty:
                return {}
            raise bad_request("the request body is empty")
        try:
            content_type = request.headers.get("content-type", "")
            value = yaml.safe_load(body) if "yaml" in content_type else json.loads(body)
        except (ValueError, yaml.YAMLError) as error:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the sandbox reads JSON and YAML bodies only, not {content_type!r}: {error}",
            ) from error
        if not isinstance(value, dict):
            raise bad_request("the request body must be an object")
        return value

    def _selectors(self, request: Request) -> tuple[list[Any], list[tuple[str, bool, str]]]:
        params = request.query_params
        return (
            parse_label_selector(params.get("labelSelector")),
            parse_field_selector(params.get("fieldSelector")),
        )

    def _list(self, request: Request, target: Target) -> Response:
        labels, fields = self._selectors(request)
        items = self.store.list(target.rt, target.namespace, labels, fields)
        rv = str(self.store.resource_version)
        if wants_table(request.headers.get("accept", "")):
            include = request.query_params.get("includeObject", "Metadata")
            return JSONResponse(table(target.rt, items, rv, include_object=include))
        return JSONResponse(
            {
                "kind": f"{target.rt.kind}List",
                "apiVersion": target.rt.api_version,
                "metadata": {"resourceVersion": rv},
                "items": items,
            }
        )

    def _watch(self, request: Request, target: Target) -> Response:
        labels, fields = self._selectors(request)
        params = request.query_params
        rv_text = params.get("resourceVersion") or ""
        send_initial = params.get("sendInitialEvents") == "true"
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
        timeout_text = params.get("timeoutSeconds")
        timeout = float(timeout_text) if timeout_text else None
        as_table = wants_table(request.headers.get("accept", ""))
        rt = target.rt
        try:
            since = None if rv_text in ("", "0") else int(rv_text)
        except ValueError as error:
            raise bad_request(f"invalid resource version {rv_text!r}") from error

        initial: list[JSON] = []
        error_event: JSON | None = None
        queue: asyncio.Queue[WatchEvent | None] | None = None
        backlog: list[WatchEvent] = []
        if since is None or send_initial:
            initial = self.store.list(rt, target.namespace, labels, fields)
            _, queue = self.store.subscribe(rt, None)
        else:
            try:
                backlog, queue = self.store.subscribe(rt, since)
            except ApiError as error:
                error_event = {"type": "ERROR", "object": error.status()}
        store = self.store

        def matches(obj: JSON) -> bool:
            if target.namespace and obj["metadata"].get("namespace") != target.namespace:
                return False
            return labels_match(labels, obj["metadata"].get("labels")) and (
                not fields or fields_match(fields, obj)
            )

        def visible(event: WatchEvent) -> str | None:
            """The event type this watch sees, as the API server filters: an object that
            starts or stops matching the selectors is ADDED or DELETED for this watch."""
            now_matches = matches(event.obj)
            if event.type != "MODIFIED" or event.previous is None:
                return event.type if now_matches else None
            before = matches(event.previous)
            if now_matches:
                return "MODIFIED" if before else "ADDED"
            return "DELETED" if before else None

        first_table = [True]

        def line(event_type: str, obj: JSON) -> bytes:
            if as_table and event_type in ("ADDED", "MODIFIED", "DELETED"):
                obj = table(
                    rt,
                    [obj],
                    obj["metadata"].get("resourceVersion", ""),
                    with_columns=first_table[0],
                )
                first_table[0] = False
            return (json.dumps({"type": event_type, "object": obj}) + "\n").encode()

        def bookmark(initial_end: bool = False) -> bytes:
            metadata: JSON = {"resourceVersion": str(store.resource_version)}
            if initial_end:
                metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
            return line(
                "BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": metadata}
            )

        async def stream() -> AsyncIterator[bytes]:
            if error_event is not None:
                yield (json.dumps(error_event) + "\n").encode()
                return
            assert queue is not None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout else None
            try:
                for obj in initial:
                    yield line("ADDED", obj)
                if send_initial:
                    yield bookmark(initial_end=True)
                for past in backlog:
                    kind = visible(past)
                    if kind is not None:
                        yield line(kind, past.obj)
                while True:
                    wait = self.bookmark_seconds if bookmarks else 3600.0
                    if deadline is not None:
                        wait = min(wait, deadline - loop.time())
                        if wait <= 0:
                            return
                    try:
                        event = await asyncio.wait_for(queue.get(), timeout=wait)
                    except TimeoutError:
                        if bookmarks and queue.empty():
                            yield bookmark()
                        continue
                    if event is None:
                        return
                    kind = visible(event)
                    if kind is not None:
                        yield line(kind, event.obj)
            finally:
                store.unsubscribe(rt, queue)

        return StreamingResponse(
            stream(),
            media_type="application/json",
            headers={"Cache-Control": "no-cache, private"},
        )

    def _log(self, target: Target, request: Request) -> Response:
        assert target.name is not None
        pod = self.store.get(PODS, target.namespace or "", target.name)
        container = request.query_params.get("container")
        if container is None:
            containers = pod["spec"].get("containers") or []
            if len(containers) != 1:
                names = " ".join(c["name"] for c in containers)
                raise bad_request(
                    f"a container name must be specified for pod {target.name}, "
                    f"choose one of: [{names}]"
                )
            container = containers[0]["name"]
        path = self.runtime.log_path(target.namespace or "", target.name, container)
        if path is None or not path.exists():
            raise bad_request(f'container "{container}" in pod "{target.name}" is waiting to start')
        text = path.read_bytes()
        tail = request.query_params.get("tailLines")
        if tail is not None:
            text = b"".join(text.splitlines(keepends=True)[-int(tail) :])
        if request.query_params.get("follow") not in ("true", "1"):
            return Response(text, media_type="text/plain")
        store, namespace, uid = self.store, target.namespace or "", pod["metadata"]["uid"]
        name = target.name

        async def follow() -> AsyncIterator[bytes]:
            """The log so far, then what the container writes, until the pod is gone."""
            yield text
            offset = path.stat().st_size
            while True:
                await asyncio.sleep(0.5)
                current = store.find(PODS, namespace, name)
                size = path.stat().st_size if path.exists() else offset
                if size > offset:
                    with path.open("rb") as handle:
                        handle.seek(offset)
                        chunk = handle.read(size - offset)
                    offset = size
                    yield chunk
                if current is None or current["metadata"]["uid"] != uid:
                    return

        return StreamingResponse(follow(), media_type="text/plain")

    async def _access_review(self, request: Request) -> Response:
        """SelfSubjectAccessReview (`kubectl auth can-i`): may the caller do this?"""
        if request.method != "POST":
            raise ApiError(405, "MethodNotAllowed", "selfsubjectaccessreviews accept only POST")
        body = await request.body()
        if body.startswith(PROTOBUF_MAGIC):
            spec = decode_access_review_protobuf(body)
        else:
            spec = (await self._json(request)).get("spec") or {}
        user: User = request.scope[USER_SCOPE_KEY]
        attributes = spec.get("resourceAttributes")
        allowed = True
        if attributes is not None:
            resource = attributes.get("resource", "")
            if attributes.get("subresource"):
                resource += "/" + attributes["subresource"]
            try:
                authorize(
                    self.store,
                    user,
                    attributes.get("verb", ""),
                    attributes.get("group", ""),
                    resource,
                    attributes.get("namespace") or None,
                    attributes.get("name") or None,
                )
            except ApiError:
                allowed = False  # RBAC gives no reason for a denial
        elif not user.admin:
            # Non-resource URLs: discovery and health for everyone, the rest for the admin.
            path = (spec.get("nonResourceAttributes") or {}).get("path", "")
            allowed = path.startswith(("/api", "/version", "/healthz", "/livez", "/readyz"))
        status: JSON = {"allowed": allowed}
        return JSONResponse(
            {
                "kind": "SelfSubjectAccessReview",
                "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "spec": spec,
                "status": status,
            },
            status_code=201,
        )

    async def _token_request(self, request: Request, target: Target) -> Response:
        """TokenRequest (`kubectl create token SA`): a token acting as the ServiceAccount."""
        assert target.name is not None
        if request.method != "POST":
            raise ApiError(405, "MethodNotAllowed", "token accepts only POST")
        namespace = target.namespace or "default"
        self.store.get(SERVICEACCOUNTS, namespace, target.name)
        # kubectl sends this request as protobuf, which the sandbox does not decode: only
        # expirationSeconds matters, and the default serves.
        protobuf = "protobuf" in request.headers.get("content-type", "")
        body = {} if protobuf else await self._json(request, allow_empty=True)
        spec = body.get("spec") or {}
        seconds = int(spec.get("expirationSeconds") or 3600)
        token = self.authenticator.issue(namespace, target.name)
        return JSONResponse(
            {
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": target.name, "namespace": namespace},
                "spec": {"audiences": spec.get("audiences") or [], "expirationSeconds": seconds},
                "status": {
                    "token": token,
                    "expirationTimestamp": timestamp(now() + dt.timedelta(seconds=seconds)),
                },
            },
            status_code=201,
        )

    async def _scale(self, request: Request, target: Target) -> Response:
        assert target.name is not None
        namespace = target.namespace or ""
        deployment = self.store.get(target.rt, namespace, target.name)

        def scale_of(obj: JSON) -> JSON:
            metadata = obj["metadata"]
            selector = (obj["spec"].get("selector") or {}).get("matchLabels") or {}
            return {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {
                    "name": metadata["name"],
                    "namespace": metadata["namespace"],
                    "uid": metadata["uid"],
                    "resourceVersion": metadata["resourceVersion"],
                    "creationTimestamp": metadata["creationTimestamp"],
                },
                "spec": {"replicas": int(obj["spec"].get("replicas", 1))},
                "status": {
                    "replicas": int((obj.get("status") or {}).get("replicas", 0)),
                    "selector": ",".join(f"{k}={v}" for k, v in selector.items()),
                },
            }

        current = scale_of(deployment)
        if request.method == "GET":
            return JSONResponse(current)
        if request.method == "PUT":
            wanted = await self._json(request)
        elif request.method == "PATCH":
            wanted = apply_patch(
                current, await request.body(), request.headers.get("content-type", "")
            )
        else:
            raise ApiError(405, "MethodNotAllowed", "scale accepts GET, PUT and PATCH")
        version = (wanted.get("metadata") or {}).get("resourceVersion")
        if (
            request.method == "PUT"
            and version
            and version != deployment["metadata"]["resourceVersion"]
        ):
            raise conflict(target.rt, target.name)
        replicas = (wanted.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Scale.autoscaling "{target.name}" is invalid: spec.replicas: Invalid value: '
                f"{replicas}: must be greater than or equal to 0",
            )

        def set_replicas(obj: JSON) -> None:
            obj["spec"]["replicas"] = replicas

        updated = self.store.mutate(target.rt, namespace, target.name, set_replicas)
        return JSONResponse(scale_of(updated))

    def _metrics(self, target: Target) -> Response:
        items = self.runtime.pod_metrics(target.namespace)
        if target.name is not None:
            for item in items:
                if item["metadata"]["name"] == target.name:
                    return JSONResponse(item)
            raise ApiError(404, "NotFound", f'podmetrics.metrics.k8s.io "{target.name}" not found')
        return JSONResponse(
            {
                "kind": "PodMetricsList",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {},
                "items": items,
            }
        )

    # -- proxies -------------------------------------------------------------------------------

    async def _proxy(self, request: Request, target: Target) -> Response:
        assert target.name is not None
        raw_path = (request.scope.get("raw_path") or request.url.path.encode()).decode()
        segments = raw_path.split("/")
        tail = ""
        for index in range(1, len(segments)):
            if segments[index] == "proxy" and unquote(segments[index - 1]) == target.name:
                rest = segments[index + 1 :]
                tail = "/" + "/".join(rest) if rest else ""
                break
        namespace = target.namespace or "default"
        if target.rt is PODS:
            return await proxy.pod_proxy(self, request, namespace, target.name, tail)
        return await proxy.service_proxy(self, request, namespace, target.name, tail)


PROTOBUF_MAGIC = b"k8s\x00"


def _protobuf_fields(data: bytes) -> dict[int, list[bytes]]:
    """Length-delimited fields of one protobuf message (varint fields are skipped)."""
    fields: dict[int, list[bytes]] = {}
    index = 0

    def varint() -> int:
        nonlocal index
        value = shift = 0
        while True:
            byte = data[index]
            index += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while index < len(data):
        key = varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            varint()
        elif wire_type == 2:
            length = varint()
            fields.setdefault(number, []).append(data[index : index + length])
            index += length
        elif wire_type == 1:
            index += 8
        elif wire_type == 5:
            index += 4
        else:
            raise bad_request(f"unsupported protobuf wire type {wire_type}")
    return fields


def decode_access_review_protobuf(body: bytes) -> JSON:
    """The spec of a SelfSubjectAccessReview sent as Kubernetes protobuf (as kubectl does).

    The envelope is `k8s\\0` plus a runtime.Unknown whose field 2 holds the object; the
    spec's field 1 is resourceAttributes, field 2 nonResourceAttributes.
    """
    try:
        envelope = _protobuf_fields(body[len(PROTOBUF_MAGIC) :])
        review = _protobuf_fields(envelope[2][0])
        spec_fields = _protobuf_fields(review[2][0]) if 2 in review else {}
    except (IndexError, KeyError) as error:
        raise bad_request("malformed protobuf SelfSubjectAccessReview") from error
    spec: JSON = {}
    names = {1: "namespace", 2: "verb", 3: "group", 4: "version", 5: "resource"}
    names.update({6: "subresource", 7: "name"})
    if 1 in spec_fields:
        attributes = _protobuf_fields(spec_fields[1][0])
        spec["resourceAttributes"] = {
            names[number]: values[0].decode()
            for number, values in attributes.items()
            if number in names
        }
    if 2 in spec_fields:
        attributes = _protobuf_fields(spec_fields[2][0])
        spec["nonResourceAttributes"] = {
            name: attributes[number][0].decode()
            for number, name in ((1, "path"), (2, "verb"))
            if number in attributes
        }
    return spec


def _verb(request: Request, target: Target) -> str:
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


def create_app(server: ApiServer) -> ASGIApp:
    """The API server's ASGI app (Starlette with bearer-token auth around it)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx2.AsyncClient(
            timeout=httpx2.Timeout(connect=5.0, read=None, write=30.0, pool=30.0),
            limits=httpx2.Limits(max_connections=512, max_keepalive_connections=64),
        ) as client:
            server.http = client
            yield
            server.store.close_watches()
            server.http = None

    app = Starlette(routes=server.routes(), lifespan=lifespan)

    async def unknown(request: Request, exc: Exception) -> Response:
        return status_response(
            ApiError(404, "NotFound", "the server could not find the requested resource")
        )

    app.add_exception_handler(404, unknown)
    return BearerAuth(app, server.authenticator)
