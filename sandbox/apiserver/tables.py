"""Server-side printing: `meta.k8s.io/v1` Table objects, as `kubectl get` asks for them.

The columns follow kubectl's built-in printers for the kinds the sandbox serves (pods,
deployments, ReplicaSets, HPAs, events, services, endpoints, PDBs, config maps); any other kind
gets NAME and AGE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.store.store import JSON, ResourceType, now, parse_timestamp


def human_duration(seconds: float) -> str:
    """Kubernetes' `duration.HumanDuration` (what the AGE column shows)."""
    if seconds < -1:
        return "<invalid>"
    total = max(0, int(seconds))
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        rest = total % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = total // 3600
    if hours < 8:
        rest_minutes = (total % 3600) // 60
        return f"{hours}h{rest_minutes}m" if rest_minutes else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest_hours = hours % 24
        return f"{hours // 24}d{rest_hours}h" if rest_hours else f"{hours // 24}d"
    return f"{hours // 24}d"


def age(text: str | None) -> str:
    """Age of a timestamp, or `<unknown>`."""
    if not text:
        return "<unknown>"
    return human_duration((now() - parse_timestamp(text)).total_seconds())


def _column(name: str, kind: str = "string", description: str = "", priority: int = 0) -> JSON:
    column: JSON = {
        "name": name,
        "type": kind,
        "format": "name" if name == "Name" else "",
        "description": description or name,
        "priority": priority,
    }
    return column


