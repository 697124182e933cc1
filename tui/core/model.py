"""Frozen values that cross from the cockpit's services to its widgets and reports.

The services (`k8s`, `gateway`, `load`, `chaos`, `explain`, `report`) produce these; the widgets
only read them. None of them holds a Kubernetes client model or a Textual object. Every moment
is wall-clock seconds since the epoch (`time.time()`), so a pod's timestamps from the API server
and the cockpit's own samples share one time axis; durations are plain seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Connection(StrEnum):
    """How the cockpit's link to the API server stands."""

    CONNECTING = "connecting"
    LIVE = "live"
    RETRYING = "retrying"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True)
class ContainerView:
    """One container of a pod, as the pods table needs it."""

    name: str
    ready: bool
    state: str
    """`running`, `waiting: CrashLoopBackOff`, `terminated: Completed`..."""
    restarts: int
    sidecar: bool = False
    """An init container with `restartPolicy: Always` (a native sidecar, the engine)."""
    cpu_request_millicores: float | None = None
    memory_request_bytes: int | None = None


@dataclass(frozen=True)
class PodView:
    """One pod of the Deployment."""

    name: str
    uid: str
    phase: str
    status: str
    """What `kubectl get pods` prints in STATUS: Running, Init:0/2, Terminating, ..."""
    ready: bool
    """The pod's Ready condition is True (it is in the Service's endpoints)."""
    ready_containers: int
    total_containers: int
    restarts: int
    created_at: float | None = None
    started_at: float | None = None
    """`status.startTime`: the kubelet took the pod."""
    ready_at: float | None = None
    """When the Ready condition last turned True, if it is True."""
    deleting_at: float | None = None
    """`metadata.deletionTimestamp`: the pod is terminating."""
    containers: tuple[ContainerView, ...] = ()

    @property
    def terminating(self) -> bool:
        """The pod has been asked to stop."""
        return self.deleting_at is not None

    @property
    def serving(self) -> bool:
        """Ready and not terminating: the pod takes the Service's traffic."""
        return self.ready and not self.terminating

    @property
    def cpu_request_millicores(self) -> float | None:
        """The pod's CPU request (the sum over containers), if every container sets one."""
        values = [c.cpu_request_millicores for c in self.containers]
        if not values or any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)

    @property
    def memory_request_bytes(self) -> int | None:
        """The pod's memory request (the sum over containers), if every container sets one."""
        values = [c.memory_request_bytes for c in self.containers]
        if not values or any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)


@dataclass(frozen=True)
class PodUsage:
    """A pod's CPU and memory from `metrics.k8s.io`."""

    pod: str
    cpu_millicores: float
    memory_bytes: int
    at: float


@dataclass(frozen=True)
class HpaMetric:
    """One metric of the HPA: its target from the spec and its current value from the status."""

    source: str
    """`ContainerResource`, `Resource`, `Pods`, `Object` or `External`."""
    name: str
    """`cpu`, `memory`, or the metric's name."""
    container: str | None = None
    target_utilization: int | None = None
    """Percent of the request, for a Utilization target."""
    target_value: str | None = None
    """A quantity, for a Value or AverageValue target (as the API wrote it)."""
    current_utilization: int | None = None
    current_value: str | None = None
    target_average: float | None = None
    """Per pod, for a ``Pods`` metric's AverageValue target (the quantity as a number)."""
    current_average: float | None = None
    """Per pod, the ``Pods`` metric's current average (what the controller compares)."""


@dataclass(frozen=True)
class Condition:
    """One condition of an object's status: the HPA's (AbleToScale, ScalingActive,
    ScalingLimited) or the Deployment's (Available, Progressing)."""

    type: str
    status: str
    reason: str
    message: str
    since: float | None = None


HpaCondition = Condition
"""The HPA's conditions (the name the HPA's explanations use)."""


@dataclass(frozen=True)
class HpaView:
    """The HorizontalPodAutoscaler's spec and status."""

    name: str
    min_replicas: int
    max_replicas: int
    current_replicas: int
    desired_replicas: int
    metrics: tuple[HpaMetric, ...] = ()
    conditions: tuple[HpaCondition, ...] = ()
    last_scale_at: float | None = None
    scale_up_window_seconds: int = 0
    """`spec.behavior.scaleUp.stabilizationWindowSeconds` (Kubernetes' default: 0)."""
    scale_down_window_seconds: int = 300
    """`spec.behavior.scaleDown.stabilizationWindowSeconds` (Kubernetes' default: 300)."""


