"""Read what bounds an HPA's pace from a live cluster, for a scenario's `within: auto`.

What a client can learn, and what it cannot: the HPA's `spec` (behaviour, min and max) is an
object anyone with `get` on it reads. The metrics resolution shows in metrics.k8s.io itself:
metrics-server serves each pod's usage over the `window` between its last two scrapes
(`pkg/storage/pod.go`), so the longest window is its `--metric-resolution` (a fresh container's
first window is shorter, never longer). The HPA sync period is a kube-controller-manager flag
that no API tells (its static pod is in kube-system, which the cockpit's Role cannot read), so
it is a setting with Kubernetes' default, 15 s; taking it too long only widens the bounds.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from tui.cluster.errors import describe
from tui.cluster.kubeconfig import ClusterTarget
from tui.cluster.watch import read_json
from tui.core.hpa_timing import MINIKUBE_METRICS_RESOLUTION_SECONDS, HpaTiming

__all__ = ["HpaTimingError", "go_duration_seconds", "read_hpa_timing", "timing_from"]

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class HpaTimingError(Exception):
    """The HPA could not be read (in words)."""


def go_duration_seconds(text: str) -> float | None:
    """A Go duration (`1m0.5s`, `60s`, `5.012s`) in seconds; None when it is not one."""
    if not text or _GO_DURATION.sub("", text) not in ("", "-"):
        return None
    total = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _GO_DURATION.findall(text))
    return -total if text.startswith("-") else total


def resolution_from_windows(pod_metrics: list[dict[str, Any]]) -> float | None:
    """The metrics resolution that PodMetrics' windows show (their longest, whole seconds)."""
    windows = [
        seconds
        for item in pod_metrics
        if (seconds := go_duration_seconds(str(item.get("window", "")))) is not None
    ]
    return max(1.0, float(round(max(windows)))) if windows else None


def timing_from(
    hpa: dict[str, Any],
    pod_metrics: list[dict[str, Any]] | None,
    *,
    sync_seconds: float,
    sync_given: bool,
    resolution_seconds: float | None,
) -> HpaTiming:
    """The timing of a live HPA, with where each number came from."""
    name = (hpa.get("metadata") or {}).get("name", "?")
    sources = [f"behaviour, minReplicas and maxReplicas: the live HPA {name}"]
    sources.append(
        f"sync period {sync_seconds:g} s: "
        + ("--hpa-sync-seconds" if sync_given else "Kubernetes' default (no API tells it)")
    )
    seen = resolution_from_windows(pod_metrics or [])
    if resolution_seconds is not None:
        resolution = resolution_seconds
        sources.append(f"metrics resolution {resolution:g} s: --metrics-resolution-seconds")
    elif seen is not None:
        resolution = seen
        sources.append(f"metrics resolution {resolution:g} s: the pods' metrics.k8s.io windows")
    else:
        resolution = MINIKUBE_METRICS_RESOLUTION_SECONDS
        sources.append(
            f"metrics resolution {resolution:g} s: assumed (Minikube's metrics-server; no pod "
            "metrics to read it from)"
        )
    return HpaTiming.from_spec(
        hpa.get("spec") or {},
        sync_seconds,
        resolution,
        tuple(sources),
        resolution_assumed=resolution_seconds is None and seen is None,
    )


async def read_hpa_timing(
    target: ClusterTarget,
    name: str,
    *,
    sync_seconds: float,
    sync_given: bool = False,
    resolution_seconds: float | None = None,
    request_timeout: float = 15.0,
) -> HpaTiming:
    """The live HPA `name`'s timing; `HpaTimingError` when the HPA cannot be read."""
    async with target.api_client() as api:
        try:
            async with asyncio.timeout(request_timeout):
                hpa = await read_json(
                    await client.AutoscalingV2Api(
                        api
                    ).read_namespaced_horizontal_pod_autoscaler_without_preload_content(
                        name, target.namespace
                    )
                )
        except ApiException as error:
            raise HpaTimingError(f"read HPA {name}: {describe(error)}") from None
        except (TimeoutError, OSError, aiohttp.ClientError) as error:
            raise HpaTimingError(f"read HPA {name}: {describe(error, request_timeout)}") from None
        items: list[dict[str, Any]] | None = None
        if resolution_seconds is None:
            try:
                async with asyncio.timeout(request_timeout):
                    body = await read_json(
                        await client.CustomObjectsApi(
                            api
                        ).list_namespaced_custom_object_without_preload_content(
                            "metrics.k8s.io", "v1beta1", target.namespace, "pods"
                        )
                    )
                items = list(body.get("items") or [])
            except (ApiException, TimeoutError, OSError, aiohttp.ClientError):
                items = None  # no metrics-server, or no right to read it: assume
    return timing_from(
        hpa,
        items,
        sync_seconds=sync_seconds,
        sync_given=sync_given,
        resolution_seconds=resolution_seconds,
    )
