"""Pod metrics for the sandbox: psutil samples and ``PodMetrics`` objects.

The sandbox stands in for metrics-server. Each container of a pod is a local process (plus
its children); :class:`ProcessTreeSampler` measures them and :func:`pod_metrics` renders the
samples as ``metrics.k8s.io/v1beta1`` objects, the same samples the HPA controller reads.

API summary (what the sandbox core calls, once per HPA sync period or metrics request)::

    sampler = ProcessTreeSampler()                     # one per sandbox, keeps CPU baselines
    samples = sampler.sample({"llm-backend-abc": {"engine": 4242, "backend": 4250}})
    # -> dict[pod name, PodSample]; a pod is left out while any listed container has no
    #    live process (pid None or exited), as metrics-server leaves out incomplete pods
    pod_metrics(samples["llm-backend-abc"], namespace="kube-llm", labels={...})

CPU is the cpu-time delta of the process tree (user + system of every live process, plus the
times of children they have reaped, so a short-lived child still counts) divided by the time
since the previous sample of that container; the first sample of a container (or of a
restarted one, detected by its root's pid and start time) counts from the root's start.
Memory is RSS summed over the tree: Kubernetes reports the cgroup working set, and RSS is the
closest per-process stand-in. Nothing here imports ``backend`` or ``tui``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil

from sandbox.store.quantity import (
    format_cpu_millicores,
    format_cpu_nanocores,
    format_go_duration,
    format_memory,
    format_rfc3339,
)

__all__ = [
    "ContainerSample",
    "PodSample",
    "ProcessTreeSampler",
    "pod_metrics",
]

METRICS_API_VERSION = "metrics.k8s.io/v1beta1"

FRESH_CONTAINER_MIN_SECONDS = 10.0
"""metrics-server's `freshContainerMinMetricsResolution`: a younger container's first point
would give an inaccurate rate, so it waits for a second scrape."""

# --------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerSample:
    """One container's usage over one sampling window."""

    cpu_nanocores: int
    memory_bytes: int
    processes: int = 1

    @property
    def cpu_millicores(self) -> int:
        """CPU in millicores, rounded up like ``Quantity.MilliValue``."""
        return -(-self.cpu_nanocores // 1_000_000)


@dataclass(frozen=True)
class PodSample:
    """One pod's usage: every container measured, at ``timestamp`` over ``window_seconds``."""

    pod: str
    timestamp: float
    window_seconds: float
    containers: Mapping[str, ContainerSample] = field(default_factory=dict)

    @property
    def cpu_millicores(self) -> int:
        """Pod CPU: the sum of its containers' millicores."""
        return sum(c.cpu_millicores for c in self.containers.values())

    @property
    def memory_bytes(self) -> int:
        """Pod memory: the sum of its containers' RSS."""
        return sum(c.memory_bytes for c in self.containers.values())


@dataclass
class _ContainerBaseline:
    """What the previous sample of one container saw: its root, cpu-time total and the time."""

    timestamp: float
    root: tuple[int, float]
    cpu_seconds: float


class ProcessTreeSampler:
    """Measures the process tree of each container with psutil, keeping CPU baselines.

    Not thread-safe: call it from one task. The wall clock (``time.time``) dates samples; a
    monotonic clock measures the intervals.
    """

    def __init__(self, resolution_seconds: float | None = None) -> None:
        self._baselines: dict[tuple[str, str], _ContainerBaseline] = {}
        self.resolution_seconds = resolution_seconds
        """With a resolution, a container's first sight is served as metrics-server serves it:
        only when it started between 10 s and one resolution ago (its window then counts from
        its start), else from the next sample on (its window the time between the two)."""

    def sample(self, targets: Mapping[str, Mapping[str, int | None]]) -> dict[str, PodSample]:
        """Sample every pod in ``targets`` (pod -> container -> root pid).

        A pod whose containers cannot all be measured (pid None, process gone) is left out,
        and the HPA then treats it as a pod with missing metrics, as upstream does.
        """
        wall = time.time()
        samples: dict[str, PodSample] = {}
        for pod, containers in targets.items():
            measured: dict[str, ContainerSample] = {}
            window = 0.0
            for container, pid in containers.items():
                result = None if pid is None else self._sample_container(pod, container, pid)
                if result is None:
                    self._baselines.pop((pod, container), None)
                    continue
                usage, container_window, first_sight = result
                if first_sight and not self._fresh_enough(container_window):
                    continue  # kept as the baseline: served from the next sample on
                measured[container] = usage
                window = max(window, container_window)
            if containers and len(measured) == len(containers):
                samples[pod] = PodSample(pod, wall, window, measured)
        live = {(pod, c) for pod, containers in targets.items() for c in containers}
        for key in set(self._baselines) - live:
            del self._baselines[key]
        return samples

    def _fresh_enough(self, age: float) -> bool:
        """Whether metrics-server serves a container at its first scrape (`pkg/storage/pod.go`:
        started at least `freshContainerMinMetricsResolution`, 10 s, and less than one metric
        resolution before it); without a resolution, always."""
        if self.resolution_seconds is None:
            return True
        return FRESH_CONTAINER_MIN_SECONDS <= age < self.resolution_seconds

    def _sample_container(
        self, pod: str, container: str, pid: int
    ) -> tuple[ContainerSample, float, bool] | None:
        now = time.monotonic()
        try:
            root = psutil.Process(pid)
            root_key = (pid, root.create_time())
            if root.status() == psutil.STATUS_ZOMBIE:
                return None
            tree = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return None
        cpu_total = 0.0
        memory = 0
        processes = 0
        for proc in tree:
            try:
                times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # gone between listing and reading: its reaper's times count it
            # Times of reaped children move into the reaper's children_* fields, so the
            # tree total stays continuous when a child exits.
            cpu_total += times.user + times.system + times.children_user + times.children_system
            processes += 1
            # an exited process holds no memory
            with contextlib.suppress(
                psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied
            ):
                memory += proc.memory_info().rss
        baseline = self._baselines.get((pod, container))
        first_sight = baseline is None or baseline.root != root_key
        if baseline is None or first_sight:
            # First sight of this container, or it restarted: measure from the root's start.
            since = now - _process_age(root)
            previous_total = 0.0
        else:
            since = baseline.timestamp
            previous_total = baseline.cpu_seconds
        self._baselines[(pod, container)] = _ContainerBaseline(now, root_key, cpu_total)
        interval = max(now - since, 1e-3)
        cpu_seconds = max(0.0, cpu_total - previous_total)
        nanocores = round(cpu_seconds / interval * 1e9)
        return ContainerSample(nanocores, memory, processes), interval, first_sight


def _process_age(proc: psutil.Process) -> float:
    """Seconds since the process started.

    On Linux this reads the start tick and the uptime (10 ms precision); psutil's
    ``create_time`` adds the boot time, which /proc gives in whole seconds only.
    """
    try:
        with open(f"/proc/{proc.pid}/stat", encoding="ascii") as stat_file:
            fields = stat_file.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as uptime_file:
            uptime = float(uptime_file.read().split()[0])
        start_ticks = int(fields[19])  # field 22, counted after "pid (comm)"
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return max(0.0, time.time() - proc.create_time())


# --------------------------------------------------------------------------------------------
# metrics.k8s.io objects
# --------------------------------------------------------------------------------------------


def pod_metrics(
    sample: PodSample,
    *,
    namespace: str,
    labels: Mapping[str, str] | None = None,
    cpu_in_nanocores: bool = True,
    now: float | None = None,
) -> dict[str, Any]:
    """A ``metrics.k8s.io/v1beta1`` ``PodMetrics`` object for one pod sample.

    CPU is written in nanocores ("123456789n") as metrics-server does, or in millicores
    ("123m") with ``cpu_in_nanocores=False``; memory in BinarySI ("12345Ki").
    """
    containers = []
    for name, usage in sample.containers.items():
        cpu = (
            format_cpu_nanocores(usage.cpu_nanocores)
            if cpu_in_nanocores
            else format_cpu_millicores(usage.cpu_millicores)
        )
        containers.append(
            {"name": name, "usage": {"cpu": cpu, "memory": format_memory(usage.memory_bytes)}}
        )
    return {
        "kind": "PodMetrics",
        "apiVersion": METRICS_API_VERSION,
        "metadata": {
            "name": sample.pod,
            "namespace": namespace,
            "labels": dict(labels or {}),
            "creationTimestamp": format_rfc3339(time.time() if now is None else now),
        },
        "timestamp": format_rfc3339(sample.timestamp),
        "window": format_go_duration(sample.window_seconds),
        "containers": containers,
    }
