"""What a container costs before it runs: an image pull, and the `model-pull` init container.

The default profile pulls nothing: every image is on the node and the model is embedded, so a
pod starts in a second or two. The Minikube profile (`--profile minikube`) charges what a fresh
Minikube node charges, in seconds the user chooses:

- **An image pull** the first time the node needs an image (`imagePullPolicy: IfNotPresent`, as
  the minikube overlay sets; `Never` is never pulled). The kubelet pulls one image at a time
  (its default `serializeImagePulls: true`), with the `Pulling` and `Pulled` events it writes;
  later pods get "already present on machine".
- **A model pull** by `model-pull`, following its command in `kustomize/base/deployment.yaml`:
  a model already on the models volume (the claim of `components/models-pvc`, which every pod
  of the one node shares) is not pulled; a missing one is pulled (the pod shows `Init:1/2`
  meanwhile), and with the registry unreachable the pull fails as `ollama pull` does, so the
  init container fails and restarts with a back-off (`Init:Error`, `Init:CrashLoopBackOff`).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from sandbox.kubelet.containers import (
    BACKOFF_INITIAL_SECONDS,
    BACKOFF_MAX_SECONDS,
    Container,
)
from sandbox.kubelet.interfaces import Node
from sandbox.store.store import timestamp

__all__ = ["InitPod", "pull_image", "run_init_container"]

MODEL_PULL_CONTAINER = "model-pull"

REGISTRY = "registry.ollama.ai"


class InitPod(Protocol):
    """What the start costs need of a pod worker."""

    name: str
    terminating: bool

    @property
    def kubelet(self) -> Node:
        """The node that runs the pod."""
        ...

    def model(self) -> str:
        """The model the pod serves."""
        ...

    def publish(self) -> None:
        """Write the pod's status."""
        ...

    def event(
        self, event_type: str, reason: str, message: str, container: str | None = None
    ) -> None:
        """Record an event about the pod."""
        ...

    def create(self, container: Container) -> None:
        """Give the container a new id (and say what the sandbox runs for it)."""
        ...

    def simulated_output(self, container: Container, line: str) -> None:
        """A line of output of a container the sandbox runs no process for."""
        ...

    def crash_loop_back_off(self, container: Container, backoff: float) -> None:
        """Say that a failed container waits `backoff` seconds before its restart."""
        ...


async def pull_image(pod: InitPod, container: Container) -> None:
    """Pull the container's image if the node lacks it, with the kubelet's events."""
    costs = pod.kubelet.config.start_costs
    if costs.image_pull_seconds <= 0:
        return
    image = str(container.spec.get("image", ""))
    contents = pod.kubelet.contents
    policy = container.spec.get("imagePullPolicy", "IfNotPresent")
    async with contents.pulling:
        if image in contents.images or policy == "Never":
            message = f'Container image "{image}" already present on machine'
            pod.event("Normal", "Pulled", message, container.name)
            return
        pod.event("Normal", "Pulling", f'Pulling image "{image}"', container.name)
        await asyncio.sleep(costs.image_pull_seconds)
        contents.images.add(image)
    took = f"{costs.image_pull_seconds:g}s"
    pod.event(
        "Normal",
        "Pulled",
        f'Successfully pulled image "{image}" in {took} ({took} including waiting)',
        container.name,
    )


async def run_init_container(pod: InitPod, container: Container) -> None:
    """Run a regular init container to completion, restarting it with a back-off on failure."""
    backoff = BACKOFF_INITIAL_SECONDS
    await pull_image(pod, container)
    while not pod.terminating:
        pod.create(container)
        pod.event("Normal", "Started", f"Started container {container.name}", container.name)
        started = timestamp()
        container.state = {"running": {"startedAt": started}}
        pod.publish()
        exit_code = await _model_pull(pod, container)
        finished = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": started,
            "finishedAt": timestamp(),
            "containerID": container.container_id,
        }
        container.ready = False
        container.started = False
        if exit_code == 0:
            container.state = {"terminated": finished}
            return
        container.state = {"terminated": finished}
        container.last_state = {"terminated": finished}
        container.restart_count += 1
        pod.publish()
        pod.crash_loop_back_off(container, backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)


async def _model_pull(pod: InitPod, container: Container) -> int:
    """What `model-pull`'s command does (any other init container simply completes)."""
    costs = pod.kubelet.config.start_costs
    model = pod.model()
    if not costs.simulated:
        message = f"Model {model} is embedded in the sandbox: nothing to pull"
        pod.simulated_output(container, message)
        pod.event("Normal", "Pulled", message, container.name)
        return 0
    if container.name != MODEL_PULL_CONTAINER:
        return 0
    models = pod.kubelet.contents.models
    if costs.model_on_volume or model in models:
        pod.simulated_output(
            container, f"model-pull: {model} is already on the models volume; not pulling"
        )
        return 0
    pod.simulated_output(container, f"model-pull: {model} is not on the models volume; pulling it")
    pod.simulated_output(container, "pulling manifest")
    if costs.registry_unreachable:
        name, _, tag = model.partition(":")
        pod.simulated_output(
            container,
            f'Error: pull model manifest: Get "https://{REGISTRY}/v2/library/{name}/manifests/'
            f'{tag or "latest"}": dial tcp: lookup {REGISTRY}: no such host',
        )
        return 1
    await asyncio.sleep(costs.model_pull_seconds)
    models.add(model)
    for line in ("verifying sha256 digest", "writing manifest", "success"):
        pod.simulated_output(container, line)
    return 0
