"""Stopping containers and pods as the kubelet does: preStop, SIGTERM, then SIGKILL once the
grace period is over; main containers first, then the sidecars; then the pod object goes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from sandbox.kubelet.containers import MINIMUM_GRACE_SECONDS, Container, signal_group
from sandbox.kubelet.interfaces import ProbedPod, StoppingPod
from sandbox.store.store import JSON, PODS, ApiError


async def stop_container(
    worker: ProbedPod, container: Container, grace: float, run_pre_stop: bool
) -> None:
    """preStop, SIGTERM, then SIGKILL once `grace` seconds have passed in all."""
    deadline = time.monotonic() + grace
    pre_stop = (container.spec.get("lifecycle") or {}).get("preStop")
    if run_pre_stop and pre_stop:
        await run_pre_stop_hook(worker, container, pre_stop, grace)
    process = container.process
    if process is None or process.returncode is not None:
        if process is not None:
            signal_group(process.pid, signal.SIGKILL)
        return
    signal_group(process.pid, signal.SIGTERM)
    # As the kubelet does, a preStop hook that overran the grace period still leaves the
    # container a short time to handle SIGTERM.
    remaining = max(deadline - time.monotonic(), MINIMUM_GRACE_SECONDS)
    try:
        await asyncio.wait_for(process.wait(), remaining)
    except TimeoutError:
        signal_group(process.pid, signal.SIGKILL)
        await process.wait()
    # Anything the container left behind in its group goes too.
    signal_group(process.pid, signal.SIGKILL)


async def run_pre_stop_hook(
    worker: ProbedPod, container: Container, hook: JSON, grace: float
) -> None:
    """A container's preStop hook (sleep, `sleep N` exec, httpGet), within `grace`."""
    try:
        async with asyncio.timeout(grace):
            if "sleep" in hook:
                await asyncio.sleep(float(hook["sleep"].get("seconds", 0)))
            elif "exec" in hook:
                command = hook["exec"].get("command") or []
                if len(command) == 2 and command[0] in ("sleep", "/bin/sleep"):
                    await asyncio.sleep(float(command[1]))
            elif "httpGet" in hook:
                port = worker.ports.get(hook["httpGet"].get("port"))
                if port is not None:
                    await worker.kubelet.http_probe(
                        f"http://127.0.0.1:{port}{hook['httpGet'].get('path', '/')}", grace
                    )
    except TimeoutError:
        worker.event(
            "Warning",
            "FailedPreStopHook",
            f"PreStop hook for container {container.name} did not complete in {int(grace)}s",
            container.name,
        )


async def terminate_pod(worker: StoppingPod, grace: float, force: bool = False) -> None:
    """Stop every container (main ones first, then sidecars) and remove the pod object."""
    if worker.terminating and not force:
        return
    worker.terminating = True
    if worker.task is not None and not worker.task.done():
        worker.task.cancel()
    run_pre_stop = not force
    mains = [c for c in worker.containers.values() if c.role == "main"]
    sidecars = [c for c in worker.containers.values() if c.role == "sidecar"]
    start = time.monotonic()
    for container in mains + sidecars:
        if container.state.get("running"):
            worker.event(
                "Normal", "Killing", f"Stopping container {container.name}", container.name
            )
    for container in mains + sidecars:
        container.ready = False
    worker.publish()
    await asyncio.gather(*(stop_container(worker, c, grace, run_pre_stop) for c in mains))
    remaining = max(grace - (time.monotonic() - start), MINIMUM_GRACE_SECONDS)
    for container in reversed(sidecars):
        await stop_container(worker, container, remaining, run_pre_stop=False)
    for container in mains + sidecars:
        if container.task is not None:
            container.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await container.task
        if container.state.get("running"):
            code = container.process.returncode if container.process else 0
            worker.terminated(container, code if code is not None else 137)
            container.state = container.last_state
            container.last_state = {}
    worker.publish()
    if not worker.gone:
        with contextlib.suppress(ApiError):
            current = worker.store.find(PODS, worker.namespace, worker.name)
            if current is not None and current["metadata"]["uid"] == worker.uid:
                worker.store.delete(PODS, worker.namespace, worker.name)
    worker.gone = True
