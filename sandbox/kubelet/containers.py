"""What the kubelet knows of one container, and the process helpers it runs them with."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.store import logs as container_logs
from sandbox.store.store import JSON

NODE_NAME = "sandbox"


SUBSTITUTED_ANNOTATION_PREFIX = "sandbox.kube-llm.io/runs-"
"""Annotation (one per container) saying what the sandbox runs in place of the image."""


NODE_IP = "127.0.0.1"


ENGINE_CONTAINER = "engine"


BACKEND_CONTAINER = "backend"


# The port the base manifests give the engine (Ollama's), mapped like a declared port.
ENGINE_MANIFEST_PORT = 11434


BACKOFF_INITIAL_SECONDS = 1.0


BACKOFF_MAX_SECONDS = 60.0


# After a force delete the kubelet still allows this much time before SIGKILL.
MINIMUM_GRACE_SECONDS = 2.0


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """In the child before exec: SIGKILL when the sandbox dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def signal_group(pid: int, sig: int) -> None:
    """Send `sig` to a container's process group (gone already: nothing to do)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def expand_references(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion of the container's variables (in env values, command and
    args)."""
    for key, replacement in env.items():
        value = value.replace(f"$({key})", replacement)
    return value


class StartError(Exception):
    """A container's process could not be started (no such command, bad model path...)."""


@dataclass
class Container:
    """The kubelet's view of one container of one pod."""

    name: str
    spec: JSON
    role: str  # "sidecar", "init" or "main"
    restart_count: int = 0
    process: asyncio.subprocess.Process | None = None
    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "PodInitializing"}})
    last_state: JSON = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    container_id: str = ""
    started_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The container's root process id, while it runs."""
        if self.process is None or self.process.returncode is not None:
            return None
        return self.process.pid

    def status(self) -> JSON:
        """A Kubernetes ContainerStatus."""
        image = self.spec.get("image", "")
        result: JSON = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": image,
            "imageID": f"sandbox://{image}",
            "started": self.started,
        }
        if self.container_id:
            result["containerID"] = self.container_id
        return result


@dataclass(frozen=True)
class InClusterAccess:
    """What the kubelet gives a pod to reach the API server as its ServiceAccount."""

    host: str
    port: int
    ca_file: Path
    issue_token: Callable[[str, str], str]
    """A token for (namespace, ServiceAccount), as TokenRequest gives the kubelet."""
    folder: Path
    """Where each pod's ServiceAccount files are written."""


@dataclass(frozen=True)
class StartCosts:
    """The seconds a container start costs, and whether the model registry can be reached."""

    image_pull_seconds: float = 0.0
    """Each image's first pull on the node (0: every image is already there)."""
    model_pull_seconds: float = 0.0
    """`model-pull` fetching a model missing from the models volume."""
    model_on_volume: bool = True
    """Whether the models volume holds the model when the sandbox starts."""
    registry_unreachable: bool = False
    """`ollama pull` cannot reach the registry: a missing model cannot be pulled."""

    @property
    def simulated(self) -> bool:
        """Whether pulls are simulated at all (else the model is embedded, as by default)."""
        return (
            self.image_pull_seconds > 0
            or self.model_pull_seconds > 0
            or (not self.model_on_volume or self.registry_unreachable)
        )


@dataclass
class NodeContents:
    """What the node holds across pods: pulled images, and the models on the shared volume."""

    images: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)
    pulling: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One image pull at a time (the kubelet's `serializeImagePulls`)."""


@dataclass(frozen=True)
class KubeletConfig:
    """How the kubelet runs containers."""

    engine_cmd: str | None = None
    workdir: Path = field(default_factory=Path.cwd)
    log_dir: Path = field(default_factory=lambda: Path(".sandbox/logs"))
    """The folder of this run's container logs."""
    node_name: str = NODE_NAME
    max_log_bytes: int = container_logs.MAX_LOG_BYTES
    in_cluster: InClusterAccess | None = None
    """The in-cluster configuration for pods (the frontend's); None: pods get none."""
    start_costs: StartCosts = field(default_factory=StartCosts)
    """What an image pull and a model pull cost (`sandbox.kubelet.pulls`)."""
