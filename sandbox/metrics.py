"""Pod metrics for the sandbox: psutil samples, Kubernetes quantities and ``PodMetrics`` objects.

The sandbox stands in for metrics-server. Each container of a pod is a local process (plus
its children); :class:`ProcessTreeSampler` measures them and :func:`pod_metrics` renders the
samples as ``metrics.k8s.io/v1beta1`` objects, the same samples the HPA controller reads.

API summary (what the sandbox core calls, once per HPA sync period or metrics request)::

    sampler = ProcessTreeSampler()                     # one per sandbox, keeps CPU baselines
    samples = sampler.sample({"llm-backend-abc": {"engine": 4242, "backend": 4250}})
    # -> dict[pod name, PodSample]; a pod is left out while any listed container has no
    #    live process (pid None or exited), as metrics-server leaves out incomplete pods
    pod_metrics(samples["llm-backend-abc"], namespace="kube-llm", labels={...})
    pod_metrics_list([...objects...])                  # for LIST /apis/metrics.k8s.io/...

    parse_cpu_millicores("250m") == 250; parse_memory_bytes("128Mi") == 134217728
    format_cpu_millicores(250) == "250m"; format_memory(134217728) == "128Mi"
    format_decimal_si(1500, scale=-3) == "1500m"   # canonical form, as apimachinery prints

CPU is the cpu-time delta of the process tree (user + system of every live process, plus the
times of children they have reaped, so a short-lived child still counts) divided by the time
since the previous sample of that container; the first sample of a container (or of a
restarted one, detected by its root's pid and start time) counts from the root's start.
Memory is RSS summed over the tree: Kubernetes reports the cgroup working set, and RSS is the
closest per-process stand-in. Nothing here imports ``backend`` or ``tui``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import psutil
from kubernetes.utils import parse_quantity as kubernetes_parse_quantity

__all__ = [
    "ContainerSample",
    "PodSample",
    "ProcessTreeSampler",
    "QuantityError",
    "format_cpu_millicores",
    "format_cpu_nanocores",
    "format_decimal_si",
    "format_go_duration",
    "format_memory",
    "format_rfc3339",
    "parse_cpu_millicores",
    "parse_memory_bytes",
    "parse_quantity",
    "pod_metrics",
    "pod_metrics_list",
]

METRICS_API_VERSION = "metrics.k8s.io/v1beta1"

# --------------------------------------------------------------------------------------------
# Quantities
# --------------------------------------------------------------------------------------------

_BINARY_SUFFIXES = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_SUFFIXES = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}


class QuantityError(ValueError):
    """A string that is not a Kubernetes resource quantity."""


def parse_quantity(quantity: str | int | float) -> Fraction:
    """Parse a Kubernetes quantity ("250m", "1", "128Mi", "1e3", "500M") into an exact number
    (the kubernetes client's parser; QuantityError for anything else)."""
    # The client's parser lets spaces through ("1 Mi"); apimachinery does not.
    if (
        isinstance(quantity, bool)
        or (isinstance(quantity, float) and not math.isfinite(quantity))
        or (isinstance(quantity, str) and any(c.isspace() for c in quantity))
    ):
        raise QuantityError(f"not a quantity: {quantity!r}")
    try:
        value = kubernetes_parse_quantity(quantity)
    except (ValueError, TypeError, ArithmeticError):
        raise QuantityError(f"not a quantity: {quantity!r}") from None
    return Fraction(value)


def parse_cpu_millicores(quantity: str | int | float) -> int:
    """CPU quantity to millicores, rounded up as apimachinery's ``MilliValue`` does."""
    return math.ceil(parse_quantity(quantity) * 1000)


def parse_memory_bytes(quantity: str | int | float) -> int:
    """Memory quantity to bytes, rounded up as apimachinery's ``Value`` does."""
    return math.ceil(parse_quantity(quantity))


def format_decimal_si(amount: int, scale: int = 0) -> str:
    """Canonical DecimalSI text of ``amount * 10**scale`` ("1500m", "2", "40M", "123456n").

    Like apimachinery, it picks the largest SI exponent (a multiple of 3) that keeps the
    mantissa an integer; ``scale`` must be a multiple of 3 between -9 and 18.
    """
    if scale not in _DECIMAL_SUFFIXES.values():
        raise ValueError(f"scale must be an SI exponent, not {scale}")
    if amount == 0:
        return "0"
    sign = "-" if amount < 0 else ""
    mantissa, exponent = abs(amount), scale
    while exponent < 18 and mantissa % 1000 == 0:
        mantissa //= 1000
        exponent += 3
    while exponent < 0 and exponent not in (-9, -6, -3):  # pragma: no cover - defensive
        exponent += 3
    suffix = {v: k for k, v in _DECIMAL_SUFFIXES.items()}[exponent]
    return f"{sign}{mantissa}{suffix}"


def format_cpu_millicores(millicores: int) -> str:
    """CPU in millicores as a canonical quantity ("250m", "1", "1500m")."""
    return format_decimal_si(millicores, -3)


def format_cpu_nanocores(nanocores: int) -> str:
    """CPU in nanocores as a canonical quantity ("123456789n", "5m"), as metrics-server reports."""
    return format_decimal_si(nanocores, -9)


def format_memory(num_bytes: int) -> str:
    """Bytes as a canonical BinarySI quantity ("12345Ki", "128Mi", or plain bytes)."""
    if num_bytes == 0:
        return "0"
    suffix = ""
    value = num_bytes
    for name in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"):
        if value % 1024 != 0:
            break
        value //= 1024
        suffix = name
    return f"{value}{suffix}"


def format_go_duration(seconds: float) -> str:
    """Seconds in Go's ``time.Duration`` text, as ``metav1.Duration`` serialises it ("15s")."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return f"{sign}{_trim(Fraction(nanos, size))}{unit}"
    hours, rest = divmod(nanos, 3600 * 1_000_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000_000)
    text = f"{_trim(Fraction(rest, 1_000_000_000))}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return f"{sign}{text}"


def _trim(value: Fraction) -> str:
    """Decimal text of a fraction with at most 9 digits after the point, trailing zeros cut."""
    text = f"{float(value):.9f}".rstrip("0").rstrip(".")
    return text or "0"


def format_rfc3339(epoch_seconds: float) -> str:
    """Wall-clock seconds as an RFC 3339 timestamp with second precision, like the API server."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    def __init__(self) -> None:
        self._baselines: dict[tuple[str, str], _ContainerBaseline] = {}

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
                measured[container], container_window = result
                window = max(window, container_window)
            if containers and len(measured) == len(containers):
                samples[pod] = PodSample(pod, wall, window, measured)
        live = {(pod, c) for pod, containers in targets.items() for c in containers}
        for key in set(self._baselines) - live:
            del self._baselines[key]
        return samples

    def _sample_container(
        self, pod: str, container: str, pid: int
    ) -> tuple[ContainerSample, float] | None:
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
        if baseline is None or baseline.root != root_key:
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
        return ContainerSample(nanocores, memory, processes), interval


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


def pod_metrics_list(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A ``PodMetricsList`` wrapping rendered ``PodMetrics`` objects."""
    return {
        "kind": "PodMetricsList",
        "apiVersion": METRICS_API_VERSION,
        "metadata": {},
        "items": [dict(item) for item in items],
    }
