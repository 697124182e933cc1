"""The sandbox's kubelet: runs each pod's containers as local processes, as a node would.

Containers map to processes by name: `engine` (the native sidecar) runs llama-cpp-python's
OpenAI-compatible server on the embedded SmolLM2 model, or `--engine-cmd`; `backend` runs
`python -m backend` with the container's environment (ConfigMap `envFrom`, downward API)
and `PORT`, `HOST`, `ENGINE_URL` and `POD_NAME` set for the loopback ports the sandbox picked;
a regular init container such as `model-pull` completes at once, since the model is embedded.

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
import ctypes
import logging
import os
import re
import secrets
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import psutil

from sandbox import logs as container_logs
from sandbox.engine import DEFAULT_MODEL, engine_argv
from sandbox.events import EventRecorder
from sandbox.store import CONFIGMAPS, JSON, PODS, ApiError, Store, WatchEvent, timestamp

log = logging.getLogger("sandbox.kubelet")

_SAFE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")

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


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the sandbox dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


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
class KubeletConfig:
    """How the kubelet runs containers."""

    engine_cmd: str | None = None
    workdir: Path = field(default_factory=Path.cwd)
    log_dir: Path = field(default_factory=lambda: Path(".sandbox/logs"))
    """The folder of this run's container logs."""
    node_name: str = NODE_NAME
    max_log_bytes: int = container_logs.MAX_LOG_BYTES


