"""The subresources the sandbox serves beyond plain objects: `log`, `eviction`, `scale`,
ServiceAccount `token`, and `metrics.k8s.io` pod metrics."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from sandbox.apiserver.bodies import (
    delete_options,
    dry_run,
    eviction_protobuf,
    flag,
    int_param,
    query_dry_run,
    read_body,
    read_object,
)
from sandbox.apiserver.context import ServerContext
from sandbox.apiserver.field_checks import Causes, check_integer
from sandbox.apiserver.patch import apply_patch
from sandbox.apiserver.routing import Target
from sandbox.store import logs as container_logs
from sandbox.store.disruption import evict_pod
from sandbox.store.store import (
    JSON,
    PODS,
    SERVICEACCOUNTS,
    ApiError,
    bad_request,
    conflict,
    now,
    parse_timestamp,
    timestamp,
)

_MAX_TOKEN_SECONDS = 48 * 3600
"""As the API server's --service-account-max-token-expiration: a longer ask is clamped."""


async def evict(server: ServerContext, request: Request, target: Target) -> Response:
    """The Eviction API (`pods/NAME/eviction`): delete unless the PodDisruptionBudget forbids it."""
    assert target.name is not None
    if request.method != "POST":
        raise ApiError(405, "MethodNotAllowed", "eviction accepts only POST")
    if "protobuf" in request.headers.get("content-type", ""):
        body = eviction_protobuf(await read_body(request))
    else:
        body = await read_object(request)
    options = delete_options(body.get("deleteOptions"))
    result = evict_pod(
        server.store,
        target.namespace or "",
        target.name,
        options.get("gracePeriodSeconds"),
        dry_run=query_dry_run(request) or dry_run(options.get("dryRun")),
    )
    return JSONResponse(result, status_code=201)


async def container_log(server: ServerContext, request: Request, target: Target) -> Response:
    """`pods/NAME/log`: a container's output as `kubectl logs` asks for it, or followed."""
    assert target.name is not None
    pod = server.store.get(PODS, target.namespace or "", target.name)
    container = request.query_params.get("container")
    every_container = (pod["spec"].get("initContainers") or []) + (
        pod["spec"].get("containers") or []
    )
    if container is not None and container not in {c["name"] for c in every_container}:
        raise bad_request(f"container {container} is not valid for pod {target.name}")
    if container is None:
        containers = pod["spec"].get("containers") or []
        if len(containers) != 1:
            names = " ".join(c["name"] for c in containers)
            raise bad_request(
                f"a container name must be specified for pod {target.name}, "
                f"choose one of: [{names}]"
            )
        container = containers[0]["name"]
    params = request.query_params
    previous = flag(params, "previous")
    try:
        path = server.runtime.log_path(target.namespace or "", target.name, container)
    except ValueError:
        path = None
    if path is not None and previous:
        path = container_logs.previous_path(path)
        if not path.exists():
            raise bad_request(
                f'previous terminated container "{container}" in pod "{target.name}" not found'
            )
    if path is None or not path.exists():
        raise bad_request(f'container "{container}" in pod "{target.name}" is waiting to start')
    since_seconds = int_param(params, "sinceSeconds", minimum=1)
    since_time = params.get("sinceTime")
    since: dt.datetime | None = None
    if since_seconds is not None:
        since = now() - dt.timedelta(seconds=since_seconds)
    elif since_time:
        try:
            since = parse_timestamp(since_time)
        except ValueError:
            raise bad_request(f"sinceTime: Invalid value: {since_time!r}") from None
    timestamps = flag(params, "timestamps")
    offset = path.stat().st_size
    text = container_logs.read_log(
        path,
        tail=int_param(params, "tailLines", minimum=0),
        since=since,
        timestamps=timestamps,
        limit_bytes=int_param(params, "limitBytes", minimum=1),
    )
    if not flag(params, "follow") or previous:
        return Response(text, media_type="text/plain")
    store, namespace, uid = server.store, target.namespace or "", pod["metadata"]["uid"]
    name = target.name

    def still_there() -> bool:
        current = store.find(PODS, namespace, name)
        return current is not None and current["metadata"]["uid"] == uid

    async def stream() -> AsyncIterator[bytes]:
        """The log so far, then what the container writes, until the pod is gone."""
        yield text
        async for chunk in container_logs.follow(path, offset, still_there, timestamps):
            yield chunk

    return StreamingResponse(stream(), media_type="text/plain")


