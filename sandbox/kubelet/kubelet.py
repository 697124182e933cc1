"""The sandbox's kubelet: runs each pod's containers as local processes, as a node would.

Containers map to processes by name: `engine` (the native sidecar) runs llama-cpp-python's
OpenAI-compatible server on the embedded SmolLM2 model, or `--engine-cmd`; `backend` runs
`python -m backend` with the container's environment (ConfigMap `envFrom`, downward API)
and `PORT`, `HOST`, `ENGINE_URL` and `POD_NAME` set for the loopback ports the sandbox picked;
a regular init container such as `model-pull` completes at once, since the model is embedded,
unless the profile charges start costs (`sandbox.kubelet.pulls`: image and model pulls).

The order and the states are the kubelet's: PodScheduled, the native sidecar started and its
startup probe passed before the next init container, then the main containers; Ready only once
the readiness probe passes; a failed liveness or startup probe restarts the container (with
restartCount); a crashed container restarts after a back-off. On deletion: preStop, SIGTERM,
SIGKILL once the grace period is over, then the sidecars, then the object is removed. Every
container runs in a process group of its own, so signals reach its children too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx2

from sandbox.kubelet.containers import (
    MINIMUM_GRACE_SECONDS,
    NODE_IP,
    NODE_NAME,
    KubeletConfig,
    NodeContents,
    signal_group,
)
from sandbox.kubelet.pod_worker import PodWorker, watched
from sandbox.store.events import EventRecorder
from sandbox.store.store import JSON, PODS, Store, WatchEvent

__all__ = ["NODE_IP", "NODE_NAME", "Kubelet", "KubeletConfig"]

log = logging.getLogger("sandbox.kubelet")

_SAFE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class _ContainerRecorder:
    """Records pod events with the container's field path, as the kubelet does."""

    def __init__(self, recorder: EventRecorder) -> None:
        self._recorder = recorder

    def record(
        self, pod: JSON, event_type: str, reason: str, message: str, container: str | None = None
    ) -> None:
        field_path = _field_path(pod, container) if container is not None else None
        self._recorder.record(pod, event_type, reason, message, field_path)


def _field_path(pod: JSON, container: str) -> str:
    spec = pod.get("spec") or {}
    if any(c.get("name") == container for c in spec.get("initContainers") or []):
        return f"spec.initContainers{{{container}}}"
    return f"spec.containers{{{container}}}"


