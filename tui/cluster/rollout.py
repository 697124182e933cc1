"""A Deployment's rollout judged as `kubectl rollout status` judges it, and the writes to the
Deployment that only scenarios make: a rollout restart and a scale.

The judgement (`rollout_status`) is kubectl's `DeploymentStatusViewer.Status`
(kubectl/pkg/polymorphichelpers/rollout_status.go), read from the Deployment's status alone:
once the controller has observed the latest generation, a `Progressing` condition with reason
`ProgressDeadlineExceeded` fails the rollout; otherwise it is done when every replica is updated,
no old replica is left and every updated one is available. Pods are not counted here: a pod the
kubelet left `Failed` (`Evicted`) is no replica, so it cannot hold a finished rollout open.

`kubectl rollout restart` is a PATCH of the pod template's `kubectl.kubernetes.io/restartedAt`
annotation; a scale is a PATCH of the `scale` subresource. The cockpit's Role (M13) allows
neither, on purpose, so a 403 here says which permission is missing and that the scenario needs
a context that has it. Both go through `kubernetes.aio` as merge patches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from tui.cluster.convert import JSON
from tui.cluster.errors import describe
from tui.cluster.kubeconfig import ClusterTarget
from tui.cluster.watch import read_json
from tui.core.model import DeploymentView, RolloutState

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
TIMED_OUT = "ProgressDeadlineExceeded"
_MERGE_PATCH = "application/merge-patch+json"


def rollout_status(deployment: DeploymentView) -> RolloutState:
    """Where the Deployment's rollout stands, in `kubectl rollout status`'s words."""
    name = deployment.name
    if deployment.generation > deployment.observed_generation:
        return RolloutState(False, "Waiting for deployment spec update to be observed...")
    progressing = deployment.condition("Progressing")
    if progressing is not None and progressing.reason == TIMED_OUT:
        why = f": {progressing.message}" if progressing.message else ""
        return RolloutState(
            False, f'deployment "{name}" exceeded its progress deadline{why}', failed=True
        )
    wait = f'Waiting for deployment "{name}" rollout to finish: '
    updated, available = deployment.updated_replicas, deployment.available_replicas
    if deployment.replicas is not None and updated < deployment.replicas:
        return RolloutState(
            False, f"{wait}{updated} out of {deployment.replicas} new replicas have been updated..."
        )
    if deployment.status_replicas > updated:
        old = deployment.status_replicas - updated
        return RolloutState(False, f"{wait}{old} old replicas are pending termination...")
    if available < updated:
        return RolloutState(
            False, f"{wait}{available} of {updated} updated replicas are available..."
        )
    return RolloutState(True, f'deployment "{name}" successfully rolled out')


def rollout_summary(deployment: DeploymentView | None) -> str | None:
    """A few words on a rollout under way or failed, for a panel's title (None when it is
    done, or there is no Deployment)."""
    if deployment is None:
        return None
    state = rollout_status(deployment)
    if state.done:
        return None
    if state.failed:
        return f"rollout failed: {TIMED_OUT}"
    progress = state.message.partition(": ")[2].rstrip(".")
    return f"rolling out: {progress or state.message}"


def rollout_change(
    before: DeploymentView | None, after: DeploymentView | None
) -> tuple[str, str] | None:
    """A line for the event log when a rollout starts, finishes or fails, with its severity
    (`information`, `warning`, `error`); None when nothing of that changed."""
    if after is None:
        return None
    now = rollout_status(after)
    then = rollout_status(before) if before is not None else None
    if then is not None and (then.done, then.failed) == (now.done, now.failed):
        return None
    if now.failed:
        return f"rollout failed: {now.message}", "error"
    if now.done:
        return (now.message, "information") if then is not None else None
    return f"rollout started: {now.message}", "information"


class DeploymentWriteError(Exception):
    """A rollout restart or scale the API server refused or could not take (in words)."""


def forbidden_write(verb: str, resource: str, target: ClusterTarget, why: str) -> str:
    """A 403 on a Deployment write in words: what is missing and what to do."""
    return (
        f"403: context {target.context!r} may not {verb} {resource} in {target.namespace} "
        f"({why}). The cockpit's Role does not allow it, on purpose: run this scenario with a "
        "context that may (the cluster admin's; on the sandbox, `kube-llm-sandbox`)"
    )


class DeploymentControl:
    """Rollout restart and scale of one Deployment, with the target's credentials."""

    def __init__(
        self, target: ClusterTarget, deployment: str, request_timeout: float = 15.0
    ) -> None:
        """Write to `deployment` in the target's namespace."""
        self.target = target
        self.deployment = deployment
        self.request_timeout = request_timeout

    async def restart(self, at: float | None = None) -> tuple[str, int]:
        """Patch the template's restartedAt annotation (as `kubectl rollout restart` does);
        the timestamp written and the Deployment's generation after it (the one a finished
        rollout must have observed)."""
        moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        patched = await self._patch(
            "patch",
            "deployments.apps",
            "a rollout restart patches the pod template's restartedAt annotation",
            lambda apps: apps.patch_namespaced_deployment_without_preload_content(
                self.deployment, self.target.namespace, body, _content_type=_MERGE_PATCH
            ),
        )
        generation = (patched.get("metadata") or {}).get("generation")
        return stamp, generation if isinstance(generation, int) else 0

    async def scale(self, replicas: int) -> None:
        """Set the Deployment's replicas through its scale subresource."""
        body = {"spec": {"replicas": replicas}}
        await self._patch(
            "patch",
            "deployments.apps/scale",
            "a scale patches the Deployment's scale subresource",
            lambda apps: apps.patch_namespaced_deployment_scale_without_preload_content(
                self.deployment, self.target.namespace, body, _content_type=_MERGE_PATCH
            ),
        )

    async def _patch(
        self,
        verb: str,
        resource: str,
        why: str,
        call: Callable[[client.AppsV1Api], Awaitable[aiohttp.ClientResponse]],
    ) -> JSON:
        async with self.target.api_client() as api:
            apps = client.AppsV1Api(api)
            try:
                async with asyncio.timeout(self.request_timeout):
                    return await read_json(await call(apps))
            except ApiException as error:
                if error.status == 403:
                    raise DeploymentWriteError(
                        forbidden_write(verb, resource, self.target, why)
                    ) from None
                raise DeploymentWriteError(
                    f"{verb} {resource}/{self.deployment}: {describe(error)}"
                ) from None
            except (TimeoutError, OSError, aiohttp.ClientError) as error:
                raise DeploymentWriteError(
                    f"{verb} {resource}/{self.deployment}: {describe(error, self.request_timeout)}"
                ) from None


__all__ = [
    "RESTARTED_AT",
    "TIMED_OUT",
    "DeploymentControl",
    "DeploymentWriteError",
    "forbidden_write",
    "rollout_change",
    "rollout_status",
    "rollout_summary",
]
