"""Scripted stand-ins for the cockpit's two outside parts: a whole cluster and a slow engine.

The app's behaviour and its screenshots are tested with these, so every number on screen is
fixed: the Pilot and snapshot tests drive the real app, the real session, load engine,
recorder, recovery tracker and explainer over them. The real adapter and gateway are tested
against the sandbox and a real backend elsewhere (test_k8s_*, test_gateway, test_e2e).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tui.cockpit.app import CockpitApp, make_cockpit
from tui.core.model import (
    ActionResult,
    BackendMetrics,
    ChatSample,
    ClusterEvent,
    ClusterSnapshot,
    Connection,
    ContainerView,
    DeploymentView,
    HealthSample,
    HpaCondition,
    HpaMetric,
    HpaView,
    Outcome,
    PodUsage,
    PodView,
)
from tui.core.settings import CockpitSettings
from tui.services.session import Session, SessionSink

NOW = 1_764_547_200.0  # 2025-12-01 00:00:00 UTC: a fixed clock for fixed screenshots
NAMESPACE = "kube-llm"


def pod(
    name: str,
    *,
    age: float = 600.0,
    ready: bool = True,
    status: str = "Running",
    deleting: bool = False,
    restarts: int = 0,
) -> PodView:
    """A pod of the Deployment as the adapter reports it: engine sidecar and backend."""
    containers = (
        ContainerView("engine", ready, "running", 0, True, 250.0, 512 * 2**20),
        ContainerView("backend", ready, "running", restarts, False, 100.0, 128 * 2**20),
    )
    return PodView(
        name=name,
        uid=f"uid-{name}",
        phase="Running" if status != "Pending" else "Pending",
        status="Terminating" if deleting else status,
        ready=ready and not deleting,
        ready_containers=2 if ready else 0,
        total_containers=2,
        restarts=restarts,
        created_at=NOW - age,
        started_at=NOW - age + 0.2,
        ready_at=NOW - age + 3 if ready else None,
        deleting_at=NOW - 1 if deleting else None,
        containers=containers,
    )


def hpa(current: int = 2, desired: int = 2, cpu: int = 12, memory: int = 31) -> HpaView:
    """The sandbox overlay's HPA with a reading."""
    return HpaView(
        name="llm-backend",
        min_replicas=2,
        max_replicas=6,
        current_replicas=current,
        desired_replicas=desired,
        metrics=(
            HpaMetric("ContainerResource", "cpu", "engine", 70, None, cpu),
            HpaMetric("ContainerResource", "memory", "backend", 80, None, memory),
        ),
        conditions=(
            HpaCondition("AbleToScale", "True", "ReadyForNewScale", "recommended size matches"),
            HpaCondition("ScalingActive", "True", "ValidMetricFound", "the HPA computed"),
            HpaCondition("ScalingLimited", "True", "TooFewReplicas", "below the minimum"),
        ),
        scale_down_window_seconds=30,
    )


