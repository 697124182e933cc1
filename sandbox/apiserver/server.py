"""The sandbox's API server: the subset of the Kubernetes REST API that kubectl and the cockpit use.

Discovery, list/watch/get/create/update/patch/delete of the served resources, the `status`,
`scale`, `eviction` and `log` subresources, the service and pod proxies (`proxy`),
`metrics.k8s.io` pod metrics and server-side Table printing for `kubectl get`. Errors are
`Status` objects with Kubernetes' reasons and messages. Every request needs the bearer token
from the written kubeconfig.

The parts live beside it in `sandbox.apiserver`: tokens and RBAC in `auth`, PATCH bodies in
`patch`, watch streams in `watch`, the subresources in `subresources`; the deletion and eviction
rules it shares with the controllers are in `sandbox.store.disruption`.

`POST /sandbox/faults` (same token) injects faults a client must survive: failing or stalled
requests, dropped watches, and compaction (every resumed watch then gets 410 Gone).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from sandbox.apiserver import custom_metrics_api, proxy, reviews, subresources
from sandbox.apiserver.auth import (
    USER_SCOPE_KEY,
    Authenticator,
    BearerAuth,
    User,
    authorize,
)
from sandbox.apiserver.bodies import (
    delete_options,
    delete_options_protobuf,
    dry_run,
    int_param,
    query_dry_run,
    read_body,
    read_object,
)
from sandbox.apiserver.context import Runtime
from sandbox.apiserver.discovery import api_groups, api_resources
from sandbox.apiserver.faults import Faults, fault_changes
from sandbox.apiserver.patch import apply_patch
from sandbox.apiserver.routing import (
    Target,
    method_not_allowed,
    not_found_error,
    rbac_verb,
    resolve_target,
)
from sandbox.apiserver.tables import table, wants_table
from sandbox.apiserver.validation import admit_create, validate
from sandbox.apiserver.version import FALLBACK_MINOR, ServedVersion
from sandbox.apiserver.watch import WatchOptions, WatchStream
from sandbox.store.disruption import begin_pod_deletion
from sandbox.store.store import (
    DEPLOYMENTS,
    JSON,
    PODS,
    ApiError,
    Store,
    bad_request,
    parse_field_selector,
    parse_label_selector,
)

log = logging.getLogger("sandbox.api")

_SELF_REVIEWS = ("selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews")

_DEFAULT_WATCH_SECONDS = 1800.0
"""The API server's `--min-request-timeout`: a watch without a timeout lasts 1 to 2 times it."""


def status_response(error: ApiError) -> JSONResponse:
    """An error as a Kubernetes `Status` response."""
    return JSONResponse(error.status(), status_code=error.code, headers=error.headers)


# ---------------------------------------------------------------------------------------------
# Discovery


