"""What the API server's parts read from it: the store, the pods' runtime, the credentials and
the proxies' HTTP client. The proxies and subresources take a `ServerContext` (the `ApiServer`
is one), so they need no import of the server that routes to them."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import httpx2

from sandbox.apiserver.auth import Authenticator
from sandbox.apiserver.version import ServedVersion
from sandbox.store.store import JSON, Store


class Runtime(Protocol):
    """What the API server needs from the kubelet and the metrics sampler."""

    def pod_port(self, namespace: str, pod: str, port: str | int) -> int | None:
        """The loopback port standing in for a pod's container port (number or name)."""

    def pod_metrics(self, namespace: str | None) -> list[JSON]:
        """`metrics.k8s.io` PodMetrics objects of the pods measured last."""

    def log_path(self, namespace: str, pod: str, container: str | None) -> Path | None:
        """The file holding a container's output, if it ran."""

    def custom_metrics(
        self, namespace: str, metric: str, pods: list[str], metric_selector: str | None
    ) -> JSON:
        """A ``custom.metrics.k8s.io`` MetricValueList of ``pods`` (raises MetricNotServed)."""


class ServerContext(Protocol):
    """The API server's state that its request handlers share."""

    store: Store
    runtime: Runtime
    authenticator: Authenticator
    http: httpx2.AsyncClient | None
    """The proxies' client, open while the server runs."""
    proxy_rotation: dict[tuple[str, str], int]
    """Where each Service's round robin over its ready pods stands."""
    version: ServedVersion
    """The Kubernetes version served (it picks the OpenAPI schemas)."""
