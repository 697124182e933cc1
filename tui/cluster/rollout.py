"""Writes to the Deployment that only scenarios make: a rollout restart and a scale.

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

from tui.cluster.errors import describe
from tui.cluster.kubeconfig import ClusterTarget
from tui.cluster.watch import read_json

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
_MERGE_PATCH = "application/merge-patch+json"


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

    async def restart(self, at: float | None = None) -> str:
        """Patch the template's restartedAt annotation (as `kubectl rollout restart` does);
        the timestamp written."""
        moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        await self._patch(
            "patch",
            "deployments.apps",
            "a rollout restart patches the pod template's restartedAt annotation",
            lambda apps: apps.patch_namespaced_deployment_without_preload_content(
                self.deployment, self.target.namespace, body, _content_type=_MERGE_PATCH
            ),
        )
        return stamp

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
    ) -> None:
        async with self.target.api_client() as api:
            apps = client.AppsV1Api(api)
            try:
                async with asyncio.timeout(self.request_timeout):
                    await read_json(await call(apps))
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


__all__ = ["RESTARTED_AT", "DeploymentControl", "DeploymentWriteError", "forbidden_write"]