async def token_request(server: ServerContext, request: Request, target: Target) -> Response:
    """TokenRequest (`kubectl create token SA`): a token acting as the ServiceAccount."""
    assert target.name is not None
    if request.method != "POST":
        raise ApiError(405, "MethodNotAllowed", "token accepts only POST")
    namespace = target.namespace or "default"
    server.store.get(SERVICEACCOUNTS, namespace, target.name)
    if query_dry_run(request):
        # A dry-run token would be a real credential the caller did not mean to get.
        raise bad_request("the sandbox does not issue tokens in a dry run")
    # kubectl sends this request as protobuf, which the sandbox does not decode: only
    # expirationSeconds matters, and the default serves.
    protobuf = "protobuf" in request.headers.get("content-type", "")
    body = {} if protobuf else await read_object(request, allow_empty=True)
    spec = body.get("spec") or {}
    if not isinstance(spec, dict):
        raise bad_request("spec: Invalid value: must be an object")
    seconds = spec.get("expirationSeconds") or 3600
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 600:
        raise bad_request(
            f"spec.expirationSeconds: Invalid value: {seconds!r}: may not specify a "
            "duration less than 10 minutes"
        )
    # As the API server's --service-account-max-token-expiration: a longer ask is clamped.
    seconds = min(seconds, _MAX_TOKEN_SECONDS)
    token = server.authenticator.issue(namespace, target.name, seconds)
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


async def scale(server: ServerContext, request: Request, target: Target) -> Response:
    """`deployments/NAME/scale`: read or set the replicas (GET, PUT, PATCH)."""
    assert target.name is not None
    namespace = target.namespace or ""
    deployment = server.store.get(target.rt, namespace, target.name)

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
        wanted = await read_object(request)
    elif request.method == "PATCH":
        wanted = apply_patch(
            current, await read_body(request), request.headers.get("content-type", "")
        )
    else:
        raise ApiError(405, "MethodNotAllowed", "scale accepts GET, PUT and PATCH")
    wanted_meta = wanted.get("metadata")
    version = wanted_meta.get("resourceVersion") if isinstance(wanted_meta, dict) else None
    if request.method == "PUT" and version and version != deployment["metadata"]["resourceVersion"]:
        raise conflict(target.rt, target.name)
    wanted_spec = wanted.get("spec")
    replicas = wanted_spec.get("replicas") if isinstance(wanted_spec, dict) else None
    causes = Causes()
    replicas = check_integer(causes, replicas, "spec.replicas", minimum=0, required=True)
    if causes.items or replicas is None:
        listed = ", ".join(f"{c['field']}: {c['message']}" for c in causes.items)
        raise ApiError(
            422,
            "Invalid",
            f'Scale.autoscaling "{target.name}" is invalid: {listed}',
            {"name": target.name, "group": "autoscaling", "kind": "Scale", "causes": causes.items},
        )

    def set_replicas(obj: JSON) -> None:
        obj["spec"]["replicas"] = replicas

    updated = server.store.mutate(
        target.rt, namespace, target.name, set_replicas, dry_run=query_dry_run(request)
    )
    return JSONResponse(scale_of(updated))


def pod_metrics(server: ServerContext, target: Target) -> Response:
    """`metrics.k8s.io` PodMetrics, one or a list, from the latest samples."""
    items = server.runtime.pod_metrics(target.namespace)
    if target.name is not None:
        for item in items:
            if item["metadata"]["name"] == target.name:
                return JSONResponse(item)
        raise ApiError(404, "NotFound", f'podmetrics.metrics.k8s.io "{target.name}" not found')
    return JSONResponse(pod_metrics_list(items))


def pod_metrics_list(items: list[JSON]) -> JSON:
    """A `PodMetricsList` wrapping rendered `PodMetrics` objects."""
    return {
        "kind": "PodMetricsList",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": [dict(item) for item in items],
    }
