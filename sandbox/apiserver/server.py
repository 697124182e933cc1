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
from functools import partial
from typing import Any
from urllib.parse import unquote

import httpx2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from sandbox.apiserver import custom_metrics_api, openapi, own, proxy, reviews, subresources, writes
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
from sandbox.apiserver.faults import Faults
from sandbox.apiserver.paging import list_query, page, resource_version_param
from sandbox.apiserver.routing import (
    Target,
    method_not_allowed,
    not_found_error,
    rbac_verb,
    request_path,
    resolve_target,
    status_response,
)
from sandbox.apiserver.tables import table, wants_table
from sandbox.apiserver.version import FALLBACK_MINOR, ServedVersion
from sandbox.apiserver.watch import WatchOptions, WatchStream
from sandbox.store.disruption import begin_pod_deletion
from sandbox.store.ownership import delete_dependents
from sandbox.store.store import (
    JSON,
    PODS,
    ApiError,
    Store,
    parse_field_selector,
    parse_label_selector,
)

log = logging.getLogger("sandbox.api")

_SELF_REVIEWS = ("selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews")

_DEFAULT_WATCH_SECONDS = 1800.0
"""The API server's `--min-request-timeout`: a watch without a timeout lasts 1 to 2 times it."""


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
            Route("/sandbox/faults", partial(own.faults, self), methods=["POST"]),
            Route("/sandbox/token", partial(own.token, self), methods=["POST"]),
            Route("/openapi/v2", self._openapi_v2),
            Route("/openapi/v3", self._openapi_v3_index),
            Route("/openapi/v3/{path:path}", self._openapi_v3),
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

    async def _openapi_v2(self, request: Request) -> Response:
        if "protobuf" in request.headers.get("accept", "") and "json" not in request.headers.get(
            "accept", ""
        ):
            # The sandbox serves v2 as JSON only; kubectl reads v3.
            raise ApiError(406, "NotAcceptable", "only application/json is served here")
        return Response(openapi.v2_document(self.version.minor), media_type="application/json")

    async def _openapi_v3_index(self, request: Request) -> Response:
        return JSONResponse(openapi.v3_index(self.version.minor))

    async def _openapi_v3(self, request: Request) -> Response:
        found = openapi.v3_documents(self.version.minor).get(request.path_params["path"])
        if found is None:
            return status_response(not_found_error())
        text, digest = found
        headers = {"Etag": f'"{digest}"'}
        if request.query_params.get("hash") == digest:
            # What clients may cache for as long as the hash names it, as upstream says.
            headers["Cache-Control"] = "public, immutable"
        return Response(text, media_type="application/json", headers=headers)

    async def _group_list(self, request: Request) -> Response:
        return JSONResponse({"kind": "APIGroupList", "apiVersion": "v1", "groups": api_groups()})

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
        if len(parts) <= 2 and not known:
            return status_response(not_found_error())
        if len(parts) == 1:
            return JSONResponse({"kind": "APIGroup", "apiVersion": "v1", **known[0]})
        # A resource path of a group not served is still authorised before its 404.
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
            path = request_path(group, version, parts)
            if path.resource in _SELF_REVIEWS and not request.scope[USER_SCOPE_KEY].anonymous:
                # Anyone signed in may ask what they may do and who they are (system:basic-user).
                return await self._review(request, resolve_target(path))
            # Authorised before it is looked up, as the API server does.
            authorize(
                self.store,
                request.scope[USER_SCOPE_KEY],
                rbac_verb(request, path.name),
                group,
                path.rbac_resource,
                path.namespace,
                path.name,
            )
            target = resolve_target(path)
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
            return await writes.replace(self, request, target)
        if method == "PATCH":
            return await writes.patch(self, request, target)
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
            return await writes.create(self, request, target)
        raise method_not_allowed()

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
        if not dry:
            # The garbage collector's part: what the object controlled goes too, or is orphaned.
            delete_dependents(self.store, deleted, propagation)
        return JSONResponse(deleted)

    def _selectors(
        self, request: Request, target: Target
    ) -> tuple[list[Any], list[tuple[str, bool, str]]]:
        params = request.query_params
        return (
            parse_label_selector(params.get("labelSelector")),
            parse_field_selector(params.get("fieldSelector"), target.rt.key),
        )

    def _get(self, request: Request, target: Target) -> Response:
        assert target.name is not None
        resource_version_param(request.query_params)
        obj = self.store.get(target.rt, target.namespace or "", target.name)
        if wants_table(request.headers.get("accept", "")):
            # `kubectl get pod NAME` prints the same columns as a list.
            return self._table(request, target, [obj], obj["metadata"]["resourceVersion"])
        return JSONResponse(obj)

    def _table(self, request: Request, target: Target, items: list[JSON], rv: str) -> Response:
        include = request.query_params.get("includeObject", "Metadata")
        return JSONResponse(table(target.rt, items, rv, include_object=include))

    def _list(self, request: Request, target: Target) -> Response:
        labels, fields = self._selectors(request, target)
        current = self.store.resource_version
        query = list_query(request.query_params, current, self.store.history_floor(target.rt))
        items = self.store.list(target.rt, target.namespace, labels, fields, at=query.at)
        listed = page(items, query, current)
        if wants_table(request.headers.get("accept", "")):
            include = request.query_params.get("includeObject", "Metadata")
            answer = table(target.rt, listed.items, listed.resource_version, include_object=include)
            answer["metadata"] = listed.metadata
            return JSONResponse(answer)
        return JSONResponse(
            {
                "kind": f"{target.rt.kind}List",
                "apiVersion": target.rt.api_version,
                "metadata": listed.metadata,
                "items": listed.items,
            }
        )

    def _watch(self, request: Request, target: Target) -> Response:
        labels, fields = self._selectors(request, target)
        params = request.query_params
        since = resource_version_param(params)
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

    async def refused(request: Request, exc: Exception) -> Response:
        # Starlette's own refusals (a method a route does not take) as the API server words
        # them: a Status, never plain text.
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            error = method_not_allowed()
            error.headers.update(exc.headers or {})
            return status_response(error)
        return status_response(ApiError(exc.status_code, "BadRequest", str(exc.detail)))

    async def internal(request: Request, exc: Exception) -> Response:
        # A bug, not the caller's mistake; it is logged (with its traceback) by the server.
        log.error("unhandled error on %s %r", request.method, request.url.path, exc_info=exc)
        return status_response(
            ApiError(500, "InternalError", f"Internal error occurred: {type(exc).__name__}")
        )

    app.add_exception_handler(404, unknown)
    app.add_exception_handler(HTTPException, refused)
    app.add_exception_handler(Exception, internal)
    return BearerAuth(app, server.authenticator)