def pod_status_text(pod: JSON) -> str:
    """The STATUS column of `kubectl get pods` (kubectl's printPod, for the cases seen here)."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    spec = pod.get("spec") or {}
    init_specs = spec.get("initContainers") or []
    initializing = False
    for index, init_status in enumerate(status.get("initContainerStatuses") or []):
        state = init_status.get("state") or {}
        restartable = any(
            c.get("name") == init_status.get("name") and c.get("restartPolicy") == "Always"
            for c in init_specs
        )
        terminated = state.get("terminated")
        if terminated and terminated.get("exitCode") == 0:
            continue
        if restartable and init_status.get("started"):
            continue
        initializing = True
        if terminated:
            reason = "Init:" + (terminated.get("reason") or "Error")
        elif (state.get("waiting") or {}).get("reason") not in (None, "", "PodInitializing"):
            reason = "Init:" + state["waiting"]["reason"]
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        break
    if not initializing:
        has_running = False
        for container in reversed(status.get("containerStatuses") or []):
            state = container.get("state") or {}
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif (state.get("terminated") or {}).get("reason"):
                reason = state["terminated"]["reason"]
            elif state.get("running") and container.get("ready"):
                has_running = True
        if reason == "Completed" and has_running:
            reason = "Running"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod_row(pod: JSON) -> list[Any]:
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    sidecars = {
        c["name"] for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
    }
    statuses = list(status.get("containerStatuses") or []) + [
        s for s in status.get("initContainerStatuses") or [] if s.get("name") in sidecars
    ]
    total = len(spec.get("containers") or []) + len(sidecars)
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    last_restart = max(
        (
            ((s.get("lastState") or {}).get("terminated") or {}).get("finishedAt") or ""
            for s in statuses
        ),
        default="",
    )
    restarts_text = (
        f"{restarts} ({age(last_restart)} ago)" if restarts and last_restart else str(restarts)
    )
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        pod_status_text(pod),
        restarts_text,
        age(pod["metadata"].get("creationTimestamp")),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
    ]


_POD_COLUMNS = [
    _column("Name"),
    _column(
        "Ready", description="The aggregate readiness state of this pod for accepting traffic."
    ),
    _column("Status", description="The aggregate status of the containers in this pod."),
    _column(
        "Restarts",
        description="The number of times the containers in this pod have been restarted.",
    ),
    _column("Age"),
    _column("IP", priority=1),
    _column("Node", priority=1),
]


def _template_cells(spec: JSON) -> list[Any]:
    """The wide columns of a Deployment or ReplicaSet: CONTAINERS, IMAGES, SELECTOR."""
    containers = (spec.get("template") or {}).get("spec", {}).get("containers") or []
    selector = ",".join(
        f"{k}={v}" for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items()
    )
    return [
        ",".join(c["name"] for c in containers),
        ",".join(c.get("image", "") for c in containers),
        selector,
    ]


def _deployment_row(deployment: JSON) -> list[Any]:
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    return [
        deployment["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        int(status.get("updatedReplicas", 0)),
        int(status.get("availableReplicas", 0)),
        age(deployment["metadata"].get("creationTimestamp")),
        *_template_cells(spec),
    ]


_DEPLOYMENT_COLUMNS = [
    _column("Name"),
    _column("Ready"),
    _column("Up-to-date", "integer"),
    _column("Available", "integer"),
    _column("Age"),
    _column("Containers", priority=1),
    _column("Images", priority=1),
    _column("Selector", priority=1),
]


def hpa_targets_text(hpa: JSON) -> str:
    """The TARGETS column of `kubectl get hpa`."""
    spec_metrics = (hpa.get("spec") or {}).get("metrics") or []
    current_metrics = (hpa.get("status") or {}).get("currentMetrics") or []
    parts = []
    for index, metric in enumerate(spec_metrics):
        kind = metric.get("type", "")
        if kind == "Pods":
            # kubectl's formatHPAMetrics: "<current average>/<target average>", no name
            current_pods = (
                (current_metrics[index].get("pods") or {}) if index < len(current_metrics) else {}
            )
            current_value = (current_pods.get("current") or {}).get("averageValue")
            target_value = ((metric.get("pods") or {}).get("target") or {}).get("averageValue")
            parts.append(f"{current_value or '<unknown>'}/{target_value}")
            continue
        source_key = {"ContainerResource": "containerResource", "Resource": "resource"}.get(kind)
        if source_key is None:
            parts.append("<unknown>/<unknown>")
            continue
        source = metric.get(source_key) or {}
        target = source.get("target") or {}
        current_text = "<unknown>"
        if index < len(current_metrics):
            current = (current_metrics[index].get(source_key) or {}).get("current") or {}
            if current.get("averageUtilization") is not None:
                current_text = f"{current['averageUtilization']}%"
            elif current.get("averageValue") is not None:
                current_text = str(current["averageValue"])
        if target.get("averageUtilization") is not None:
            parts.append(f"{source.get('name')}: {current_text}/{target['averageUtilization']}%")
        else:
            parts.append(f"{source.get('name')}: {current_text}/{target.get('averageValue')}")
    return ", ".join(parts) or "<none>"


def _hpa_row(hpa: JSON) -> list[Any]:
    spec = hpa.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    return [
        hpa["metadata"]["name"],
        f"{ref.get('kind')}/{ref.get('name')}",
        hpa_targets_text(hpa),
        spec.get("minReplicas", 1),
        spec.get("maxReplicas"),
        (hpa.get("status") or {}).get("currentReplicas", 0),
        age(hpa["metadata"].get("creationTimestamp")),
    ]


_HPA_COLUMNS = [
    _column("Name"),
    _column("Reference"),
    _column("Targets"),
    _column("MinPods", "integer"),
    _column("MaxPods", "integer"),
    _column("Replicas", "integer"),
    _column("Age"),
]


def _event_row(event: JSON) -> list[Any]:
    involved = event.get("involvedObject") or {}
    last = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event["metadata"].get("creationTimestamp")
    )
    return [
        age(last),
        event.get("type", ""),
        event.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        event.get("message", ""),
    ]


_EVENT_COLUMNS = [
    _column("Last Seen"),
    _column("Type"),
    _column("Reason"),
    _column("Object"),
    _column("Message"),
]


def _service_row(service: JSON) -> list[Any]:
    spec = service.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    return [
        service["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP", "<none>"),
        "<none>",
        ports or "<none>",
        age(service["metadata"].get("creationTimestamp")),
    ]


_SERVICE_COLUMNS = [
    _column("Name"),
    _column("Type"),
    _column("Cluster-IP"),
    _column("External-IP"),
    _column("Port(s)"),
    _column("Age"),
]


def _endpoints_row(endpoints: JSON) -> list[Any]:
    addresses = [
        f"{address.get('ip')}:{port.get('port')}"
        for subset in endpoints.get("subsets") or []
        for address in subset.get("addresses") or []
        for port in subset.get("ports") or []
    ]
    # kubectl's formatEndpoints: three at most, then how many more.
    shown = ",".join(addresses[:3]) + (
        f" + {len(addresses) - 3} more..." if len(addresses) > 3 else ""
    )
    return [
        endpoints["metadata"]["name"],
        shown or "<none>",
        age(endpoints["metadata"].get("creationTimestamp")),
    ]


_ENDPOINTS_COLUMNS = [_column("Name"), _column("Endpoints"), _column("Age")]


def _pdb_row(pdb: JSON) -> list[Any]:
    spec = pdb.get("spec") or {}
    return [
        pdb["metadata"]["name"],
        str(spec.get("minAvailable", "N/A")),
        str(spec.get("maxUnavailable", "N/A")),
        (pdb.get("status") or {}).get("disruptionsAllowed", 0),
        age(pdb["metadata"].get("creationTimestamp")),
    ]


_PDB_COLUMNS = [
    _column("Name"),
    _column("Min Available"),
    _column("Max Unavailable"),
    _column("Allowed Disruptions", "integer"),
    _column("Age"),
]


def _configmap_row(configmap: JSON) -> list[Any]:
    return [
        configmap["metadata"]["name"],
        len(configmap.get("data") or {}) + len(configmap.get("binaryData") or {}),
        age(configmap["metadata"].get("creationTimestamp")),
    ]


def _replicaset_row(replicaset: JSON) -> list[Any]:
    spec = replicaset.get("spec") or {}
    status = replicaset.get("status") or {}
    return [
        replicaset["metadata"]["name"],
        int(spec.get("replicas", 1)),
        int(status.get("replicas", 0)),
        int(status.get("readyReplicas", 0)),
        age(replicaset["metadata"].get("creationTimestamp")),
        *_template_cells(spec),
    ]


_REPLICASET_COLUMNS = [
    _column("Name"),
    _column("Desired", "integer", "Number of desired pods."),
    _column("Current", "integer", "Number of actual replicas."),
    _column("Ready", "integer", "The number of ready replicas for this replica set."),
    _column("Age"),
    _column("Containers", priority=1),
    _column("Images", priority=1),
    _column("Selector", priority=1),
]


_CONFIGMAP_COLUMNS = [_column("Name"), _column("Data", "integer"), _column("Age")]


def _default_row(obj: JSON) -> list[Any]:
    return [obj["metadata"]["name"], age(obj["metadata"].get("creationTimestamp"))]


_DEFAULT_COLUMNS = [_column("Name"), _column("Age")]

_PRINTERS: dict[str, tuple[list[JSON], Callable[[JSON], list[Any]]]] = {
    "/pods": (_POD_COLUMNS, _pod_row),
    "apps/deployments": (_DEPLOYMENT_COLUMNS, _deployment_row),
    "apps/replicasets": (_REPLICASET_COLUMNS, _replicaset_row),
    "autoscaling/horizontalpodautoscalers": (_HPA_COLUMNS, _hpa_row),
    "/events": (_EVENT_COLUMNS, _event_row),
    "/services": (_SERVICE_COLUMNS, _service_row),
    "/endpoints": (_ENDPOINTS_COLUMNS, _endpoints_row),
    "policy/poddisruptionbudgets": (_PDB_COLUMNS, _pdb_row),
    "/configmaps": (_CONFIGMAP_COLUMNS, _configmap_row),
}


def _partial_metadata(obj: JSON) -> JSON:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def table(
    rt: ResourceType,
    items: list[JSON],
    resource_version: str,
    *,
    include_object: str = "Metadata",
    with_columns: bool = True,
) -> JSON:
    """A Table of `items` with the columns kubectl shows for the resource."""
    columns, row = _PRINTERS.get(rt.key, (_DEFAULT_COLUMNS, _default_row))
    rows = []
    for obj in items:
        entry: JSON = {"cells": row(obj)}
        if include_object == "Object":
            entry["object"] = obj
        elif include_object != "None":
            entry["object"] = _partial_metadata(obj)
        rows.append(entry)
    result: JSON = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns if with_columns else [],
        "rows": rows,
    }
    return result


def wants_table(accept: str) -> bool:
    """Whether an Accept header asks for a Table."""
    return any("as=Table" in part for part in accept.split(","))
