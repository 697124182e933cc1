"""Probes as the kubelet runs them: startup, then readiness and liveness, each on its period.

httpGet and tcpSocket probes run against the container's loopback port. An exec probe cannot
run here (there is no container image to exec into): for the engine the sandbox asks its
OpenAI-compatible server instead, telling a hung engine from a busy one by its CPU; any other
probe the sandbox cannot run passes, and a ProbeNotRun event says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from sandbox.kubelet.containers import ENGINE_CONTAINER, Container
from sandbox.kubelet.interfaces import ProbedPod
from sandbox.store.store import JSON


class Prober:
    """The probes of one pod's containers."""

    def __init__(self, worker: ProbedPod) -> None:
        self.worker = worker
        self._unrunnable_said: set[tuple[str, str]] = set()

    async def run(self, container: Container) -> None:
        """Run the container's probes; returns when a startup or liveness probe fails."""
        started_at = time.monotonic()
        startup = container.spec.get("startupProbe")
        if startup and not await self._probe_until(container, "Startup", startup, started_at):
            self.worker.event(
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
        self.worker.publish()
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
                self.worker.event(
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
                ready = streak.successes >= success_threshold and not self.worker.terminating
                if not container.ready and ready:
                    container.ready = True
                    self.worker.publish()
                return
            if not self.worker.terminating:
                self.worker.event(
                    "Warning", "Unhealthy", f"Readiness probe failed: {message}", container.name
                )
            if container.ready and streak.failures >= failure_threshold:
                container.ready = False
                self.worker.publish()

        await self._probe_loop(container, probe, started_at, observe)

    async def _liveness(self, container: Container, probe: JSON, started_at: float) -> None:
        threshold = int(probe.get("failureThreshold", 3))

        def observe(ok: bool, message: str, streak: _Streak) -> bool | None:
            if ok:
                return None
            self.worker.event(
                "Warning", "Unhealthy", f"Liveness probe failed: {message}", container.name
            )
            if streak.failures < threshold:
                return None
            self.worker.event(
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
            port = (
                self.worker.ports.get(action.get("port"))
                if action.get("port") is not None
                else None
            )
            if port is None:
                return False, f"no port {action.get('port')!r} in the pod"
            path = action.get("path", "/")
            return await self.worker.kubelet.http_probe(f"http://127.0.0.1:{port}{path}", timeout)
        if "tcpSocket" in probe:
            port = self.worker.ports.get(probe["tcpSocket"].get("port"))
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
            engine_port = self.worker.container_ports.get(container.name)
            if container.name == ENGINE_CONTAINER and engine_port is not None:
                before = process_tree_cpu(container.pid)
                return await self.worker.kubelet.http_probe(
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
            self.worker.event(
                "Warning",
                "ProbeNotRun",
                f"The sandbox cannot run the {kind} probe {what!r} of container "
                f"{container.name} (no container image to run it in): it counts as passing",
                container.name,
            )
        return True, ""


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


async def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