class PodWorker:
    """Runs one pod: its containers, probes, restarts and termination."""

    def __init__(self, kubelet: Kubelet, pod: JSON) -> None:
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
        self._container_ports: dict[str, int] = {}
        self._unrunnable_said: set[tuple[str, str]] = set()
        self._assign_ports()

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
            self._container_ports[container.name] = port

    def engine_port(self) -> int | None:
        """The loopback port of the engine sidecar."""
        return self._container_ports.get(ENGINE_CONTAINER)

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
                env[entry["name"]] = _expand(str(entry["value"]), env)
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
            container.name in (ENGINE_CONTAINER, BACKEND_CONTAINER)
            and container.name in self._container_ports
        )

    def command(self, container: Container) -> tuple[list[str], dict[str, str]] | None:
        """The process a container runs, or None for a container the sandbox only simulates."""
        if not self.has_process(container):
            return None
        port = self._container_ports[container.name]
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
                container.task = _watched(self._supervise(container), self.name)
                await container.started_event.wait()
            else:
                await self._run_init(container)
            self.publish()
        if self.terminating:
            return
        for container in [c for c in self.containers.values() if c.role == "main"]:
            container.task = _watched(self._supervise(container), self.name)
        self.phase = "Running"
        self.publish()

    async def _run_init(self, container: Container) -> None:
        self._create(container)
        self.event("Normal", "Started", f"Started container {container.name}", container.name)
        moment = timestamp()
        container.state = {"running": {"startedAt": moment}}
        self.publish()
        message = f"Model {self.model()} is embedded in the sandbox: nothing to pull"
        self._simulated_output(container, message)
        self.event("Normal", "Pulled", message, container.name)
        container.state = {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": moment,
                "finishedAt": timestamp(),
                "containerID": container.container_id,
            }
        }
        container.ready = False
        container.started = False

    def _create(self, container: Container) -> None:
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

    def _simulated_output(self, container: Container, line: str) -> None:
        """The output of a container the sandbox runs no process for, for `kubectl logs`."""
        path = self.kubelet.log_path(self.namespace, self.name, container.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        container_logs.write_line(path, f"[kube-llm sandbox] {line}")

    async def _spawn(self, container: Container) -> bool:
        """Start the container's process; False for a container the sandbox only simulates."""
        command = self.command(container)
        self._create(container)
        if command is None:
            container.state = {"running": {"startedAt": timestamp()}}
            self._simulated_output(container, "no process runs for this container here")
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
                preexec_fn=_die_with_parent
                if threading.current_thread() is threading.main_thread()
                else None,
            )
        except (OSError, RuntimeError) as error:
            raise StartError(f"failed to start container {container.name!r}: {error}") from error
        assert container.process.stdout is not None
        # The output goes through the sandbox, as through a container runtime: timestamped
        # lines in a capped file (`sandbox.logs`).
        self.kubelet.spawn_background(
            container_logs.pump(
                container.process.stdout, log_path, self.kubelet.config.max_log_bytes
            )
        )
        self.kubelet.processes[container.process.pid] = container.process
        container.state = {"running": {"startedAt": timestamp()}}
        self.event("Normal", "Started", f"Started container {container.name}", container.name)
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
            self._terminated(container, exit_code if exit_code is not None else 137)
            container.restart_count += 1
            # The next instance logs afresh; this one stays for `kubectl logs --previous`.
            container_logs.retire(self.kubelet.log_path(self.namespace, self.name, container.name))
            if self.terminating:
                return
            if crashed:
                if time.monotonic() - started_at > 10 * BACKOFF_MAX_SECONDS:
                    backoff = BACKOFF_INITIAL_SECONDS
                self._crash_loop_back_off(container, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
            self.publish()

    async def _run_until_restart(self, container: Container, has_process: bool) -> bool | None:
        """Probe the running container until it must restart: True when its process exited,
        False when a probe failed (the container is stopped then), None when the pod ends."""
        probes = asyncio.create_task(self._probe(container))
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

    def _crash_loop_back_off(self, container: Container, backoff: float) -> None:
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

    def _terminated(self, container: Container, exit_code: int) -> None:
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
            _signal_group(container.process.pid, signal.SIGKILL)
            self.kubelet.processes.pop(container.process.pid, None)
        container.process = None

    # -- probes --------------------------------------------------------------------------------

    async def _probe(self, container: Container) -> None:
        """Run the container's probes; returns when a startup or liveness probe fails."""
        started_at = time.monotonic()
        startup = container.spec.get("startupProbe")
        if startup and not await self._probe_until(container, "Startup", startup, started_at):
            self.event(
                "Normal",
                "Killing",
                f"Container {container.name} failed startup probe, will be restarted",
                container.name,
            )
            return
        container.started = True
        container.started_event.set()
        readiness = container.spec.get("readinessProbe")
        if not readiness:
            container.ready = True
        self.publish()
        tasks = []
        if readiness:
            tasks.append(asyncio.create_task(self._readiness(container, readiness, started_at)))
        liveness = container.spec.get("livenessProbe")
        if liveness:
            tasks.append(asyncio.create_task(self._liveness(container, liveness, started_at)))
        if not tasks:
            await asyncio.Event().wait()
        try:
            # Only the liveness task returns (on failure); readiness runs until cancelled.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    async def _probe_loop(
        self,
        container: Container,
        probe: JSON,
        started_at: float,
        observe: Callable[[bool, str, _Streak], bool | None],
    ) -> bool:
        """Run a probe every `periodSeconds` from its initial delay until `observe` decides.

        `observe` gets each result, its message and the run of equal results so far; it
        returns True or False to end the loop with that verdict, None to go on.
        """
        period = float(probe.get("periodSeconds", 10))
        await _sleep_until(started_at + float(probe.get("initialDelaySeconds", 0)))
        streak = _Streak()
        while True:
            ok, message = await self._run_probe(container, probe)
            streak.record(ok)
            verdict = observe(ok, message, streak)
            if verdict is not None:
                return verdict
            await asyncio.sleep(period)

    async def _probe_until(
        self, container: Container, kind: str, probe: JSON, started_at: float
    ) -> bool:
        """A startup probe: True on success, False after failureThreshold failures."""
        threshold = int(probe.get("failureThreshold", 3))

        def observe(ok: bool, message: str, streak: _Streak) -> bool | None:
            if ok:
                return True
            if streak.failures >= threshold:
                self.event(
                    "Warning", "Unhealthy", f"{kind} probe failed: {message}", container.name
                )
                return False
            return None

        return await self._probe_loop(container, probe, started_at, observe)

    async def _readiness(self, container: Container, probe: JSON, started_at: float) -> None:
        success_threshold = int(probe.get("successThreshold", 1))
        failure_threshold = int(probe.get("failureThreshold", 3))

        def observe(ok: bool, message: str, streak: _Streak) -> None:
            if ok:
                # A terminating pod's containers stay unready, even while preStop runs.
                ready = streak.successes >= success_threshold and not self.terminating
                if not container.ready and ready:
                    container.ready = True
                    self.publish()
                return
            if not self.terminating:
                self.event(
                    "Warning", "Unhealthy", f"Readiness probe failed: {message}", container.name
                )
            if container.ready and streak.failures >= failure_threshold:
                container.ready = False
                self.publish()

        await self._probe_loop(container, probe, started_at, observe)

    async def _liveness(self, container: Container, probe: JSON, started_at: float) -> None:
        threshold = int(probe.get("failureThreshold", 3))

        def observe(ok: bool, message: str, streak: _Streak) -> bool | None:
            if ok:
                return None
            self.event("Warning", "Unhealthy", f"Liveness probe failed: {message}", container.name)
            if streak.failures < threshold:
                return None
            self.event(
                "Normal",
                "Killing",
                f"Container {container.name} failed liveness probe, will be restarted",
                container.name,
            )
            return False

        await self._probe_loop(container, probe, started_at, observe)

    async def _run_probe(self, container: Container, probe: JSON) -> tuple[bool, str]:
        """Run one probe; (success, failure message)."""
        timeout = float(probe.get("timeoutSeconds", 1))
        if "httpGet" in probe:
            action = probe["httpGet"]
            port = self.ports.get(action.get("port")) if action.get("port") is not None else None
            if port is None:
                return False, f"no port {action.get('port')!r} in the pod"
            path = action.get("path", "/")
            return await self.kubelet.http_probe(f"http://127.0.0.1:{port}{path}", timeout)
        if "tcpSocket" in probe:
            port = self.ports.get(probe["tcpSocket"].get("port"))
            if port is None:
                return False, "no such port"
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), timeout
                )
            except (OSError, TimeoutError) as error:
                return False, f"dial tcp 127.0.0.1:{port}: {error}"
            writer.close()
            return True, ""
        if "exec" in probe:
            # An exec probe cannot run here (there is no container image to exec into). For the
            # engine the sandbox asks its OpenAI-compatible server instead, which is what the
            # manifest's `ollama list` checks: the server answers and can list models. Ollama
            # lists them even while it generates; llama-cpp-python's server only between
            # generations, so a listing that times out is told apart by the engine's CPU: a
            # busy engine burns it (alive), a hung or stopped one does not (a failure, and a
            # restart of the engine as on a cluster).
            engine_port = self._container_ports.get(container.name)
            if container.name == ENGINE_CONTAINER and engine_port is not None:
                before = process_tree_cpu(container.pid)
                return await self.kubelet.http_probe(
                    f"http://127.0.0.1:{engine_port}/v1/models",
                    timeout,
                    busy=lambda: engine_was_busy(container.pid, before, timeout),
                )
            return self._unrunnable(container, "exec", probe["exec"].get("command"))
        kind = next((k for k in ("grpc",) if k in probe), "unknown")
        return self._unrunnable(container, kind, probe.get(kind))

    def _unrunnable(self, container: Container, kind: str, what: Any) -> tuple[bool, str]:
        """A probe the sandbox cannot run passes, and an event says so (once per container)."""
        key = (container.name, kind)
        if key not in self._unrunnable_said:
            self._unrunnable_said.add(key)
            self.event(
                "Warning",
                "ProbeNotRun",
                f"The sandbox cannot run the {kind} probe {what!r} of container "
                f"{container.name} (no container image to run it in): it counts as passing",
                container.name,
            )
        return True, ""

    # -- termination ---------------------------------------------------------------------------

    async def _stop(self, container: Container, grace: float, run_pre_stop: bool) -> None:
        """preStop, SIGTERM, then SIGKILL once `grace` seconds have passed in all."""
        deadline = time.monotonic() + grace
        pre_stop = (container.spec.get("lifecycle") or {}).get("preStop")
        if run_pre_stop and pre_stop:
            await self._pre_stop(container, pre_stop, grace)
        process = container.process
        if process is None or process.returncode is not None:
            if process is not None:
                _signal_group(process.pid, signal.SIGKILL)
            return
        _signal_group(process.pid, signal.SIGTERM)
        # As the kubelet does, a preStop hook that overran the grace period still leaves the
        # container a short time to handle SIGTERM.
        remaining = max(deadline - time.monotonic(), MINIMUM_GRACE_SECONDS)
        try:
            await asyncio.wait_for(process.wait(), remaining)
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
        # Anything the container left behind in its group goes too.
        _signal_group(process.pid, signal.SIGKILL)

    async def _pre_stop(self, container: Container, hook: JSON, grace: float) -> None:
        try:
            async with asyncio.timeout(grace):
                if "sleep" in hook:
                    await asyncio.sleep(float(hook["sleep"].get("seconds", 0)))
                elif "exec" in hook:
                    command = hook["exec"].get("command") or []
                    if len(command) == 2 and command[0] in ("sleep", "/bin/sleep"):
                        await asyncio.sleep(float(command[1]))
                elif "httpGet" in hook:
                    port = self.ports.get(hook["httpGet"].get("port"))
                    if port is not None:
                        await self.kubelet.http_probe(
                            f"http://127.0.0.1:{port}{hook['httpGet'].get('path', '/')}", grace
                        )
        except TimeoutError:
            self.event(
                "Warning",
                "FailedPreStopHook",
                f"PreStop hook for container {container.name} did not complete in {int(grace)}s",
                container.name,
            )

    async def terminate(self, grace: float, force: bool = False) -> None:
        """Stop every container (main ones first, then sidecars) and remove the pod object."""
        if self.terminating and not force:
            return
        self.terminating = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
        run_pre_stop = not force
        mains = [c for c in self.containers.values() if c.role == "main"]
        sidecars = [c for c in self.containers.values() if c.role == "sidecar"]
        start = time.monotonic()
        for container in mains + sidecars:
            if container.state.get("running"):
                self.event(
                    "Normal", "Killing", f"Stopping container {container.name}", container.name
                )
        for container in mains + sidecars:
            container.ready = False
        self.publish()
        await asyncio.gather(*(self._stop(c, grace, run_pre_stop) for c in mains))
        remaining = max(grace - (time.monotonic() - start), MINIMUM_GRACE_SECONDS)
        for container in reversed(sidecars):
            await self._stop(container, remaining, run_pre_stop=False)
        for container in mains + sidecars:
            if container.task is not None:
                container.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await container.task
            if container.state.get("running"):
                code = container.process.returncode if container.process else 0
                self._terminated(container, code if code is not None else 137)
                container.state = container.last_state
                container.last_state = {}
        self.publish()
        if not self.gone:
            with contextlib.suppress(ApiError):
                current = self.store.find(PODS, self.namespace, self.name)
                if current is not None and current["metadata"]["uid"] == self.uid:
                    self.store.delete(PODS, self.namespace, self.name)
        self.gone = True

    def pids(self) -> dict[str, int | None]:
        """Root pid of every running container process (for the metrics sampler)."""
        return {
            c.name: c.pid
            for c in self.containers.values()
            if c.role != "init" and self.has_process(c)
        }


