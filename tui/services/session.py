"""The cockpit's session: its services wired together, with no Textual import.

A `Session` owns the Kubernetes watcher, the gateway client, the load engine, the health prober,
the per-pod metrics poller, the samples recorder and the recovery tracker. It turns what they
report into calls on a `SessionSink` (the Textual app in the cockpit; anything else headless),
and it carries out the user's actions: kill a pod, start a burst, toggle sustained load, chat,
write a report. Tests hand it scripted ports (`ClusterPort`, `GatewayPort`) to drive the app
deterministically; the CLI hands it the real ones through `connect`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tui.core.figures import CockpitRecord
from tui.core.model import (
    ActionResult,
    BackendMetrics,
    ChatSample,
    ClusterEvent,
    ClusterSnapshot,
    Connection,
    Outcome,
    RecoveryTimeline,
    ReplicaPoint,
)
from tui.core.settings import CockpitSettings
from tui.gateway.port import GatewayPort
from tui.services.chaos import RecoveryTracker
from tui.services.explain import explain
from tui.services.load import LoadEngine, LoadStatus
from tui.services.probes import HealthProber, PodMetricsPoller
from tui.services.recorder import Recorder

MIN_BURST_USERS = 1
MAX_BURST_USERS = 64
CHAT_HISTORY = 10
"""Messages of the conversation sent with each chat (the newest ones)."""


class ClusterPort(Protocol):
    """What the session needs of the Kubernetes adapter (`tui.cluster.watcher.ClusterWatcher`)."""

    async def run(self) -> None:
        """Watch until cancelled, reporting through the callbacks given at construction."""

    async def evict(self, pod: str) -> ActionResult:
        """Evict a pod through the Eviction API."""

    async def force_delete(self, pod: str) -> ActionResult:
        """Delete a pod with grace period 0."""

    async def close(self) -> None:
        """Release the client."""


class SessionSink(Protocol):
    """Where the session reports; the Textual app implements it by posting messages."""

    def snapshot(self, snapshot: ClusterSnapshot) -> None:
        """The cluster changed."""

    def cluster_event(self, event: ClusterEvent) -> None:
        """A Kubernetes event arrived."""

    def backend_metrics(self, metrics: BackendMetrics) -> None:
        """A pod's gateway counters were scraped."""

    def recovery(self, timeline: RecoveryTimeline) -> None:
        """A recovery timeline completed."""

    def note(self, text: str, severity: str = "information") -> None:
        """Something the cockpit did or noticed, for the event log (and a notice if not info)."""


ClusterFactory = Callable[
    [Callable[[ClusterSnapshot], None], Callable[[ClusterEvent], None]], ClusterPort
]


@dataclass
class KillPlan:
    """Which pod a kill key hits, and why that one."""

    pod: str | None
    reason: str


@dataclass
class Conversation:
    """The chat pane's conversation, as messages for the next request."""

    messages: list[dict[str, str]] = field(default_factory=list)

    def ask(self, prompt: str) -> list[dict[str, str]]:
        """Add the user's prompt; the messages to send (the newest CHAT_HISTORY)."""
        self.messages.append({"role": "user", "content": prompt})
        return self.messages[-CHAT_HISTORY:]

    def answered(self, reply: str) -> None:
        """Add the assistant's reply (a stopped or failed reply is dropped with its prompt)."""
        self.messages.append({"role": "assistant", "content": reply})

    def forget_last(self) -> None:
        """Drop the last prompt, which got no whole reply."""
        if self.messages and self.messages[-1]["role"] == "user":
            self.messages.pop()