# ---------------------------------------------------------------------------------------------
# The server


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
        version: ServedVersion | None = None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.authenticator = authenticator
        self.bookmark_seconds = bookmark_seconds
        self.faults = faults or Faults()
        self.version = version or ServedVersion(FALLBACK_MINOR)
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
        return JSONResponse(self.version.info())

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
        return JSONResponse({"kind": "APIGroupList", "apiVersion": "v1", "groups": api_groups()})

    async def _faults(self, request: Request) -> Response:
        user: User = request.scope[USER_SCOPE_KEY]
        if not user.admin:
            return status_response(ApiError(403, "Forbidden", "fault injection is for the admin"))
        try:
            spec = await read_object(request)
            # The whole request is checked before any of it applies.
            changes = fault_changes(spec)
        except ApiError as error:
            return status_response(error)
        if spec.get("compact"):
            self.store.compact()
        if spec.get("drop_watches"):
            self.store.close_watches()
        for key, value in changes.items():
            setattr(self.faults, key, value)
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
            return status_response(not_found_error())
        return await self._dispatch(request, "", "v1", parts[1:])

    async def _dispatch_groups(self, request: Request) -> Response:
        parts = [p for p in request.path_params["rest"].split("/") if p]
        if not parts:
            return await self._group_list(request)
        group = parts[0]
        known = [g for g in api_groups() if g["name"] == group]
        if not known:
            return status_response(not_found_error())
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
                resources = api_resources(group, version)
                if not resources:
                    raise not_found_error()
                return JSONResponse(
                    {
                        "kind": "APIResourceList",
                        "apiVersion": "v1",
                        "groupVersion": group_version,
                        "resources": resources,
                    }
                )
            if group == custom_metrics_api.GROUP:
                return custom_metrics_api.serve(self, request, version, parts)
            target = resolve_target(group, version, parts)
            if target.rt.plural in _SELF_REVIEWS:
                # Anyone may ask what they may do and who they are (system:basic-user).
                return await self._review(request, target)
            authorize(
                self.store,
                request.scope[USER_SCOPE_KEY],
                rbac_verb(request, target),
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

    # -- resources -----------------------------------------------------------------------------

    async def _handle(self, request: Request, target: Target) -> Response:
        if target.rt.group == "metrics.k8s.io":
            return subresources.pod_metrics(self, target)
        if target.name is None:
            return await self._collection(request, target)
        handlers = {
            "eviction": subresources.evict,
            "token": subresources.token_request,
            "log": subresources.container_log,
            "scale": subresources.scale,
        }
        handler = handlers.get(target.subresource or "")
        if handler is not None:
            return await handler(self, request, target)
        method = request.method
        if method in ("GET", "HEAD"):
            return self._get(request, target)
        if method == "PUT":
            return await self._put(request, target)
        if method == "PATCH":
            return await self._patch(request, target)
        if method == "DELETE":
            return await self._delete(request, target)
        raise method_not_allowed()

    async def _collection(self, request: Request, target: Target) -> Response:
        """List, watch or create."""
        if request.method == "GET":
            if request.query_params.get("watch") in ("true", "1"):
                return self._watch(request, target)
            return self._list(request, target)
        if request.method == "POST":
            body = await read_object(request)
            admit_create(self.store, target.rt, target.namespace, body)
            created = self.store.create(
                target.rt, body, target.namespace, dry_run=query_dry_run(request)
            )
            return JSONResponse(created, status_code=201)
        raise method_not_allowed()

    async def _put(self, request: Request, target: Target) -> Response:
        assert target.name is not None
        body = await read_object(request)
        metadata = body.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise bad_request("metadata: Invalid value: must be an object")
        if metadata.get("name") not in (None, target.name):
            raise bad_request("the name of the object does not match the name on the URL")
        metadata["name"] = target.name
        metadata["namespace"] = target.namespace or ""
        current = self.store.get(target.rt, target.namespace or "", target.name)
        if target.subresource == "status":
            validate(target.rt, {**current, "status": body.get("status")})
        else:
            validate(target.rt, {**body, "metadata": {**current["metadata"], **metadata}})
        updated = self.store.update(
            target.rt,
            body,
            subresource=target.subresource,
            check_version=True,
            dry_run=query_dry_run(request),
        )
        return JSONResponse(updated)

    async def _patch(self, request: Request, target: Target) -> Response:
        assert target.name is not None
        namespace = target.namespace or ""
        current = self.store.get(target.rt, namespace, target.name)
        patched = apply_patch(
            current, await read_body(request), request.headers.get("content-type", "")
        )
        if not isinstance(patched.get("metadata", {}), dict):
            raise bad_request("metadata: Invalid value: must be an object")
        patched.setdefault("metadata", {})
        patched["metadata"]["name"] = target.name
        patched["metadata"]["namespace"] = namespace
        validate(target.rt, patched)
        updated = self.store.update(
            target.rt, patched, subresource=target.subresource, dry_run=query_dry_run(request)
        )
        return JSONResponse(updated)

    async def _delete(self, request: Request, target: Target) -> Response:
        assert target.name is not None
        rt, namespace, params = target.rt, target.namespace or "", request.query_params
        if "protobuf" in request.headers.get("content-type", ""):
            options = delete_options_protobuf(await read_body(request))
        else:
            options = delete_options(await read_object(request, allow_empty=True))
        grace = int_param(params, "gracePeriodSeconds")
        if grace is None:
            grace = options.get("gracePeriodSeconds")
        dry = query_dry_run(request) or dry_run(options.get("dryRun"))
        if rt is PODS:
            return JSONResponse(
                begin_pod_deletion(self.store, namespace, target.name, grace, dry_run=dry)
            )
        deleted = self.store.delete(rt, namespace, target.name, dry_run=dry)
        propagation = params.get("propagationPolicy") or options.get("propagationPolicy")
        if rt is DEPLOYMENTS and propagation != "Orphan" and not dry:
            self._cascade(deployed=deleted)
        return JSONResponse(deleted)

    def _cascade(self, deployed: JSON) -> None:
        """Background cascading deletion: the pods a deleted Deployment owned go too."""
        uid = deployed["metadata"]["uid"]
        for pod in self.store.list(PODS, deployed["metadata"]["namespace"]):
            if any(ref.get("uid") == uid for ref in pod["metadata"].get("ownerReferences") or []):
                begin_pod_deletion(
                    self.store, pod["metadata"]["namespace"], pod["metadata"]["name"], None
                )

    def _selectors(self, request: Request) -> tuple[list[Any], list[tuple[str, bool, str]]]:
        params = request.query_params
        return (
            parse_label_selector(params.get("labelSelector")),
            parse_field_selector(params.get("fieldSelector")),
        )

    def _get(self, request: Request, target: Target) -> Response:
        assert target.name is not None
        obj = self.store.get(target.rt, target.namespace or "", target.name)
        if wants_table(request.headers.get("accept", "")):
            # `kubectl get pod NAME` prints the same columns as a list.
            return self._table(request, target, [obj], obj["metadata"]["resourceVersion"])
        return JSONResponse(obj)

    def _table(self, request: Request, target: Target, items: list[JSON], rv: str) -> Response:
        include = request.query_params.get("includeObject", "Metadata")
        return JSONResponse(table(target.rt, items, rv, include_object=include))

    def _list(self, request: Request, target: Target) -> Response:
        labels, fields = self._selectors(request)
        items = self.store.list(target.rt, target.namespace, labels, fields)
        rv = str(self.store.resource_version)
        if wants_table(request.headers.get("accept", "")):
            return self._table(request, target, items, rv)
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
        try:
            since = None if rv_text in ("", "0") else int(rv_text)
        except ValueError as error:
            raise bad_request(f"invalid resource version {rv_text!r}") from error
        # As the API server: no timeout (or 0) means its own, 30 to 60 minutes at random.
        timeout = int_param(params, "timeoutSeconds", minimum=0) or _DEFAULT_WATCH_SECONDS * (
            1 + random.random()
        )
        options = WatchOptions(
            namespace=target.namespace,
            labels=labels,
            fields=fields,
            since=since,
            send_initial=params.get("sendInitialEvents") == "true",
            bookmark_seconds=self.bookmark_seconds
            if params.get("allowWatchBookmarks") in ("true", "1")
            else None,
            timeout_seconds=float(timeout),
            as_table=wants_table(request.headers.get("accept", "")),
        )
        return StreamingResponse(
            WatchStream(self.store, target.rt, options).lines(),
            media_type="application/json",
            headers={"Cache-Control": "no-cache, private"},
        )

    async def _review(self, request: Request, target: Target) -> Response:
        """The self reviews (`kubectl auth can-i [--list]`, `kubectl auth whoami`)."""
        if request.method != "POST":
            raise ApiError(405, "MethodNotAllowed", f"{target.rt.plural} accept only POST")
        user: User = request.scope[USER_SCOPE_KEY]
        body = await read_body(request)
        content_type = request.headers.get("content-type", "")
        if target.rt.plural == "selfsubjectaccessreviews":
            answer = reviews.access_review(self.store, user, body, content_type)
        elif target.rt.plural == "selfsubjectrulesreviews":
            answer = reviews.rules_review(self.store, user, body, content_type)
        else:
            answer = reviews.self_review(user)
        return JSONResponse(answer, status_code=201)

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


def create_app(server: ApiServer) -> ASGIApp:
    """The API server's ASGI app (Starlette with bearer-token auth around it)."""

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
        return status_response(not_found_error())

    async def internal(request: Request, exc: Exception) -> Response:
        # A bug, not the caller's mistake; it is logged (with its traceback) by the server.
        log.error("unhandled error on %s %r", request.method, request.url.path, exc_info=exc)
        return status_response(
            ApiError(500, "InternalError", f"Internal error occurred: {type(exc).__name__}")
        )

    app.add_exception_handler(404, unknown)
    app.add_exception_handler(Exception, internal)
    return BearerAuth(app, server.authenticator)
