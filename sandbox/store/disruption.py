"""Pod deletion, readiness and disruption budgets: the rules the API server and controllers share.

A graceful delete marks the pod terminating and leaves the rest to the kubelet; the Eviction
API deletes only when the pod's PodDisruptionBudget allows it; the budget's numbers come from
the pods as the disruption controller computes them.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from sandbox.store.store import (
    DEPLOYMENTS,
    JSON,
    PDBS,
    PODS,
    ApiError,
    Store,
    labels_match,
    now,
    selector_from_label_selector,
    success_status,
    timestamp,
)


def pod_is_ready(pod: JSON) -> bool:
    """Whether the pod's Ready condition is True."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def pod_is_healthy(pod: JSON) -> bool:
    """Ready and not terminating: what a disruption budget and a Service count."""
    return pod_is_ready(pod) and not pod["metadata"].get("deletionTimestamp")


def service_pods(store: Store, service: JSON) -> list[JSON]:
    """The pods a Service's selector picks (none for a Service without a selector)."""
    selector = (service.get("spec") or {}).get("selector") or {}
    if not selector:
        return []
    requirements = selector_from_label_selector({"matchLabels": selector})
    namespace = service["metadata"]["namespace"]
    return [
        pod
        for pod in store.list(PODS, namespace)
        if labels_match(requirements, pod["metadata"].get("labels"))
    ]


def begin_pod_deletion(
    store: Store, namespace: str, name: str, grace: int | None, *, dry_run: bool = False
) -> JSON:
    """Delete a pod as the API server does: mark it terminating, or remove it for grace 0.

    With `dry_run`, the answer is the pod as the delete would leave it, and nothing changes.

    The kubelet sees the deletionTimestamp, runs preStop, sends SIGTERM and removes the object
    once the containers stopped; with grace 0 (force) the object goes at once and the kubelet
    kills the processes.
    """
    pod = store.get(PODS, namespace, name)
    if grace is None:
        grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
    grace = max(0, grace)
    if grace == 0:
        return store.delete(PODS, namespace, name, dry_run=dry_run)
    current = pod["metadata"].get("deletionGracePeriodSeconds")
    if current is not None and int(current) <= grace:
        return pod

    def mark(obj: JSON) -> None:
        moment = now()
        obj["metadata"]["deletionTimestamp"] = timestamp(moment + dt.timedelta(seconds=grace))
        obj["metadata"]["deletionGracePeriodSeconds"] = grace
        if "generation" in obj["metadata"]:
            obj["metadata"]["generation"] = int(obj["metadata"]["generation"]) + 1

    return store.mutate(PODS, namespace, name, mark, dry_run=dry_run)


def scaled_int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """An int, or a percentage ("25%") of `total` rounded up or down, as Kubernetes scales them."""
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
        desired = scaled_int_or_percent(spec["minAvailable"], expected, True)
    elif "maxUnavailable" in spec:
        desired = max(0, expected - scaled_int_or_percent(spec["maxUnavailable"], expected, True))
    else:
        desired = expected
    return {
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": max(0, healthy - desired),
    }


def evict_pod(
    store: Store, namespace: str, name: str, grace: int | None, *, dry_run: bool = False
) -> JSON:
    """The Eviction API: delete the pod unless that would break its disruption budget (429).

    With `dry_run`, the budget is checked and the answer given, and nothing is deleted.
    """
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
    begin_pod_deletion(store, namespace, name, grace, dry_run=dry_run)
    return success_status(201)