class Kubelet:
    """Watches the store's pods and runs a PodWorker for each."""

    def __init__(self, store: Store, config: KubeletConfig) -> None:
        self.store = store
        self.config = config
        self.recorder = _ContainerRecorder(EventRecorder(store, "kubelet", config.node_name))
        self.scheduler_recorder = EventRecorder(store, "default-scheduler")
        self.workers: dict[tuple[str, str], PodWorker] = {}
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self.contents = NodeContents()
        self._http: httpx2.AsyncClient | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._on_change: list[Callable[[], None]] = []

    def log_path(self, namespace: str, pod: str, container: str | None) -> Path:
        """Where a container's output goes: always a file directly in the log folder.

        The API server admits only DNS-1123 names, which have no `/` and no `_`; this check
        holds the line should any other name ever get here (ValueError).
        """
        parts = (namespace, pod, container or "")
        if not all(_SAFE_NAME.fullmatch(part) for part in parts):
            raise ValueError(f"no log file for names outside DNS-1123: {parts!r}")
        return self.config.log_dir / f"{namespace}_{pod}_{container}.log"

    def pod_port(self, namespace: str, pod: str, port: str | int) -> int | None:
        """The loopback port for a pod's container port (number or name)."""
        worker = self.workers.get((namespace, pod))
        if worker is None:
            return None
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        return worker.ports.get(port)

    def sample_targets(self) -> dict[str, dict[str, int | None]]:
        """Pod name -> container -> pid, for the metrics sampler."""
        return {
            worker.name: worker.pids() for worker in self.workers.values() if not worker.terminating
        }

    async def http_probe(
        self, url: str, timeout_seconds: float, *, busy: Callable[[], bool] | None = None
    ) -> tuple[bool, str]:
        """An HTTP GET probe: success on 200-399, as the kubelet counts it.

        With `busy`, a server that accepted the connection but did not answer in time passes
        when `busy()` says it was working meanwhile (see the engine's exec probe).
        """
        assert self._http is not None
        try:
            response = await self._http.get(url, timeout=timeout_seconds)
        except httpx2.TimeoutException as error:
            if busy is not None and isinstance(error, httpx2.ReadTimeout) and busy():
                return True, ""
            return False, f'Get "{url}": context deadline exceeded'
        except httpx2.HTTPError as error:
            return (
                False,
                f'Get "{url}": dial tcp: connect: connection refused ({type(error).__name__})',
            )
        if 200 <= response.status_code < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {response.status_code}"

    def spawn_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a task the kubelet owns (cancelled at shutdown)."""
        self._spawn_background(coroutine)

    def _spawn_background(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _start(self, pod: JSON) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        existing = self.workers.get(key)
        if existing is not None and existing.uid == pod["metadata"]["uid"]:
            return
        worker = PodWorker(self, pod)
        self.workers[key] = worker
        worker.task = watched(worker.run(), worker.name)
        if pod["metadata"].get("deletionTimestamp"):
            self._terminate(worker, pod, force=False)

    def _terminate(self, worker: PodWorker, pod: JSON | None, force: bool) -> None:
        grace = float(
            (pod or {}).get("metadata", {}).get("deletionGracePeriodSeconds")
            or worker.spec.get("terminationGracePeriodSeconds", 30)
        )
        worker.deletion_grace = grace
        if force:
            grace = MINIMUM_GRACE_SECONDS

        async def run() -> None:
            try:
                await worker.terminate(grace, force=force)
            finally:
                key = (worker.namespace, worker.name)
                if self.workers.get(key) is worker:
                    del self.workers[key]

        if force and worker.terminate_task is not None:
            # Already terminating gracefully: a force delete shortens it to SIGKILL soon.
            self._spawn_background(worker.terminate(MINIMUM_GRACE_SECONDS, force=True))
            return
        worker.terminate_task = asyncio.create_task(run())
        self._background.add(worker.terminate_task)
        worker.terminate_task.add_done_callback(self._background.discard)

    def _isolated(self, pod: JSON, action: Callable[[JSON], None]) -> None:
        """Run `action` for one pod; a failure stays with that pod (a log line and a Warning
        event on it) and the kubelet goes on running every other pod."""
        try:
            action(pod)
        except Exception as error:  # isolation: one pod must never stop the kubelet
            metadata = pod.get("metadata") or {}
            log.exception("kubelet: handling pod %r failed", metadata.get("name"))
            with contextlib.suppress(Exception):
                self.recorder.record(
                    pod, "Warning", "FailedSync", f"the kubelet failed on this pod: {error!r}"
                )

    def _isolated_event(self, event: WatchEvent) -> None:
        def handle(_pod: JSON) -> None:
            self._handle(event)

        self._isolated(event.obj, handle)

    def _handle(self, event: WatchEvent) -> None:
        pod = event.obj
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        worker = self.workers.get(key)
        if event.type == "ADDED":
            self._start(pod)
        elif event.type == "MODIFIED":
            if worker is None or worker.uid != pod["metadata"]["uid"]:
                return
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            if pod["metadata"].get("deletionTimestamp") and worker.terminate_task is None:
                self._terminate(worker, pod, force=False)
            elif (
                grace is not None
                and worker.deletion_grace is not None
                and float(grace) < worker.deletion_grace
            ):
                # A second delete with a shorter grace period: stop sooner, as the kubelet does.
                worker.deletion_grace = float(grace)
                self._spawn_background(
                    worker.terminate(max(float(grace), MINIMUM_GRACE_SECONDS), force=True)
                )
        elif (
            event.type == "DELETED" and worker is not None and worker.uid == pod["metadata"]["uid"]
        ):
            worker.gone = True
            self._terminate(worker, pod, force=True)

    async def run(self) -> None:
        """Run pods until cancelled."""
        async with httpx2.AsyncClient() as client:
            self._http = client
            _, queue = self.store.subscribe(PODS)
            try:
                for pod in self.store.list(PODS):
                    self._isolated(pod, self._start)
                while True:
                    event = await queue.get()
                    if event is None:
                        continue  # the API's watches were dropped; this subscription stays
                    self._isolated_event(event)
            finally:
                self.store.unsubscribe(PODS, queue)
                await self.shutdown()
                self._http = None

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop every pod's processes: SIGTERM to every group, SIGKILL after `grace`."""
        for worker in self.workers.values():
            worker.terminating = True
            worker.gone = True
            if worker.task is not None:
                worker.task.cancel()
            for container in worker.containers.values():
                if container.task is not None:
                    container.task.cancel()
        live = [p for p in self.processes.values() if p.returncode is None]
        for process in live:
            signal_group(process.pid, signal.SIGTERM)
        if live:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(p.wait() for p in live), return_exceptions=True), grace
                )
        for process in self.processes.values():
            signal_group(process.pid, signal.SIGKILL)
        for process in live:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    await process.wait()
        for task in list(self._background):
            task.cancel()
        self.workers.clear()
