"""The small interfaces the kubelet's parts are handed, so none imports the part above it.

The kubelet runs a pod worker per pod and passes itself down as a `Node`; the pod worker passes
itself to its probes as a `ProbedPod` and to the stop sequence as a `StoppingPod`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from sandbox.kubelet.containers import Container, KubeletConfig, NodeContents
from sandbox.store.events import EventRecorder
from sandbox.store.store import JSON, Store


class HttpProber(Protocol):
    """The node's HTTP GET, as probes and httpGet hooks use it."""

    async def http_probe(
        self, url: str, timeout_seconds: float, *, busy: Callable[[], bool] | None = None
    ) -> tuple[bool, str]:
        """Success on 200-399 and the failure message otherwise."""
        ...


class ContainerEvents(Protocol):
    """Records an Event about a pod, with the container's field path when one is named."""

    def record(
        self, pod: JSON, event_type: str, reason: str, message: str, container: str | None = None
    ) -> None:
        """Record one Event."""
        ...


class Node(HttpProber, Protocol):
    """What a pod worker needs from the kubelet that runs it."""

    @property
    def store(self) -> Store:
        """The cluster's objects."""
        ...

    @property
    def config(self) -> KubeletConfig:
        """The node's settings."""
        ...

    @property
    def recorder(self) -> ContainerEvents:
        """The kubelet's Events."""
        ...

    @property
    def scheduler_recorder(self) -> EventRecorder:
        """The scheduler's Events (the sandbox binds pods as it starts them)."""
        ...

    @property
    def processes(self) -> dict[int, asyncio.subprocess.Process]:
        """Every container process the node runs, by pid (killed at shutdown)."""
        ...

    @property
    def contents(self) -> NodeContents:
        """The images pulled and the models on the shared models volume."""
        ...

    def log_path(self, namespace: str, pod: str, container: str | None) -> Path:
        """Where a container's output goes."""
        ...

    def spawn_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a task the node owns (cancelled at shutdown)."""
        ...


class ProbedPod(Protocol):
    """What the probes read from and report through: the pod worker."""

    ports: dict[str | int, int]
    container_ports: dict[str, int]
    terminating: bool

    @property
    def kubelet(self) -> HttpProber:
        """The node that runs the HTTP probes."""
        ...

    def event(
        self, event_type: str, reason: str, message: str, container: str | None = None
    ) -> None:
        """Record an Event about the pod."""
        ...

    def publish(self) -> None:
        """Write the pod's status to the store."""
        ...


class StoppingPod(ProbedPod, Protocol):
    """What the stop sequence needs from the pod worker: its containers, task and object."""

    store: Store
    namespace: str
    name: str
    uid: str
    containers: dict[str, Container]
    task: asyncio.Task[None] | None
    gone: bool

    def terminated(self, container: Container, exit_code: int) -> None:
        """Record that a container's process ended with `exit_code`."""
        ...
