"""One pod on the node: its containers started in the kubelet's order, probed, restarted and
stopped (preStop, SIGTERM, SIGKILL once the grace period is over)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any

from sandbox.engine import DEFAULT_MODEL, engine_argv
from sandbox.kubelet import pulls, stopping
from sandbox.kubelet.containers import (
    BACKEND_CONTAINER,
    BACKOFF_INITIAL_SECONDS,
    BACKOFF_MAX_SECONDS,
    ENGINE_CONTAINER,
    ENGINE_MANIFEST_PORT,
    NODE_IP,
    SUBSTITUTED_ANNOTATION_PREFIX,
    Container,
    StartError,
    die_with_parent,
    expand_references,
    free_port,
    signal_group,
)
from sandbox.kubelet.frontend import FRONTEND_CONTAINER, announce, frontend_command
from sandbox.kubelet.interfaces import Node
from sandbox.kubelet.probes import Prober
from sandbox.store import logs as container_logs
from sandbox.store.store import CONFIGMAPS, JSON, PODS, ApiError, timestamp

log = logging.getLogger("sandbox.kubelet")


class PodWorker:
    """Runs one pod: its containers, probes, restarts and termination."""

    def __init__(self, kubelet: Node, pod: JSON) -> None:
        self.kubelet = kubelet
        self.store = kubelet.store
        self.namespace: str = pod["metadata"]["namespace"]
        self.name: str = pod["metadata"]["name"]
        self.uid: str = pod["metadata"]["uid"]
        self.spec: JSON = pod.get("spec") or {}
        self.pod = pod
        self.ports: dict[str | int, int] = {}
        self.containers: dict[str, Container] = {}
        for init in self.spec.get("initContainers") or []:
            role = "sidecar" if init.get("restartPolicy") == "Always" else "init"
            self.containers[init["name"]] = Container(init["name"], init, role)
        for main in self.spec.get("containers") or []:
            self.containers[main["name"]] = Container(main["name"], main, "main")
        self.phase = "Pending"
        self.start_time: str | None = None
        self.conditions: dict[str, JSON] = {}
        self.terminating = False
        self.gone = False
        self.task: asyncio.Task[None] | None = None
        self.terminate_task: asyncio.Task[None] | None = None
        self.deletion_grace: float | None = None
        self._env_cache: dict[str, dict[str, str]] = {}
        self.container_ports: dict[str, int] = {}
        self._assign_ports()
        self.prober = Prober(self)

    # -- setup ---------------------------------------------------------------------------------

    def _assign_ports(self) -> None:
        for container in self.containers.values():
            if container.role == "init":
                continue
            port = free_port()
            declared = container.spec.get("ports") or []
            for entry in declared:
                self.ports[int(entry["containerPort"])] = port
                if entry.get("name"):
                    self.ports[str(entry["name"])] = port
            if container.name == ENGINE_CONTAINER:
                self.ports.setdefault(ENGINE_MANIFEST_PORT, port)
            self.container_ports[container.name] = port

    def engine_port(self) -> int | None:
        """The loopback port of the engine sidecar."""
        return self.container_ports.get(ENGINE_CONTAINER)

    def resolve_env(self, container: Container) -> dict[str, str]:
        """The container's environment from the manifest (envFrom, env, downward API)."""
        cached = self._env_cache.get(container.name)
        if cached is not None:
            return cached
        env: dict[str, str] = {}
        for source in container.spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            ref = source.get("configMapRef")
            if ref:
                configmap = self.store.find(CONFIGMAPS, self.namespace, ref["name"])
                for key, value in ((configmap or {}).get("data") or {}).items():
                    env[prefix + key] = str(value)
        for entry in container.spec.get("env") or []:
            if "value" in entry:
                env[entry["name"]] = expand_references(str(entry["value"]), env)
                continue
            source = entry.get("valueFrom") or {}
            if "fieldRef" in source:
                env[entry["name"]] = self._field(source["fieldRef"].get("fieldPath", ""))
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                configmap = self.store.find(CONFIGMAPS, self.namespace, ref["name"])
                value = ((configmap or {}).get("data") or {}).get(ref["key"])
                if value is not None:
                    env[entry["name"]] = str(value)
        self._env_cache[container.name] = env
        return env

    def _field(self, path: str) -> str:
        values = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.uid,
            "spec.nodeName": self.kubelet.config.node_name,
            "spec.serviceAccountName": str(self.spec.get("serviceAccountName", "default")),
            "status.podIP": NODE_IP,
            "status.hostIP": NODE_IP,
        }
        return values.get(path, "")

    def model(self) -> str:
        """The model name the pod serves (the backend's MODEL), for the engine's alias."""
        for name in (BACKEND_CONTAINER, ENGINE_CONTAINER):
            container = self.containers.get(name)
            if container is not None:
                model = self.resolve_env(container).get("MODEL")
                if model:
                    return model
        return DEFAULT_MODEL

    def has_process(self, container: Container) -> bool:
        """Whether the sandbox runs a process for the container (else it only simulates it)."""
        return (
            container.name in (ENGINE_CONTAINER, BACKEND_CONTAINER, FRONTEND_CONTAINER)
            and container.name in self.container_ports
        )

    def command(self, container: Container) -> tuple[list[str], dict[str, str]] | None:
        """The process a container runs, or None for a container the sandbox only simulates."""
        if not self.has_process(container):
            return None
        port = self.container_ports[container.name]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env.update(self.resolve_env(container))
        if container.name == ENGINE_CONTAINER:
            return engine_argv(self.kubelet.config.engine_cmd, port, self.model()), env
        if container.name == BACKEND_CONTAINER:
            env.update(
                PORT=str(port),
                HOST="127.0.0.1",
                POD_NAME=self.name,
                ENGINE_URL=f"http://127.0.0.1:{self.engine_port() or ENGINE_MANIFEST_PORT}",
            )
            return [sys.executable, "-m", "backend"], env
        if container.name == FRONTEND_CONTAINER:
            env.update(self.resolve_env(container))
            config = self.kubelet.config
            argv = frontend_command(config.in_cluster, self.store, self.pod, container, env, port)
            return argv, env
        return None

    # -- status --------------------------------------------------------------------------------

    def _condition(self, kind: str, status: bool) -> None:
        text = "True" if status else "False"
        current = self.conditions.get(kind)
        if current is not None and current["status"] == text:
            return
        self.conditions[kind] = {
            "type": kind,
            "status": text,
            "lastProbeTime": None,
            "lastTransitionTime": timestamp(),
        }

    def publish(self) -> None:
        """Write the pod's status to the store (a no-op once the pod is gone)."""
        if self.gone:
            return
        sidecars_and_inits = [c for c in self.containers.values() if c.role != "main"]
        mains = [c for c in self.containers.values() if c.role == "main"]
        initialized = all(
            (c.role == "init" and "terminated" in c.state) or (c.role == "sidecar" and c.started)
            for c in sidecars_and_inits
        )
        self._condition("PodReadyToStartContainers", True)
        self._condition("Initialized", initialized)
        ready = (
            initialized
            and not self.terminating
            and all(c.ready for c in mains)
            and all(c.ready for c in sidecars_and_inits if c.role == "sidecar")
        )
        self._condition("ContainersReady", ready)
        self._condition("Ready", ready)
        self._condition("PodScheduled", True)
        order = [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ]
        status: JSON = {
            "phase": self.phase,
            "conditions": [self.conditions[k] for k in order],
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "podIP": NODE_IP,
            "podIPs": [{"ip": NODE_IP}],
            "startTime": self.start_time,
            "initContainerStatuses": [c.status() for c in sidecars_and_inits],
            "containerStatuses": [c.status() for c in mains],
            "qosClass": "Burstable",
        }

        def write(pod: JSON) -> None:
            if pod["metadata"].get("uid") != self.uid:
                return
            pod["status"] = status
            pod["spec"]["nodeName"] = self.kubelet.config.node_name

        try:
            self.store.mutate(PODS, self.namespace, self.name, write)
        except ApiError:
            self.gone = True

    def event(
        self, event_type: str, reason: str, message: str, container: str | None = None
    ) -> None:
        """Record an event about this pod."""
        self.kubelet.recorder.record(self.pod, event_type, reason, message, container=container)

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start the pod's containers in order and keep them running."""
        self.start_time = timestamp()
        self.kubelet.scheduler_recorder.record(
            self.pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {self.namespace}/{self.name} to "
            f"{self.kubelet.config.node_name}",
        )
        self.publish()
        for container in [c for c in self.containers.values() if c.role != "main"]:
            if self.terminating:
                return
            if container.role == "sidecar":
                await pulls.pull_image(self, container)
                container.task = watched(self._supervise(container), self.name)
                await container.started_event.wait()
            else:
                await pulls.run_init_container(self, container)
            self.publish()
        if self.terminating:
            return
        for container in [c for c in self.containers.values() if c.role == "main"]:
            await pulls.pull_image(self, container)
            container.task = watched(self._supervise(container), self.name)
        self.phase = "Running"
        self.publish()

    def create(self, container: Container) -> None:
        """A new container gets an id; on its first start, the pod says what really runs."""
        if container.restart_count == 0:
            self._substituted(container)
        container.container_id = f"sandbox://{secrets.token_hex(16)}"
        self.event("Normal", "Created", f"Created container: {container.name}", container.name)

    def _substituted(self, container: Container) -> None:
        """The sandbox pulls no image: an event and an annotation say what runs instead."""
        image = container.spec.get("image", "")
        command = self.command(container)
        if command is not None:
            runs = shlex.join(command[0])
            message = f'The sandbox runs "{runs}" in place of image "{image}"'
        elif container.role == "init" and self.kubelet.config.start_costs.simulated:
            runs = "nothing (the sandbox acts out the model pull)"
            message = f'The sandbox runs no process for image "{image}": {runs}'
        elif container.role == "init":
            runs = "nothing (the model is embedded in the sandbox)"
            message = f'The sandbox runs no process for image "{image}": {runs}'
        else:
            runs = "nothing (simulated)"
            message = f'The sandbox runs no process for image "{image}": the container is simulated'
        self.event("Normal", "Substituted", message, container.name)
        key = f"{SUBSTITUTED_ANNOTATION_PREFIX}{container.name}"

        def annotate(pod: JSON) -> None:
            if pod["metadata"].get("uid") == self.uid:
                pod["metadata"].setdefault("annotations", {})[key] = runs

        with contextlib.suppress(ApiError):  # the pod is gone already: nothing to say
            self.store.mutate(PODS, self.namespace, self.name, annotate)

    def simulated_output(self, container: Container, line: str) -> None:
        """The output of a container the sandbox runs no process for, for `kubectl logs`."""
        path = self.kubelet.log_path(self.namespace, self.name, container.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        container_logs.write_line(path, f"[kube-llm sandbox] {line}")

    async def _spawn(self, container: Container) -> bool:
        """Start the container's process; False for a container the sandbox only simulates."""
        command = self.command(container)
        self.create(container)
        if command is None:
            container.state = {"running": {"startedAt": timestamp()}}
            self.simulated_output(container, "no process runs for this container here")
            self.event(
                "Normal",
                "Started",
                f"Started container {container.name} "
                "(simulated: the sandbox has no process for it)",
                container.name,
            )
            return False
        argv, env = command
        log_path = self.kubelet.log_path(self.namespace, self.name, container.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            container.process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=str(self.kubelet.config.workdir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent
                if threading.current_thread() is threading.main_thread()
                else None,
            )
        except (OSError, RuntimeError) as error:
            raise StartError(f"failed to start container {container.name!r}: {error}") from error
        assert container.process.stdout is not None
        # The output goes through the sandbox, as through a container runtime: timestamped
        # lines in a capped file (`sandbox.store.logs`).
        self.kubelet.spawn_background(
            container_logs.pump(
                container.process.stdout, log_path, self.kubelet.config.max_log_bytes
            )
        )
        self.kubelet.processes[container.process.pid] = container.process
        container.state = {"running": {"startedAt": timestamp()}}
        self.event("Normal", "Started", f"Started container {container.name}", container.name)
        if container.name == FRONTEND_CONTAINER:
            port = self.container_ports[container.name]
            self.event("Normal", "WebPage", announce(self.name, port), container.name)
        return True

    async def _supervise(self, container: Container) -> None:
        """Run a long-lived container: start, probe, restart on failure, until the pod ends."""
        backoff = BACKOFF_INITIAL_SECONDS
        while not self.terminating:
            started_at = time.monotonic()
            try:
                has_process = await self._spawn(container)
            except StartError as error:
                self._start_failed(container, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
                continue
            self.publish()
            crashed = await self._run_until_restart(container, has_process)
            if crashed is None:
                return  # the pod is terminating: `terminate` stops the container
            exit_code = container.process.returncode if container.process is not None else 0
            self.terminated(container, exit_code if exit_code is not None else 137)
            container.restart_count += 1
            # The next instance logs afresh; this one stays for `kubectl logs --previous`.
            container_logs.retire(self.kubelet.log_path(self.namespace, self.name, container.name))
            if self.terminating:
                return
            if crashed:
                if time.monotonic() - started_at > 10 * BACKOFF_MAX_SECONDS:
                    backoff = BACKOFF_INITIAL_SECONDS
                self.crash_loop_back_off(container, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
            self.publish()

    async def _run_until_restart(self, container: Container, has_process: bool) -> bool | None:
        """Probe the running container until it must restart: True when its process exited,
        False when a probe failed (the container is stopped then), None when the pod ends."""
        probes = asyncio.create_task(self.prober.run(container))
        waiters: set[asyncio.Task[Any]] = {probes}
        exit_wait: asyncio.Task[int] | None = None
        if has_process:
            assert container.process is not None
            exit_wait = asyncio.create_task(container.process.wait())
            waiters.add(exit_wait)
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            for waiter in waiters:
                waiter.cancel()
            raise
        probes.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probes
        crashed = exit_wait is not None and exit_wait in done
        if exit_wait is not None and not crashed:
            exit_wait.cancel()
        if self.terminating:
            return None
        if crashed:
            return True
        # A probe asked for a restart: kill the container as the kubelet does.
        grace = float(self.spec.get("terminationGracePeriodSeconds", 30))
        await self._stop(container, grace, run_pre_stop=True)
        return False

    def _start_failed(self, container: Container, error: StartError) -> None:
        """A container whose process would not start: CrashLoopBackOff, as for a crash."""
        self.event("Warning", "Failed", f"Error: {error}", container.name)
        moment = timestamp()
        container.last_state = {
            "terminated": {
                "exitCode": 128,
                "reason": "StartError",
                "message": str(error),
                "startedAt": moment,
                "finishedAt": moment,
            }
        }
        container.restart_count += 1
        container.state = {"waiting": {"reason": "CrashLoopBackOff", "message": str(error)}}
        self.publish()

    def crash_loop_back_off(self, container: Container, backoff: float) -> None:
        """Say that a crashed container waits `backoff` seconds before its restart."""
        container.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {int(backoff)}s restarting failed container="
                f"{container.name} pod={self.name}_{self.namespace}({self.uid})",
            }
        }
        self.publish()
        self.event(
            "Warning",
            "BackOff",
            f"Back-off restarting failed container {container.name} in pod "
            f"{self.name}_{self.namespace}({self.uid})",
            container.name,
        )

    def terminated(self, container: Container, exit_code: int) -> None:
        """Record that a container's process ended with `exit_code` (its group is killed)."""
        running = container.state.get("running") or {}
        reason = "Completed" if exit_code == 0 else "Error"
        if exit_code < 0:
            exit_code = 128 - exit_code  # killed by a signal: 128 + signal number
        container.last_state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": running.get("startedAt", timestamp()),
                "finishedAt": timestamp(),
                "containerID": container.container_id,
            }
        }
        container.state = {"waiting": {"reason": "ContainerCreating"}}
        container.ready = False
        container.started = False
        if container.process is not None:
            # Whatever the container left behind in its process group goes with it.
            signal_group(container.process.pid, signal.SIGKILL)
            self.kubelet.processes.pop(container.process.pid, None)
        container.process = None

    # -- termination ---------------------------------------------------------------------------

    async def _stop(self, container: Container, grace: float, run_pre_stop: bool) -> None:
        """preStop, SIGTERM, then SIGKILL once `grace` seconds have passed in all."""
        await stopping.stop_container(self, container, grace, run_pre_stop)

    async def terminate(self, grace: float, force: bool = False) -> None:
        """Stop every container (main ones first, then sidecars) and remove the pod object."""
        await stopping.terminate_pod(self, grace, force)

    def pids(self) -> dict[str, int | None]:
        """Root pid of every running container process (for the metrics sampler)."""
        return {
            c.name: c.pid
            for c in self.containers.values()
            if c.role != "init" and self.has_process(c)
        }


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())


def watched(coroutine: Coroutine[Any, Any, None], pod: str) -> asyncio.Task[None]:
    """A task whose failure is logged at once (never an unobserved exception)."""
    task = asyncio.create_task(coroutine, name=f"pod {pod}")
    task.add_done_callback(_log_failure)
    return task