def snapshot(*pods: PodView, hpa_view: HpaView | None = None, **changes: object) -> ClusterSnapshot:
    """A live snapshot of these pods, with metrics for each."""
    base = ClusterSnapshot(
        namespace=NAMESPACE,
        connection=Connection.LIVE,
        detail="watching",
        pods=pods,
        deployment=DeploymentView(
            "llm-backend", "app.kubernetes.io/name=llm-backend", None, 2, 2, 2
        ),
        hpa=hpa_view if hpa_view is not None else hpa(),
        usage=tuple(
            PodUsage(p.name, 35.0 + 10 * i, (150 + 20 * i) * 2**20, NOW) for i, p in enumerate(pods)
        ),
        metrics_available=True,
        at=NOW,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


TWO_PODS = snapshot(pod("llm-backend-5d8f-abcde", age=900), pod("llm-backend-5d8f-fghij", age=840))


@dataclass
class ScriptedCluster:
    """A cluster the test drives: it reports the snapshots and events the test pushes."""

    on_snapshot: Callable[[ClusterSnapshot], None]
    on_event: Callable[[ClusterEvent], None]
    first: ClusterSnapshot | None = TWO_PODS
    refuse_evictions: bool = False
    evicted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    closed: bool = False

    async def run(self) -> None:
        """Report the first snapshot, then wait to be cancelled."""
        if self.first is not None:
            self.on_snapshot(self.first)
        await asyncio.Event().wait()

    def push(self, snapshot: ClusterSnapshot) -> None:
        """Report a new state of the cluster."""
        self.on_snapshot(snapshot)

    async def evict(self, pod: str) -> ActionResult:
        """Evict, or refuse as a PodDisruptionBudget does (429)."""
        if self.refuse_evictions:
            return ActionResult(
                "evict",
                pod,
                ok=False,
                message="Cannot evict pod as it would violate the pod's disruption budget.",
                status=429,
                refused_by_pdb=True,
                at=NOW,
            )
        self.evicted.append(pod)
        return ActionResult("evict", pod, ok=True, message="evicted", status=201, at=NOW)

    async def force_delete(self, pod: str) -> ActionResult:
        """Delete with grace period 0."""
        self.deleted.append(pod)
        return ActionResult("delete", pod, ok=True, message="deleted", status=200, at=NOW)

    async def close(self) -> None:
        """Nothing to release."""
        self.closed = True


@dataclass
class ScriptedGateway:
    """A slow engine's gateway: replies with `reply` in pieces, with fixed timings."""

    reply: str = "Kubernetes keeps two pods of me running, and the HPA adds more under load."
    pod: str = "llm-backend-5d8f-abcde"
    piece_delay: float = 0.0
    hold: asyncio.Event | None = None
    """When set, each chat waits for this event before its first piece (a load in progress)."""
    chats: list[Sequence[Mapping[str, str]]] = field(default_factory=list)
    closed: bool = False

    async def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        max_tokens: int = 64,
        origin: str = "chat",
        on_text: Callable[[str], None] | None = None,
        stop: asyncio.Event | None = None,
        stream: bool = True,
    ) -> ChatSample:
        """Stream the reply word by word; `stop` ends it as `cancelled`."""
        self.chats.append(messages)
        if self.hold is not None:
            await self.hold.wait()
        words = self.reply.split(" ")
        for index, word in enumerate(words):
            if stop is not None and stop.is_set():
                return ChatSample(NOW, origin, Outcome.ERROR, 200, "cancelled", self.pod, 0.21, 0.5)
            if on_text is not None:
                on_text(word if index == 0 else f" {word}")
            await asyncio.sleep(self.piece_delay)
        return ChatSample(
            started_at=NOW - 1.4,
            origin=origin,
            outcome=Outcome.OK,
            status=200,
            pod=self.pod,
            ttft=0.21,
            e2e=1.4,
            gaps=(0.02,) * (len(words) - 1),
            output_tokens=len(words),
            tokens_from_usage=True,
        )

    async def health(self) -> HealthSample:
        """A 3 ms health check."""
        return HealthSample(NOW, 0.003, 200, self.pod)

    async def pod_metrics(self, pod: str) -> BackendMetrics:
        """One chat in flight everywhere."""
        return BackendMetrics(pod, NOW, 1.0, 10.0, 2.1, 10.0, 640.0)

    async def aclose(self) -> None:
        """Nothing to release."""
        self.closed = True


@dataclass
class Rig:
    """The app with its scripted parts, for a test to drive and inspect."""

    app: CockpitApp
    gateway: ScriptedGateway
    clusters: list[ScriptedCluster] = field(default_factory=list)

    @property
    def cluster(self) -> ScriptedCluster:
        """The scripted cluster the session made."""
        assert self.clusters, "the session has not connected yet"
        return self.clusters[0]


def rig(
    tmp_path: Path | None = None,
    *,
    sandbox: bool = True,
    read_only: bool = False,
    first: ClusterSnapshot | None = TWO_PODS,
    gateway: ScriptedGateway | None = None,
    fail_with: BaseException | None = None,
    connecting: bool = False,
    refuse_evictions: bool = False,
    clock: Callable[[], float] = lambda: NOW,
    profile: str | None = None,
) -> Rig:
    """The cockpit over a scripted cluster and gateway, built through `make_cockpit`."""
    settings = CockpitSettings(
        namespace=NAMESPACE,
        read_only=read_only,
        report_dir=(tmp_path or Path(".")) / "reports",
        profile=profile,
    )
    scripted_gateway = gateway or ScriptedGateway()
    made = Rig(app=None, gateway=scripted_gateway)  # type: ignore[arg-type]

    def cluster(
        on_snapshot: Callable[[ClusterSnapshot], None], on_event: Callable[[ClusterEvent], None]
    ) -> ScriptedCluster:
        scripted = ScriptedCluster(on_snapshot, on_event, first, refuse_evictions)
        made.clusters.append(scripted)
        return scripted

    async def connect(
        settings: CockpitSettings, sink: SessionSink, progress: Callable[[str], None]
    ) -> Session:
        if fail_with is not None:
            raise fail_with
        if connecting:
            progress("starting the sandbox (3 s): rendering the overlay, TLS, API")
            await asyncio.Event().wait()
        return Session(
            settings,
            sink,
            cluster,
            scripted_gateway,
            namespace=NAMESPACE,
            context="kube-llm-sandbox-cockpit" if sandbox else "prod-admin@cluster",
            sandbox=sandbox,
            target="the API server's service proxy",
            clock=clock,
            health_interval=3600.0 if clock() == NOW else 1.0,
            metrics_interval=3600.0 if clock() == NOW else 2.0,
        )

    made.app = make_cockpit(settings, connect, clock=clock, refresh_interval=3600.0)
    return made
