"""The Deployment controller's rules, after Kubernetes' `pkg/controller/deployment/util` and
`progress.go`: the `pod-template-hash`, the revision annotations, the rolling update's
fenceposts, and the status with its `Available` and `Progressing` conditions.

The hash is upstream's recipe (32-bit FNV-1a, the collision count mixed in as 8 little-endian
bytes, the decimal digits mapped onto Kubernetes' safe alphabet) applied to the template as
canonical JSON, where upstream hashes Go's `spew` dump of the struct: that dump cannot be made
outside Go, so the values differ from a cluster's while being as stable and as shaped.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from sandbox.store.disruption import scaled_int_or_percent
from sandbox.store.store import JSON, parse_timestamp, timestamp

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
_NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
}
"""Deployment annotations a ReplicaSet does not inherit (`skipCopyAnnotation`)."""

NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
DEFAULT_PROGRESS_DEADLINE = 600
"""`spec.progressDeadlineSeconds` when the manifest leaves it out (the API's default)."""
_NO_DEADLINE = 2**31 - 1

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def compute_hash(template: JSON, collision_count: int | None = None) -> str:
    """The `pod-template-hash` of a pod template (see the module's note)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += int(collision_count).to_bytes(4, "little") + bytes(4)
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(digit) % len(_SAFE_ALPHABET)] for digit in str(value))


def without_hash(template: JSON) -> JSON:
    """A pod template without its `pod-template-hash` label (`EqualIgnoreHash`)."""
    copied = copy.deepcopy(template)
    labels = (copied.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return copied


def revision(obj: JSON) -> int:
    """An object's `deployment.kubernetes.io/revision` (0 when it has none)."""
    text = (obj["metadata"].get("annotations") or {}).get(REVISION, "0")
    try:
        return int(text)
    except ValueError:
        return 0


def replicas_of(obj: JSON) -> int:
    """`spec.replicas` (1 when unset, the API's default)."""
    return int((obj.get("spec") or {}).get("replicas", 1))


def status_count(obj: JSON, field: str) -> int:
    """One of `status`'s counts (0 when left out)."""
    return int((obj.get("status") or {}).get(field) or 0)


def is_rolling(deployment: JSON) -> bool:
    """Whether the strategy is RollingUpdate (the default) rather than Recreate."""
    return ((deployment["spec"].get("strategy") or {}).get("type") or "RollingUpdate") != "Recreate"


def fenceposts(deployment: JSON) -> tuple[int, int]:
    """`maxSurge` and `maxUnavailable` in pods (`ResolveFenceposts`): surge rounds up,
    unavailability down, and both zero means one unavailable."""
    if not is_rolling(deployment):
        return 0, 0
    rolling = (deployment["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    replicas = replicas_of(deployment)
    surge = scaled_int_or_percent(rolling.get("maxSurge", "25%"), replicas, True)
    unavailable = scaled_int_or_percent(rolling.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_unavailable(deployment: JSON) -> int:
    """How many pods may be unavailable (`MaxUnavailable`: none for Recreate)."""
    return min(fenceposts(deployment)[1], replicas_of(deployment))


def progress_deadline(deployment: JSON) -> int | None:
    """`spec.progressDeadlineSeconds`, or None when there is no deadline (`MaxInt32`)."""
    seconds = deployment["spec"].get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE)
    return None if seconds is None or int(seconds) == _NO_DEADLINE else int(seconds)


def replicaset_annotations(
    deployment: JSON, current: dict[str, str], rev: int, creating: bool = False
) -> dict[str, str]:
    """A ReplicaSet's annotations (`SetNewReplicaSetAnnotations`): the Deployment's own, its
    revision (an older one kept in `revision-history`), and, on one being created, the desired
    and max replicas (an existing one keeps those it was sized for until it is scaled)."""
    annotations = dict(current)
    for key, value in (deployment["metadata"].get("annotations") or {}).items():
        if key not in _NOT_COPIED:
            annotations[key] = value
    old = annotations.get(REVISION)
    if old is not None and old != str(rev) and int(old or 0) < rev:
        history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
        annotations[REVISION_HISTORY] = ",".join([*history, old])
    if old is None or int(old or 0) < rev:
        annotations[REVISION] = str(rev)
    if creating:
        annotations.update(replica_annotations(deployment))
    return annotations


def replica_annotations(deployment: JSON) -> dict[str, str]:
    """`desired-replicas` and `max-replicas` for the Deployment's ReplicaSets."""
    replicas = replicas_of(deployment)
    return {
        DESIRED_REPLICAS: str(replicas),
        MAX_REPLICAS: str(replicas + fenceposts(deployment)[0]),
    }


# -- conditions and status --------------------------------------------------------------------


def condition(status: JSON, kind: str) -> JSON | None:
    """The status's condition of this type, if any."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def set_condition(status: JSON, kind: str, state: str, reason: str, message: str) -> None:
    """`SetDeploymentCondition`: nothing changes when status and reason are the same; a new
    status moves `lastTransitionTime`; every change moves `lastUpdateTime`."""
    current = condition(status, kind)
    if current is not None and current["status"] == state and current["reason"] == reason:
        return
    stamp = timestamp()
    transition = current["lastTransitionTime"] if current and current["status"] == state else stamp
    remove_condition(status, kind)
    status.setdefault("conditions", []).append(
        {
            "type": kind,
            "status": state,
            "lastUpdateTime": stamp,
            "lastTransitionTime": transition,
            "reason": reason,
            "message": message,
        }
    )


def remove_condition(status: JSON, kind: str) -> None:
    """Drop the condition of this type."""
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != kind]


def calculate_status(deployment: JSON, all_rs: list[JSON], new_rs: JSON | None) -> JSON:
    """The status the counts say (`calculateStatus`), with the Available condition; the other
    conditions are carried over."""
    available = sum(status_count(rs, "availableReplicas") for rs in all_rs)
    total = sum(replicas_of(rs) for rs in all_rs)
    old = deployment.get("status") or {}
    status: JSON = {
        "observedGeneration": int(deployment["metadata"].get("generation", 1)),
        "replicas": sum(status_count(rs, "replicas") for rs in all_rs),
        "updatedReplicas": status_count(new_rs, "replicas") if new_rs else 0,
        "readyReplicas": sum(status_count(rs, "readyReplicas") for rs in all_rs),
        "availableReplicas": available,
        "unavailableReplicas": max(0, total - available),
        "conditions": copy.deepcopy(old.get("conditions") or []),
    }
    if "collisionCount" in old:
        status["collisionCount"] = old["collisionCount"]
    if available >= replicas_of(deployment) - max_unavailable(deployment):
        set_condition(
            status,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    else:
        set_condition(
            status,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    return status


def complete(deployment: JSON, status: JSON) -> bool:
    """`DeploymentComplete`: every replica updated and available, none old, spec observed."""
    replicas = replicas_of(deployment)
    return (
        int(status.get("updatedReplicas", 0)) == replicas
        and int(status.get("replicas", 0)) == replicas
        and int(status.get("availableReplicas", 0)) == replicas
        and int(status.get("observedGeneration", 0))
        >= int(deployment["metadata"].get("generation", 1))
    )


def progressing(deployment: JSON, status: JSON) -> bool:
    """`DeploymentProgressing`: more updated, fewer old, more ready or more available pods."""
    old = deployment.get("status") or {}

    def count(s: JSON, field: str) -> int:
        return int(s.get(field) or 0)

    return (
        count(status, "updatedReplicas") > count(old, "updatedReplicas")
        or count(status, "replicas") - count(status, "updatedReplicas")
        < count(old, "replicas") - count(old, "updatedReplicas")
        or count(status, "readyReplicas") > count(old, "readyReplicas")
        or count(status, "availableReplicas") > count(old, "availableReplicas")
    )


def timed_out(deployment: JSON, status: JSON, now: float) -> bool:
    """`DeploymentTimedOut`: no progress since the Progressing condition's last update for
    longer than the deadline."""
    deadline = progress_deadline(deployment)
    progress = condition(status, "Progressing")
    if deadline is None or progress is None or progress["reason"] == NEW_RS_AVAILABLE:
        return False
    if progress["reason"] == TIMED_OUT:
        return True
    return parse_timestamp(progress["lastUpdateTime"]).timestamp() + deadline < now


def seconds_to_deadline(deployment: JSON, status: JSON, now: float) -> float | None:
    """When to look again for a timeout (`requeueStuckDeployment`), if the rollout is open."""
    deadline = progress_deadline(deployment)
    progress = condition(status, "Progressing")
    if deadline is None or progress is None or progress["reason"] in (TIMED_OUT,):
        return None
    if complete(deployment, status):
        return None
    left = parse_timestamp(progress["lastUpdateTime"]).timestamp() + deadline - now
    return max(0.0, left) + 1.0


def rollout_conditions(deployment: JSON, status: JSON, new_rs: JSON | None, now: float) -> None:
    """The Progressing condition after a pass of the rollout (`syncRolloutStatus`)."""
    if progress_deadline(deployment) is None:
        remove_condition(status, "Progressing")
        return
    current = condition(deployment.get("status") or {}, "Progressing")
    done = (
        status["replicas"] == status["updatedReplicas"]
        and current is not None
        and current["reason"] == NEW_RS_AVAILABLE
    )
    if done:
        return
    what = (
        f'ReplicaSet "{new_rs["metadata"]["name"]}"'
        if new_rs
        else f'Deployment "{_name(deployment)}"'
    )
    if complete(deployment, status):
        set_condition(
            status, "Progressing", "True", NEW_RS_AVAILABLE, f"{what} has successfully progressed."
        )
    elif progressing(deployment, status):
        transition = (
            current["lastTransitionTime"] if current and current["status"] == "True" else None
        )
        remove_condition(status, "Progressing")
        set_condition(status, "Progressing", "True", "ReplicaSetUpdated", f"{what} is progressing.")
        if transition is not None:
            progress = condition(status, "Progressing")
            assert progress is not None
            progress["lastTransitionTime"] = transition
    elif timed_out(deployment, status, now):
        set_condition(
            status, "Progressing", "False", TIMED_OUT, f"{what} has timed out progressing."
        )


def _name(obj: JSON) -> str:
    return str(obj["metadata"]["name"])


def zero_counts_dropped(status: JSON) -> JSON:
    """The status as the API server's JSON shows it: zero counts are left out (`omitempty`)."""
    kept: dict[str, Any] = {}
    for key, value in status.items():
        if value or key in ("replicas", "observedGeneration", "conditions", "collisionCount"):
            kept[key] = value
    return kept