@dataclass(frozen=True)
class DeploymentView:
    """The Deployment the cockpit watches."""

    name: str
    selector: str
    """Its label selector as a `labelSelector` query string."""
    replicas: int | None
    ready_replicas: int
    updated_replicas: int
    available_replicas: int
    generation: int = 0
    """`metadata.generation`: bumped by every change of the spec."""
    observed_generation: int = 0
    """`status.observedGeneration`: the generation the controller last acted on."""
    status_replicas: int = 0
    """`status.replicas`: pods of all its ReplicaSets, old ones too (not terminating, not
    Failed)."""
    unavailable_replicas: int = 0
    revision: str = ""
    """`deployment.kubernetes.io/revision`: what `kubectl rollout history` numbers."""
    conditions: tuple[Condition, ...] = ()
    """Available and Progressing, as the Deployment controller writes them."""

    def condition(self, kind: str) -> Condition | None:
        """The condition of this type, if the status has it."""
        return next((c for c in self.conditions if c.type == kind), None)


@dataclass(frozen=True)
class RolloutState:
    """A Deployment's rollout as `kubectl rollout status` judges it."""

    done: bool
    message: str
    """kubectl's words: "Waiting for deployment ... rollout to finish: ...", "successfully
    rolled out", or why it failed."""
    failed: bool = False
    """The rollout cannot progress: `Progressing` is `ProgressDeadlineExceeded`."""


@dataclass(frozen=True)
class ClusterEvent:
    """A Kubernetes Event about the Deployment, its pods or the HPA."""

    at: float
    type: str
    """`Normal` or `Warning`."""
    reason: str
    kind: str
    """The involved object's kind."""
    name: str
    """The involved object's name."""
    message: str
    count: int = 1


@dataclass(frozen=True)
class ClusterSnapshot:
    """Everything the cockpit knows about the cluster at one moment."""

    namespace: str
    connection: Connection
    detail: str = ""
    """Plain words about the connection: "watching", "retrying in 4 s: ...", what is missing."""
    pods: tuple[PodView, ...] = ()
    deployment: DeploymentView | None = None
    hpa: HpaView | None = None
    usage: tuple[PodUsage, ...] = ()
    metrics_available: bool | None = None
    """False when `metrics.k8s.io` is not served ("no metrics-server"); None until known."""
    at: float = 0.0
    metrics_detail: str = ""
    """Why there are no metrics, in plain words ("no metrics-server", a missing permission)."""

    def pod(self, name: str) -> PodView | None:
        """The pod with this name, if it is in the snapshot."""
        return next((p for p in self.pods if p.name == name), None)

    @property
    def serving_pods(self) -> tuple[PodView, ...]:
        """The pods that take the Service's traffic (Ready, not terminating)."""
        return tuple(p for p in self.pods if p.serving)

    def usage_of(self, name: str) -> PodUsage | None:
        """The pod's CPU and memory, if metrics have it."""
        return next((u for u in self.usage if u.pod == name), None)


@dataclass(frozen=True)
class ActionResult:
    """What came of evicting or deleting a pod."""

    action: str
    """`evict` or `delete`."""
    pod: str
    ok: bool
    message: str
    status: int | None = None
    """The API server's HTTP status, when it answered."""
    refused_by_pdb: bool = False
    at: float = 0.0


class Outcome(StrEnum):
    """How one request ended, from the user's side."""

    OK = "ok"
    SHED = "shed"
    """429: the gateway had no room and said when to come back (not a failure)."""
    ERROR = "error"
    CANCELLED = "cancelled"
    """The client stopped the chat (the load was stopped, the user pressed Escape): neither a
    failure nor a success of the service; counted apart, like shed requests."""


