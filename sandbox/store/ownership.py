"""Owner references as the API server and its controllers use them: who controls an object, the
reference a controller writes on what it creates, and the garbage collector's cascading deletion.

A Deployment controls its ReplicaSets and a ReplicaSet its pods, each through one owner reference
with `controller: true` and `blockOwnerDeletion: true` (`metav1.NewControllerRef`). Deleting an
owner deletes what it controls (background propagation, `kubectl delete`'s default) or, with
`propagationPolicy=Orphan`, strips the reference so the dependents live on unowned, as the
garbage collector's orphan finalizer does. Shared by the API server (deletions) and the
controllers (adoption), so it lives here.
"""

from __future__ import annotations

import contextlib

from sandbox.store.apierrors import ApiError
from sandbox.store.disruption import begin_pod_deletion
from sandbox.store.resources import JSON, PODS, REPLICASETS, ResourceType
from sandbox.store.store import Store

DEPENDENTS: dict[str, ResourceType] = {"Deployment": REPLICASETS, "ReplicaSet": PODS}
"""What each owning kind's controller creates: the chains the garbage collector follows."""


def controller_reference(owner: JSON) -> JSON:
    """The owner reference a controller puts on an object it creates."""
    return {
        "apiVersion": owner.get("apiVersion", "apps/v1"),
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: JSON) -> str | None:
    """The uid of the object's controller (its owner reference with `controller: true`)."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def is_controlled_by(obj: JSON, owner: JSON) -> bool:
    """Whether `owner` is `obj`'s controller."""
    return controller_uid(obj) == owner["metadata"]["uid"]


def adopt(store: Store, rt: ResourceType, obj: JSON, owner: JSON) -> JSON | None:
    """Make `owner` the controller of an orphan (the controller reference managers' adoption);
    None when it is gone or has meanwhile found a controller."""

    def take(current: JSON) -> None:
        if controller_uid(current) is None:
            refs = current["metadata"].setdefault("ownerReferences", [])
            refs.append(controller_reference(owner))

    meta = obj["metadata"]
    try:
        adopted = store.mutate(rt, meta["namespace"], meta["name"], take)
    except ApiError:
        return None
    return adopted if is_controlled_by(adopted, owner) else None


def delete_dependents(store: Store, owner: JSON, propagation: str | None) -> None:
    """After `owner` is deleted: delete what it controlled, down the chain (background and
    foreground propagation alike), or orphan it (`Orphan`)."""
    rt = DEPENDENTS.get(str(owner.get("kind")))
    if rt is None:
        return
    namespace = owner["metadata"]["namespace"]
    uid = owner["metadata"]["uid"]
    for dependent in store.list(rt, namespace):
        refs = dependent["metadata"].get("ownerReferences") or []
        if not any(ref.get("uid") == uid for ref in refs):
            continue
        name = dependent["metadata"]["name"]
        with contextlib.suppress(ApiError):  # already gone: nothing to do
            if propagation == "Orphan":
                store.mutate(rt, namespace, name, lambda obj: _drop_owner(obj, uid))
            elif rt is PODS:
                begin_pod_deletion(store, namespace, name, None)
            else:
                delete_dependents(store, store.delete(rt, namespace, name), propagation)


def _drop_owner(obj: JSON, uid: str) -> None:
    refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
    if refs:
        obj["metadata"]["ownerReferences"] = refs
    else:
        obj["metadata"].pop("ownerReferences", None)
