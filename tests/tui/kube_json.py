"""Small converters from the API server's JSON to the cockpit's frozen views, for tests.

The cockpit's adapter (`tui.k8s`) owns the real conversion; these exist so the timeline and the
explainer can be checked against objects a real controller wrote, without depending on the
adapter's progress.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tui.model import HpaCondition, HpaMetric, HpaView, PodView


def parse_time(text: str | None) -> float | None:
    """An RFC 3339 timestamp as epoch seconds."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pod_view(pod: dict[str, Any]) -> PodView:
    """A pod object as the pods table sees it."""
    metadata = pod["metadata"]
    status = pod.get("status", {})
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
    is_ready = ready is not None and ready["status"] == "True"
    containers = status.get("containerStatuses", [])
    return PodView(
        name=metadata["name"],
        uid=metadata["uid"],
        phase=status.get("phase", "Pending"),
        status="Terminating" if metadata.get("deletionTimestamp") else status.get("phase", ""),
        ready=is_ready,
        ready_containers=sum(1 for c in containers if c.get("ready")),
        total_containers=len(containers),
        restarts=sum(c.get("restartCount", 0) for c in containers),
        created_at=parse_time(metadata.get("creationTimestamp")),
        started_at=parse_time(status.get("startTime")),
        ready_at=parse_time(ready.get("lastTransitionTime")) if ready and is_ready else None,
        deleting_at=parse_time(metadata.get("deletionTimestamp")),
    )


def _metric(spec: dict[str, Any], status: list[dict[str, Any]]) -> HpaMetric:
    kind = spec["type"]
    key = kind[0].lower() + kind[1:]
    source = spec.get(key, {})
    target = source.get("target", {})
    current: dict[str, Any] = {}
    for entry in status:
        body = entry.get(key, {})
        if (
            entry.get("type") == kind
            and body.get("name") == source.get("name")
            and body.get("container") == source.get("container")
        ):
            current = body.get("current", {})
    return HpaMetric(
        source=kind,
        name=source.get("name", ""),
        container=source.get("container"),
        target_utilization=target.get("averageUtilization"),
        target_value=target.get("averageValue") or target.get("value"),
        current_utilization=current.get("averageUtilization"),
        current_value=current.get("averageValue") or current.get("value"),
    )


def hpa_view(hpa: dict[str, Any]) -> HpaView:
    """An `autoscaling/v2` HPA object as the HPA panel sees it."""
    spec = hpa["spec"]
    status = hpa.get("status", {})
    behavior = spec.get("behavior") or {}
    return HpaView(
        name=hpa["metadata"]["name"],
        min_replicas=spec.get("minReplicas", 1),
        max_replicas=spec["maxReplicas"],
        current_replicas=status.get("currentReplicas", 0),
        desired_replicas=status.get("desiredReplicas", 0),
        metrics=tuple(_metric(m, status.get("currentMetrics") or []) for m in spec["metrics"]),
        conditions=tuple(
            HpaCondition(
                type=c["type"],
                status=c["status"],
                reason=c.get("reason", ""),
                message=c.get("message", ""),
                since=parse_time(c.get("lastTransitionTime")),
            )
            for c in status.get("conditions", [])
        ),
        last_scale_at=parse_time(status.get("lastScaleTime")),
        scale_up_window_seconds=(behavior.get("scaleUp") or {}).get(
            "stabilizationWindowSeconds", 0
        ),
        scale_down_window_seconds=(behavior.get("scaleDown") or {}).get(
            "stabilizationWindowSeconds", 300
        ),
    )