@dataclass
class _Streak:
    """Consecutive successes and failures of one probe (the other count is 0)."""

    successes: int = 0
    failures: int = 0

    def record(self, ok: bool) -> None:
        """Count one result."""
        if ok:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1


BUSY_CPU_SHARE = 0.2
"""Share of one core an engine must have used during a timed-out probe to count as busy."""


def process_tree_cpu(pid: int | None) -> float | None:
    """CPU seconds used so far by a process and its descendants; None when it is gone or
    stopped (a stopped process is not busy, whatever it used before)."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
        if any(p.status() == psutil.STATUS_STOPPED for p in tree):
            return None
        return sum(sum(p.cpu_times()[:2]) for p in tree)
    except psutil.Error:
        return None


def engine_was_busy(pid: int | None, before: float | None, seconds: float) -> bool:
    """Whether the engine used at least BUSY_CPU_SHARE of a core since `before` was taken."""
    after = process_tree_cpu(pid)
    if before is None or after is None:
        return False
    return after - before >= BUSY_CPU_SHARE * seconds


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion of earlier variables."""
    for key, replacement in env.items():
        value = value.replace(f"$({key})", replacement)
    return value


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())


def _watched(coroutine: Coroutine[Any, Any, None], pod: str) -> asyncio.Task[None]:
    """A task whose failure is logged at once (never an unobserved exception)."""
    task = asyncio.create_task(coroutine, name=f"pod {pod}")
    task.add_done_callback(_log_failure)
    return task


async def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


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
        worker.task = _watched(worker.run(), worker.name)
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
            _signal_group(process.pid, signal.SIGTERM)
        if live:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(p.wait() for p in live), return_exceptions=True), grace
                )
        for process in self.processes.values():
            _signal_group(process.pid, signal.SIGKILL)
        for process in live:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    await process.wait()
        for task in list(self._background):
            task.cancel()
        self.workers.clear()
