"""Prometheus metrics of one backend app, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["Metrics", "metrics_endpoint"]

# Latency buckets from a fast fake engine (milliseconds) to a slow CPU model (minutes).
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_QUEUE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
_REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The metric families in docs/design.md, registered on a private ``CollectorRegistry``."""

    def __init__(self) -> None:
        """Create the registry and every metric family on it."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "kube_llm_requests",
            "Chat completion requests answered, by HTTP status code.",
            ["code"],
            registry=self.registry,
        )
        self.inflight = Gauge(
            "kube_llm_inflight",
            "Chat completions currently admitted and running.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "kube_llm_queue_depth",
            "Chat completions waiting for a slot (at most MAX_QUEUE).",
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "kube_llm_queue_wait_seconds",
            "Time chats spent waiting for a slot, whether they got one or not.",
            buckets=_QUEUE_BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "kube_llm_rejected",
            "Chat completion requests refused before reaching the engine, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "kube_llm_ttft_seconds",
            "Time from request arrival to the first output token.",
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "kube_llm_request_seconds",
            "Time from request arrival to the end of the reply, for admitted chats.",
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.output_tokens = Counter(
            "kube_llm_output_tokens",
            "Output tokens of finished chats, as the engine's usage reports them.",
            registry=self.registry,
        )
        self.output_chunks = Counter(
            "kube_llm_output_chunks",
            "Streamed content chunks of chats whose engine reported no usage.",
            registry=self.registry,
        )
        self.engine_errors = Counter(
            "kube_llm_engine_errors",
            "Engine failures seen by the backend, by kind.",
            ["kind"],
            registry=self.registry,
        )

    def refused(self, reason: str, status: int) -> None:
        """Count a chat request refused with ``status`` before it reached the engine."""
        self.rejected.labels(reason).inc()
        self.requests.labels(str(status)).inc()

    def render(self) -> bytes:
        """Return the registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


async def metrics_endpoint(request: Request) -> Response:
    """Serve ``GET /metrics``."""
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