class Session:
    """The cockpit's services, wired together."""

    def __init__(
        self,
        settings: CockpitSettings,
        sink: SessionSink,
        cluster_factory: ClusterFactory,
        gateway: GatewayPort,
        *,
        namespace: str = "",
        context: str = "",
        sandbox: bool = False,
        target: str = "",
        clock: Callable[[], float] = time.time,
        health_interval: float = 1.0,
        metrics_interval: float = 2.0,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.context = context
        self.sandbox = sandbox
        self.target = target
        """How chats reach the backend, in words ("service proxy", or the --backend-url)."""
        self.clock = clock
        self.started_at = clock()
        self.snapshot = ClusterSnapshot(
            namespace=namespace or settings.namespace or "", connection=Connection.CONNECTING
        )
        self.recorder = Recorder(clock=clock)
        self.tracker = RecoveryTracker()
        self.replicas: list[ReplicaPoint] = []
        self.actions: list[tuple[float, str]] = []
        self.metrics: dict[str, BackendMetrics] = {}
        self.burst_users = settings.burst_users
        self.conversation = Conversation()
        self.gateway = gateway
        self.cluster = cluster_factory(self._on_snapshot, self._on_event)
        # The services are typed on the real gateway; a scripted one in tests has its shape.
        self.load = LoadEngine(gateway, self._on_sample, max_tokens=settings.max_tokens)
        self.prober = HealthProber(gateway, self.recorder.add_health, interval=health_interval)
        self.poller = PodMetricsPoller(
            gateway,
            self._live_pods,
            self._on_metrics,
            interval=metrics_interval,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._load_tasks: set[asyncio.Task[object]] = set()

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every background service until cancelled."""
        self._tasks = [
            asyncio.create_task(self.cluster.run(), name="cluster"),
            asyncio.create_task(self.prober.run(), name="health"),
            asyncio.create_task(self.poller.run(), name="pod-metrics"),
            asyncio.create_task(self._tick(), name="tick"),
        ]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self._cancel_background()

    async def _cancel_background(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop the load, cancel the background work and close the clients (T5: load stops)."""
        await self.stop_load()
        await self._cancel_background()
        await self.cluster.close()
        await self.gateway.aclose()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.tick()

    def tick(self, now: float | None = None) -> None:
        """Close the recovery timelines that are due (run every second)."""
        for timeline in self.tracker.tick(self.clock() if now is None else now):
            self.sink.recovery(timeline)

    # -- what the services report ---------------------------------------------------------

    def _on_snapshot(self, snapshot: ClusterSnapshot) -> None:
        self.snapshot = snapshot
        hpa = snapshot.hpa
        if hpa is not None:
            ready = len(snapshot.serving_pods)
            point = ReplicaPoint(
                snapshot.at or self.clock(),
                hpa.current_replicas,
                hpa.desired_replicas,
                ready,
                pods=len(snapshot.pods),
            )
            last = self.replicas[-1] if self.replicas else None
            if last is None or (last.current, last.desired, last.ready, last.pods) != (
                point.current,
                point.desired,
                point.ready,
                point.pods,
            ):
                self.replicas.append(point)
        for timeline in self.tracker.observe(snapshot):
            self.sink.recovery(timeline)
        self.sink.snapshot(snapshot)

    def _on_event(self, event: ClusterEvent) -> None:
        self.sink.cluster_event(event)

    def _on_sample(self, sample: ChatSample) -> None:
        self.recorder.add_chat(sample)
        for timeline in self.tracker.observe_chat(sample):
            self.sink.recovery(timeline)

    def _on_metrics(self, metrics: BackendMetrics) -> None:
        self.metrics[metrics.pod] = metrics
        self.sink.backend_metrics(metrics)

    def _live_pods(self) -> list[str]:
        return [p.name for p in self.snapshot.pods if not p.terminating]

    def _act(self, text: str, severity: str = "information") -> None:
        self.actions.append((self.clock(), text))
        self.sink.note(text, severity)

    # -- what the user does -----------------------------------------------------------------

    def plan_kill(self, selected: str | None) -> KillPlan:
        """The pod a kill key hits: the selected one if it is alive, else a random Ready one."""
        alive = {p.name for p in self.snapshot.pods if not p.terminating}
        if selected is not None and selected in alive:
            return KillPlan(selected, "selected")
        ready = sorted(p.name for p in self.snapshot.serving_pods)
        if not ready:
            return KillPlan(None, "no Ready pod to kill")
        return KillPlan(random.choice(ready), "a random Ready pod")

    async def kill(self, pod: str, *, force: bool) -> ActionResult:
        """Evict (the PDB decides) or force-delete (grace 0) a pod, and follow its recovery."""
        action = "delete" if force else "evict"
        at = self.clock()
        self.tracker.requested(pod, action, at, [p.name for p in self.snapshot.pods])
        verb = "force-deleting (grace 0)" if force else "evicting"
        self._act(f"{verb} {pod}")
        result = await (self.cluster.force_delete(pod) if force else self.cluster.evict(pod))
        if result.ok:
            self._act(f"{'force-deleted' if force else 'evicted'} {pod}")
        else:
            self.tracker.refused(pod, action, result.message, result.at or self.clock())
            what = "the PodDisruptionBudget refused" if result.refused_by_pdb else "failed:"
            self._act(f"{action} {pod}: {what} {result.message}", "warning")
        return result

    def change_burst(self, step: int) -> int:
        """Grow or shrink the burst size within its bounds."""
        self.burst_users = max(MIN_BURST_USERS, min(MAX_BURST_USERS, self.burst_users + step))
        return self.burst_users

    def burst(self) -> bool:
        """Start a burst of `burst_users` users x `chats_per_user` chats; False if one runs."""
        if self.load.status.burst_running:
            self._act("a burst is still running: wait for it to end", "warning")
            return False
        users, chats = self.burst_users, self.settings.chats_per_user
        self._act(f"load burst: {users} users x {chats} chats")
        self._background(self._burst(users, chats))
        return True

    async def _burst(self, users: int, chats: int) -> None:
        samples = await self.load.burst(users, chats)
        ok = sum(1 for s in samples if s.outcome is Outcome.OK)
        self._act(f"burst done: {ok}/{len(samples)} chats whole")

    def toggle_sustained(self) -> bool:
        """Start or stop sustained load; whether it runs now."""
        if self.load.status.sustained_users:
            self._background(self.load.stop_sustained())
            self._act("sustained load stopped")
            return False
        self.load.start_sustained(self.settings.sustained_users)
        self._act(f"sustained load: {self.settings.sustained_users} users chatting back to back")
        return True

    def _background(self, work: Coroutine[object, object, object]) -> None:
        task: asyncio.Task[object] = asyncio.create_task(work)
        self._load_tasks.add(task)
        task.add_done_callback(self._load_task_done)

    def _load_task_done(self, task: asyncio.Task[object]) -> None:
        self._load_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._act(f"load failed: {task.exception()}", "error")

    async def stop_load(self) -> None:
        """Stop every burst and sustained user (on quit: T5)."""
        await self.load.stop()
        for task in list(self._load_tasks):
            task.cancel()
        await asyncio.gather(*self._load_tasks, return_exceptions=True)

    @property
    def load_status(self) -> LoadStatus:
        """What the load engine is doing."""
        return self.load.status

    async def chat(
        self, prompt: str, on_text: Callable[[str], None], stop: asyncio.Event | None = None
    ) -> ChatSample:
        """One chat from the chat pane, with the conversation so far."""
        messages = self.conversation.ask(prompt)
        reply: list[str] = []

        def collect(text: str) -> None:
            reply.append(text)
            on_text(text)

        try:
            sample = await self.gateway.chat(
                messages,
                max_tokens=self.settings.max_tokens * 4,
                origin="chat",
                on_text=collect,
                stop=stop,
            )
        except asyncio.CancelledError:
            self.conversation.forget_last()
            raise
        if sample.error_kind is None:
            self.conversation.answered("".join(reply))
        else:
            self.conversation.forget_last()
        self._on_sample(sample)
        return sample

    def hpa_line(self) -> str:
        """The HPA explainer's plain-words line for the current snapshot."""
        ready = len(self.snapshot.serving_pods)
        return explain(self.snapshot.hpa, self.clock(), ready_pods=ready)

    def record(self) -> CockpitRecord:
        """What the cockpit has seen so far."""
        return CockpitRecord(
            started_at=self.started_at,
            ended_at=self.clock(),
            context=self.context,
            namespace=self.snapshot.namespace,
            backend=self.target,
            chats=tuple(self.recorder.chats()),
            healths=tuple(self.recorder.healths()),
            recoveries=tuple(self.tracker.completed) + tuple(self.tracker.active),
            replicas=tuple(self.replicas),
            events=tuple(self.actions),
            hpa=self.snapshot.hpa,
            sandbox=self.sandbox,
        )

    async def write_report(self, write: Callable[[CockpitRecord, Path], Path]) -> Path:
        """Write the report folder of what the cockpit has seen so far with `write` (the
        report's `write_report_folder`: the report sits above the services); its path.

        The record is taken here, on the event loop; rendering and writing (a third of a
        second for a long session) happen in a thread, so the screen keeps moving.
        """
        record = self.record()
        path = await asyncio.to_thread(write, record, self.settings.report_dir)
        self._act(f"report written: {path}")
        return path
