"""``custom.metrics.k8s.io/v1beta2``: the custom metrics API as prometheus-adapter serves it.

The paths are custom-metrics-apiserver's (``/namespaces/{namespace}/pods/{name}/{metric}``,
``{name}`` ``*`` for every pod the ``labelSelector`` matches, ``metricLabelSelector`` on the
series); the values come from the sandbox's scraper through ``Runtime.custom_metrics``. A metric
the adapter does not serve is a 404 ``NotFound`` worded as ``NewMetricNotFoundError``, a named
pod without a value one worded as ``NewMetricNotFoundForError``; the sandbox serves pods only
(no namespace or object metrics) and this version only.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.apiserver.auth import USER_SCOPE_KEY, authorize
from sandbox.apiserver.context import ServerContext
from sandbox.apiserver.routing import method_not_allowed, not_found_error
from sandbox.store.custom_metrics import GROUP, VERSION, MetricNotServed
from sandbox.store.store import PODS, ApiError, labels_match, parse_label_selector

PODS_ONLY = "the sandbox's custom metrics API serves metrics of pods only"


def serve(server: ServerContext, request: Request, version: str, parts: list[str]) -> Response:
    """One request under ``/apis/custom.metrics.k8s.io/<version>/`` (after the version)."""
    if version != VERSION:
        raise not_found_error()
    if len(parts) != 5 or parts[0] != "namespaces" or parts[2] != "pods":
        raise not_found_error(PODS_ONLY)
    namespace, name, metric = parts[1], parts[3], parts[4]
    if request.method not in ("GET", "HEAD"):
        raise method_not_allowed()
    authorize(
        server.store,
        request.scope[USER_SCOPE_KEY],
        "get",
        GROUP,
        f"pods/{metric}",
        namespace,
        name,
    )
    metric_selector = request.query_params.get("metricLabelSelector") or None
    if metric_selector:
        parse_label_selector(metric_selector)  # a 400 for a malformed one
    if name == "*":
        requirements = parse_label_selector(request.query_params.get("labelSelector"))
        pods = [
            pod["metadata"]["name"]
            for pod in server.store.list(PODS, namespace)
            if labels_match(requirements, pod["metadata"].get("labels"))
        ]
    else:
        pods = [name]
    try:
        answer = server.runtime.custom_metrics(namespace, metric, pods, metric_selector)
    except MetricNotServed as exc:
        raise ApiError(404, "NotFound", str(exc)) from None
    if name != "*" and not answer["items"]:
        raise ApiError(
            404, "NotFound", f"the server could not find the metric {metric} for pods {name}"
        )
    return JSONResponse(answer)
