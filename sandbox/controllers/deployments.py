"""The Deployment controller, after Kubernetes' `pkg/controller/deployment` (`sync.go`,
`rolling.go`, `recreate.go`, `progress.go`): a Deployment owns ReplicaSets, one per pod template
(`<deployment>-<pod-template-hash>`), and the ReplicaSet controller (`replicasets.py`) keeps
their pods.

- The new ReplicaSet is the one whose template equals the Deployment's (the hash label aside);
  it takes the next revision (`deployment.kubernetes.io/revision`, on it and the Deployment), so
  `kubectl rollout history` and `undo` read and restore real revisions.
- A rolling update scales the new ReplicaSet up while the pods of all ReplicaSets stay within
  `replicas + maxSurge`, and the old ones down while `replicas - maxUnavailable` stay available
  (`reconcileNewReplicaSet`, `reconcileOldReplicaSets` with `cleanupUnhealthyReplicas`);
  Recreate scales the old ones to zero and waits for their pods to go before the new one starts.
- A scale alone (the HPA's, through `/scale`) resizes the active ReplicaSet at once, or all of
  them in proportion mid-rollout (`scale`, `getProportion`); a paused Deployment only scales.
- Status and conditions as `calculateStatus` and `syncRolloutStatus` write them
  (`deployment_util.py`), re-checked when the progress deadline falls due.
- Old ReplicaSets beyond `revisionHistoryLimit` (10) are deleted once the rollout is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from sandbox.controllers import deployment_util as du
from sandbox.controllers.isolation import object_key
from sandbox.controllers.reconciler import Reconciler
from sandbox.store.events import EventRecorder
from sandbox.store.ownership import adopt, controller_reference, controller_uid, is_controlled_by
from sandbox.store.resources import REPLICASETS
from sandbox.store.store import (
    DEPLOYMENTS,
    JSON,
    PODS,
    ApiError,
    Store,
    labels_match,
    parse_timestamp,
    selector_from_label_selector,
)


def _created(rs: JSON) -> tuple[float, str]:
    stamp = rs["metadata"].get("creationTimestamp")
    return (parse_timestamp(stamp).timestamp() if stamp else 0.0, rs["metadata"]["name"])


def _active(replicasets: list[JSON]) -> list[JSON]:
    return [rs for rs in replicasets if du.replicas_of(rs) > 0]


class DeploymentController(Reconciler):
    """Rolls each Deployment's ReplicaSets towards its template and writes its status."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, (DEPLOYMENTS, REPLICASETS, PODS), "deployment-controller")
        self.recorder = EventRecorder(store, "deployment-controller")
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def reconcile(self) -> None:
        deployments = self.store.list(DEPLOYMENTS)
        for deployment in deployments:
            self.failures.run(deployment, self._sync)
        self.failures.forget_except({object_key(d) for d in deployments})

    # -- one Deployment (`syncDeployment`) ------------------------------------------------------

    def _sync(self, deployment: JSON) -> None:
        if deployment["metadata"].get("deletionTimestamp"):
            return
        replicasets = self._claim(deployment)
        status = dict(deployment.get("status") or {})
        self._paused_condition(deployment, status)
        deployment["status"] = status
        new_rs, old = self._new_and_old(deployment, replicasets, create=False)
        if deployment["spec"].get("paused") or self._scaling_event(deployment, replicasets):
            self._scale(deployment, new_rs, old)
            if deployment["spec"].get("paused"):
                self._clean_up(deployment, old)
            self._write(deployment, new_rs, old, rollout=False)
        elif du.is_rolling(deployment):
            self._rolling(deployment, replicasets)
        else:
            self._recreate(deployment, replicasets, new_rs, old)

    def _claim(self, deployment: JSON) -> list[JSON]:
        """The Deployment's ReplicaSets, adopting orphans its selector matches."""
        selector = selector_from_label_selector(deployment["spec"].get("selector"))
        owned = []
        for rs in self.store.list(REPLICASETS, deployment["metadata"]["namespace"]):
            if is_controlled_by(rs, deployment):
                owned.append(rs)
            elif (
                selector
                and controller_uid(rs) is None
                and not rs["metadata"].get("deletionTimestamp")
                and labels_match(selector, rs["metadata"].get("labels"))
            ):
                adopted = adopt(self.store, REPLICASETS, rs, deployment)
                if adopted is not None:
                    owned.append(adopted)
        return sorted(owned, key=_created)

    def _new_and_old(
        self, deployment: JSON, replicasets: list[JSON], create: bool
    ) -> tuple[JSON | None, list[JSON]]:
        """The new ReplicaSet (found, or made when `create`) and the old ones, with the
        revisions synced (`getAllReplicaSetsAndSyncRevision`)."""
        template = du.without_hash(deployment["spec"].get("template") or {})
        new_rs = next(
            (rs for rs in replicasets if du.without_hash(rs["spec"]["template"]) == template),
            None,
        )
        old = [rs for rs in replicasets if rs is not new_rs]
        rev = max((du.revision(rs) for rs in old), default=0) + 1
        if new_rs is not None:
            new_rs = self._sync_new(deployment, new_rs, rev)
        elif create:
            new_rs = self._create_new(deployment, old, rev)
        return new_rs, old

    def _sync_new(self, deployment: JSON, rs: JSON, rev: int) -> JSON:
        annotations = du.replicaset_annotations(
            deployment, rs["metadata"].get("annotations") or {}, rev
        )
        min_ready = deployment["spec"].get("minReadySeconds", 0)
        if annotations != rs["metadata"].get("annotations") or min_ready != rs["spec"].get(
            "minReadySeconds", 0
        ):

            def update(obj: JSON) -> None:
                obj["metadata"]["annotations"] = annotations
                obj["spec"]["minReadySeconds"] = min_ready

            rs = self.store.mutate(
                REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], update
            )
        self._set_revision(deployment, rs)
        status = deployment["status"]
        if du.progress_deadline(deployment) is not None and not du.condition(status, "Progressing"):
            message = f'Found new replica set "{rs["metadata"]["name"]}"'
            du.set_condition(status, "Progressing", "True", "FoundNewReplicaSet", message)
        return rs

    def _create_new(self, deployment: JSON, old: list[JSON], rev: int) -> JSON:
        meta, spec = deployment["metadata"], deployment["spec"]
        collisions = (deployment.get("status") or {}).get("collisionCount")
        for _ in range(5):
            pod_hash = du.compute_hash(spec.get("template") or {}, collisions)
            template = du.without_hash(spec.get("template") or {})
            template.setdefault("metadata", {}).setdefault("labels", {})[du.HASH_LABEL] = pod_hash
            selector = dict(spec.get("selector") or {})
            selector["matchLabels"] = {
                **(selector.get("matchLabels") or {}),
                du.HASH_LABEL: pod_hash,
            }
            replicas = self._new_replicas(deployment, old, None)
            rs = {
                "metadata": {
                    "name": f"{meta['name']}-{pod_hash}",
                    "namespace": meta["namespace"],
                    "labels": dict(template["metadata"]["labels"]),
                    "annotations": du.replicaset_annotations(deployment, {}, rev, creating=True),
                    "ownerReferences": [controller_reference(deployment)],
                },
                "spec": {
                    "replicas": replicas,
                    "minReadySeconds": spec.get("minReadySeconds", 0),
                    "selector": selector,
                    "template": template,
                },
                "status": {"replicas": 0},
            }
            try:
                created = self.store.create(REPLICASETS, rs, meta["namespace"])
            except ApiError as error:
                if error.code != 409:
                    raise
                # A hash collision (`collisionCount`): another template took the name.
                collisions = (collisions or 0) + 1
                deployment["status"]["collisionCount"] = collisions
                continue
            name = created["metadata"]["name"]
            if replicas > 0:
                self._event(
                    "Normal", deployment, f"Scaled up replica set {name} from 0 to {replicas}"
                )
            if du.progress_deadline(deployment) is not None:
                message = f'Created new replica set "{name}"'
                du.set_condition(
                    deployment["status"], "Progressing", "True", "NewReplicaSetCreated", message
                )
            self._set_revision(deployment, created)
            return created
        raise RuntimeError(f"no free ReplicaSet name for {meta['name']}")

    def _set_revision(self, deployment: JSON, rs: JSON) -> None:
        annotations = deployment["metadata"].setdefault("annotations", {})
        annotations[du.REVISION] = str(du.revision(rs))

    def _new_replicas(self, deployment: JSON, all_rs: list[JSON], new_rs: JSON | None) -> int:
        """How big the new ReplicaSet may be now (`NewRSNewReplicas`)."""
        replicas = du.replicas_of(deployment)
        if not du.is_rolling(deployment):
            return replicas
        current_new = du.replicas_of(new_rs) if new_rs else 0
        current = sum(du.replicas_of(rs) for rs in all_rs)
        most = replicas + du.fenceposts(deployment)[0]
        if current >= most:
            return current_new
        return current_new + min(most - current, replicas - current_new)

    def _scaling_event(self, deployment: JSON, replicasets: list[JSON]) -> bool:
        """An active ReplicaSet was sized for another `spec.replicas` (`isScalingEvent`)."""
        replicas = str(du.replicas_of(deployment))
        return any(
            (rs["metadata"].get("annotations") or {}).get(du.DESIRED_REPLICAS, replicas) != replicas
            for rs in _active(replicasets)
        )

    def _paused_condition(self, deployment: JSON, status: JSON) -> None:
        """`checkPausedConditions`: Progressing Unknown while paused, and on resume."""
        if du.progress_deadline(deployment) is None:
            return
        progress = du.condition(status, "Progressing")
        if progress is not None and progress["reason"] == du.TIMED_OUT:
            return
        paused_shown = progress is not None and progress["reason"] == "DeploymentPaused"
        if deployment["spec"].get("paused") and not paused_shown:
            du.set_condition(
                status, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"
            )
        elif not deployment["spec"].get("paused") and paused_shown:
            du.set_condition(
                status, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed"
            )

    # -- strategies -----------------------------------------------------------------------------

    def _rolling(self, deployment: JSON, replicasets: list[JSON]) -> None:
        new_rs, old = self._new_and_old(deployment, replicasets, create=True)
        assert new_rs is not None
        scaled = self._reconcile_new(deployment, new_rs, old) or self._reconcile_old(
            deployment, new_rs, old
        )
        if not scaled and du.complete(deployment, deployment.get("status") or {}):
            self._clean_up(deployment, old)
        self._write(deployment, new_rs, old, rollout=True)

    def _reconcile_new(self, deployment: JSON, new_rs: JSON, old: list[JSON]) -> bool:
        replicas = du.replicas_of(deployment)
        size = du.replicas_of(new_rs)
        if size == replicas:
            return False
        if size > replicas:
            return self._scale_rs(deployment, new_rs, replicas)
        return self._scale_rs(
            deployment, new_rs, self._new_replicas(deployment, [*old, new_rs], new_rs)
        )

    def _reconcile_old(self, deployment: JSON, new_rs: JSON, old: list[JSON]) -> bool:
        active_old = _active(old)
        if not active_old:
            return False
        all_pods = sum(du.replicas_of(rs) for rs in [*old, new_rs])
        min_available = du.replicas_of(deployment) - du.max_unavailable(deployment)
        new_unavailable = du.replicas_of(new_rs) - du.status_count(new_rs, "availableReplicas")
        most_down = all_pods - min_available - new_unavailable
        if most_down <= 0:
            return False
        scaled = 0
        # First the old pods that are not available anyway (`cleanupUnhealthyReplicas`).
        for rs in sorted(active_old, key=_created):
            if scaled >= most_down:
                break
            size, available = du.replicas_of(rs), du.status_count(rs, "availableReplicas")
            if size == 0 or size == available:
                continue
            down = min(most_down - scaled, size - available)
            self._scale_rs(deployment, rs, size - down)
            scaled += down
        # Then available ones, while enough stay available.
        available = sum(du.status_count(rs, "availableReplicas") for rs in [*old, new_rs])
        if available > min_available:
            budget, taken = available - min_available, 0
            for rs in sorted(active_old, key=_created):
                if taken >= budget:
                    break
                size = du.replicas_of(rs)
                if size == 0:
                    continue
                down = min(size, budget - taken)
                self._scale_rs(deployment, rs, size - down)
                taken += down
            scaled += taken
        return scaled > 0

    def _recreate(
        self, deployment: JSON, replicasets: list[JSON], new_rs: JSON | None, old: list[JSON]
    ) -> None:
        scaled = False
        for rs in _active(old):
            scaled |= self._scale_rs(deployment, rs, 0)
        if not scaled and not self._old_pods_running(deployment, old):
            if new_rs is None:
                new_rs, old = self._new_and_old(deployment, replicasets, create=True)
            assert new_rs is not None
            if not self._scale_rs(deployment, new_rs, du.replicas_of(deployment)) and du.complete(
                deployment, deployment.get("status") or {}
            ):
                self._clean_up(deployment, old)
        self._write(deployment, new_rs, old, rollout=True)

    def _old_pods_running(self, deployment: JSON, old: list[JSON]) -> bool:
        if any(du.status_count(rs, "replicas") for rs in old):
            return True
        uids = {rs["metadata"]["uid"] for rs in old}
        return any(
            controller_uid(pod) in uids
            and (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded")
            for pod in self.store.list(PODS, deployment["metadata"]["namespace"])
        )

    def _scale(self, deployment: JSON, new_rs: JSON | None, old: list[JSON]) -> None:
        """Resize for a scale alone (`scale`): the one active ReplicaSet, or every active one
        in proportion to its size within `replicas + maxSurge`."""
        replicas = du.replicas_of(deployment)
        active = _active([*old, *([new_rs] if new_rs else [])])
        if len(active) <= 1:
            target = active[0] if active else new_rs or (max(old, key=_created) if old else None)
            if target is not None:  # its size, and the replica annotations it is sized for
                self._scale_rs(deployment, target, replicas)
            return
        if new_rs is not None and _saturated(deployment, new_rs):
            for rs in _active(old):
                self._scale_rs(deployment, rs, 0)
            return
        if not du.is_rolling(deployment):
            return
        allowed = replicas + du.fenceposts(deployment)[0] if replicas > 0 else 0
        to_add = allowed - sum(du.replicas_of(rs) for rs in active)
        if to_add == 0:
            return
        # Bigger first (newer first among equals) to add; smaller first (older first) to remove.
        if to_add > 0:
            active.sort(key=lambda rs: (-du.replicas_of(rs), -_created(rs)[0]))
        else:
            active.sort(key=lambda rs: (du.replicas_of(rs), _created(rs)[0]))
        sizes: dict[str, int] = {}
        added = 0
        for rs in active:
            share = _proportion(deployment, rs, to_add, added)
            sizes[rs["metadata"]["name"]] = du.replicas_of(rs) + share
            added += share
        first = active[0]["metadata"]["name"]
        sizes[first] = max(0, sizes[first] + to_add - added)
        for rs in active:
            self._scale_rs(deployment, rs, sizes[rs["metadata"]["name"]])

    def _clean_up(self, deployment: JSON, old: list[JSON]) -> None:
        """Delete the oldest unused ReplicaSets beyond `revisionHistoryLimit`
        (`cleanupDeployment`)."""
        limit = int(deployment["spec"].get("revisionHistoryLimit", 10))
        idle = [
            rs
            for rs in old
            if du.replicas_of(rs) == 0
            and du.status_count(rs, "replicas") == 0
            and int((rs.get("status") or {}).get("observedGeneration", 0))
            >= int(rs["metadata"].get("generation", 1))
        ]
        idle.sort(key=lambda rs: (du.revision(rs), _created(rs)))
        for rs in idle[: max(0, len(idle) - limit)]:
            with contextlib.suppress(ApiError):
                self.store.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
                old.remove(rs)

    # -- writes ---------------------------------------------------------------------------------

    def _scale_rs(self, deployment: JSON, rs: JSON, size: int) -> bool:
        """Set a ReplicaSet's replicas and replica annotations; True when its size changed."""
        before = du.replicas_of(rs)
        annotations = {
            **(rs["metadata"].get("annotations") or {}),
            **du.replica_annotations(deployment),
        }
        if before == size and annotations == rs["metadata"].get("annotations"):
            return False

        def update(obj: JSON) -> None:
            obj["spec"]["replicas"] = size
            obj["metadata"]["annotations"] = annotations

        updated = self.store.mutate(
            REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], update
        )
        rs.clear()
        rs.update(updated)
        if before != size:
            way = "up" if size > before else "down"
            name = rs["metadata"]["name"]
            self._event(
                "Normal", deployment, f"Scaled {way} replica set {name} from {before} to {size}"
            )
        return before != size

    def _write(self, deployment: JSON, new_rs: JSON | None, old: list[JSON], rollout: bool) -> None:
        """Store the revision annotation and the status (`syncRolloutStatus` for a rollout,
        `syncDeploymentStatus` otherwise), and look again when the deadline falls due."""
        all_rs = [*old, *([new_rs] if new_rs else [])]
        status = du.calculate_status(deployment, all_rs, new_rs)
        now = time.time()
        if rollout:
            du.rollout_conditions(deployment, status, new_rs, now)
        status = du.zero_counts_dropped(status)
        annotations = deployment["metadata"].get("annotations") or {}
        meta = deployment["metadata"]

        def write(obj: JSON) -> None:
            if annotations.get(du.REVISION):
                obj["metadata"].setdefault("annotations", {})[du.REVISION] = annotations[
                    du.REVISION
                ]
            obj["status"] = status

        with contextlib.suppress(ApiError):  # deleted meanwhile
            self.store.mutate(DEPLOYMENTS, meta["namespace"], meta["name"], write)
        self._deadline_timer(deployment, status, now)

    def _deadline_timer(self, deployment: JSON, status: JSON, now: float) -> None:
        uid = deployment["metadata"]["uid"]
        timer = self._timers.pop(uid, None)
        if timer is not None:
            timer.cancel()
        after = du.seconds_to_deadline(deployment, status, now)
        if after is not None:
            self._timers[uid] = asyncio.get_running_loop().call_later(after, self.wake)

    def _event(self, kind: str, deployment: JSON, message: str) -> None:
        self.recorder.record(deployment, kind, "ScalingReplicaSet", message)


def _saturated(deployment: JSON, rs: JSON) -> bool:
    """`IsSaturated`: the new ReplicaSet has all the replicas, all available."""
    replicas = du.replicas_of(deployment)
    desired = (rs["metadata"].get("annotations") or {}).get(du.DESIRED_REPLICAS)
    return (
        du.replicas_of(rs) == replicas
        and desired == str(replicas)
        and du.status_count(rs, "availableReplicas") == replicas
    )


def _proportion(deployment: JSON, rs: JSON, to_add: int, added: int) -> int:
    """`GetProportion`: this ReplicaSet's share of a scale, by its size against the
    `max-replicas` it was sized for."""
    size = du.replicas_of(rs)
    if size == 0 or to_add == 0 or to_add == added:
        return 0
    replicas = du.replicas_of(deployment)
    if replicas == 0:
        fraction = -size
    else:
        total = replicas + du.fenceposts(deployment)[0]
        annotated = (rs["metadata"].get("annotations") or {}).get(du.MAX_REPLICAS)
        sized_for = int(annotated) if annotated else du.status_count(deployment, "replicas")
        fraction = round(size * total / sized_for) - size if sized_for else 0
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)