@dataclass(frozen=True)
class ChatSample:
    """One chat as a user felt it."""

    started_at: float
    origin: str
    """`load` (the load engine) or `chat` (the chat pane)."""
    outcome: Outcome
    status: int | None = None
    error_kind: str | None = None
    """For errors and shed requests: `http_503`, `connect`, `timeout`, `truncated`, ..."""
    pod: str | None = None
    """The serving pod, from `X-Served-By`."""
    ttft: float | None = None
    e2e: float | None = None
    gaps: tuple[float, ...] = ()
    """Seconds between consecutive content chunks."""
    output_tokens: int = 0
    tokens_from_usage: bool = False
    """True when `output_tokens` is the backend's `usage`; False when it counts content chunks."""
    retries_after_429: int = 0
    retry_after: float | None = None
    """For a 429: the seconds the gateway's `Retry-After` asked the client to wait."""
    error_detail: str | None = None
    """The server's own words about a failure (untrusted text: sanitise before showing)."""
    streamed: bool = True
    """False for a chat asked with `stream: false`: one reply at the end, so it has no TTFT
    and no inter-token gaps, and its tokens come from `usage`."""

    @property
    def ended_at(self) -> float:
        """When the request ended (its start when it never got an answer)."""
        return self.started_at + (self.e2e or 0.0)

    @property
    def tokens_per_second(self) -> float | None:
        """Output tokens (or chunks) per second after the first one."""
        if self.ttft is None or self.e2e is None or self.output_tokens < 2:
            return None
        span = self.e2e - self.ttft
        return (self.output_tokens - 1) / span if span > 0 else None


@dataclass(frozen=True)
class HealthSample:
    """One `/healthz` through the Service, timed from the cockpit."""

    at: float
    latency: float | None
    status: int | None = None
    pod: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The gateway answered 200."""
        return self.status == 200


@dataclass(frozen=True)
class BackendMetrics:
    """A pod's gateway counters from its `/metrics` (through the pod proxy)."""

    pod: str
    at: float
    inflight: float
    requests: float
    ttft_sum: float
    ttft_count: float
    output_tokens: float
    queued: float | None = None
    output_chunks: float = 0.0
    """Content chunks of replies whose engine gave no token count (`usage`), counted apart."""


@dataclass(frozen=True)
class RecoveryTimeline:
    """What followed one pod kill, moment by moment (absent moments stay None)."""

    pod: str
    action: str
    """`evict` or `delete` (force, grace 0)."""
    requested_at: float
    terminating_at: float | None = None
    left_endpoints_at: float | None = None
    """The pod stopped being Ready (it left the Service's endpoints) or was deleted."""
    gone_at: float | None = None
    replacement: str | None = None
    replacement_created_at: float | None = None
    replacement_started_at: float | None = None
    replacement_ready_at: float | None = None
    first_chat_at: float | None = None
    """The replacement's first chat served (its `X-Served-By`)."""
    failed_requests: int = 0
    shed_requests: int = 0
    ok_requests: int = 0
    complete: bool = False
    refused: str | None = None
    """Why the kill did not happen (a PDB refusal), if it did not."""
    replacement_removed_at: float | None = None
    """The replacement was deleted before it was Ready (a scale-down took it), if it was."""
    closed_at: float | None = None
    """When the tracker finished the timeline (None while it is open): the end of the window in
    which the users' requests were counted."""

    @property
    def recovery_seconds(self) -> float | None:
        """From the request to the replacement being Ready."""
        if self.replacement_ready_at is None:
            return None
        return self.replacement_ready_at - self.requested_at


@dataclass(frozen=True)
class ReplicaPoint:
    """The HPA's replica counts at one moment."""

    at: float
    current: int
    desired: int
    ready: int = 0
    pods: int | None = None
    """The Deployment's pods that exist (starting, Ready or terminating): what is paid for."""


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles and rates over a sliding window, for the latency panel and the report."""

    window_seconds: float
    health_p50: float | None = None
    health_p99: float | None = None
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    e2e_p50: float | None = None
    e2e_p95: float | None = None
    tokens_per_second: float | None = None
    """Output tokens (or chunks) per second, summed over all chats in the window."""
    tokens_are_chunks: bool = False
    requests_per_second: float = 0.0
    chats: int = 0
    ok: int = 0
    shed: int = 0
    errors: tuple[tuple[str, int], ...] = ()
    """Errors by kind, most frequent first."""
    served_by: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    """Chats served per pod."""
    ttft_p50_by_pod: tuple[tuple[str, float], ...] = field(default_factory=tuple)
