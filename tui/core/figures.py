"""What the cockpit saw (`CockpitRecord`) and every figure a report shows, computed from it.

One computation for every report format: the Markdown report renders `Figures`, and a JSON
report can store `dataclasses.asdict(record)` beside `dataclasses.asdict(figures(record))` so a
reader (or a test) can recompute each figure from the samples it came from. Percentiles come
from `tui.core.stats`, like the cockpit's latency panel.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tui.core.cost import CostFigures, cost_figures
from tui.core.model import (
    ChatSample,
    HealthSample,
    HpaView,
    Outcome,
    RecoveryTimeline,
    ReplicaPoint,
)
from tui.core.stats import percentile, summarize

ROLLOUT_NOTE = "rollout restart ("
"""How a scenario's note of a rollout restart begins (the chart marks these notes)."""
SCALE_NOTE = "scaled deployment to "
"""How a scenario's note of a scale step begins (the chart marks these notes)."""


def deployment_actions(events: Iterable[tuple[float, str]]) -> list[tuple[float, str]]:
    """The rollout restarts and scales among a record's notes, as (when, short label)."""
    marks = []
    for at, text in events:
        if text.startswith(ROLLOUT_NOTE):
            marks.append((at, "rollout"))
        elif text.startswith(SCALE_NOTE):
            marks.append((at, "scale " + text.removeprefix(SCALE_NOTE).split()[0]))
    return marks


@dataclass(frozen=True)
class LoadPhase:
    """One stretch of generated load: what it was, how many users, and when it ran."""

    kind: str
    """`burst`, `sustained` or `rate`."""
    users: int
    """Simulated users at once (for rate load: the most chats open at once allowed)."""
    started_at: float
    ended_at: float | None = None
    """None while it runs (or when the run ended before it did)."""
    label: str = ""


@dataclass(frozen=True)
class CockpitRecord:
    """What the cockpit has seen from `started_at` to `ended_at` (epoch seconds)."""

    started_at: float
    ended_at: float
    context: str
    """The kubeconfig context."""
    namespace: str
    backend: str
    """How the cockpit reaches the Service: "service proxy via the API server", a URL..."""
    chats: tuple[ChatSample, ...] = ()
    healths: tuple[HealthSample, ...] = ()
    recoveries: tuple[RecoveryTimeline, ...] = ()
    replicas: tuple[ReplicaPoint, ...] = ()
    events: tuple[tuple[float, str], ...] = ()
    """The cockpit's actions and the cluster's events, as (moment, text) lines."""
    hpa: HpaView | None = None
    """The last HPA seen (its bounds and targets), if there is one."""
    model: str | None = None
    """The model the backend serves, when the cockpit knows it."""
    sandbox: bool | None = None
    """The cluster is `kube-llm sandbox` (None: judge by the context's name)."""
    phases: tuple[LoadPhase, ...] = ()
    """The load phases of a headless run or scenario (the cockpit's keys leave it empty)."""

    @property
    def on_sandbox(self) -> bool:
        """The run was against the local sandbox rather than a real cluster."""
        if self.sandbox is not None:
            return self.sandbox
        return self.context.startswith("kube-llm-sandbox")


@dataclass(frozen=True)
class Percentiles:
    """p50, p95 and p99 of some seconds, and how many values they came from."""

    p50: float | None
    p95: float | None
    p99: float | None
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        """The percentiles of `values` (None each when there are none)."""
        return cls(
            percentile(values, 50), percentile(values, 95), percentile(values, 99), len(values)
        )


@dataclass(frozen=True)
class HealthFigures:
    """`/healthz` through the Service: latency over the checks answered 200."""

    checks: int
    failures: int
    mean: float | None
    p50: float | None
    p99: float | None
    failures_by_kind: tuple[tuple[str, int], ...]
    """`connect`, `http_503`..., most frequent first."""


@dataclass(frozen=True)
class ChatFigures:
    """The chats, as users felt them; latency over the chats that succeeded."""

    requests: int
    ok: int
    shed: int
    failed: int
    failures_by_kind: tuple[tuple[str, int], ...]
    ttft: Percentiles
    inter_token: Percentiles
    """Every gap between consecutive content chunks of every successful chat."""
    end_to_end: Percentiles
    tokens_per_second: float | None
    """Output tokens (or chunks) of all chats over the span from the first start to the last end."""
    tokens_per_second_per_chat_p50: float | None
    tokens_are_chunks: bool
    """Some chats had no `usage`: their tokens are counted content chunks."""
    served_by: tuple[tuple[str, int], ...]
    ttft_p50_by_pod: tuple[tuple[str, float], ...]
    peak_concurrency: int
    """The most chats open at one moment."""
    cancelled: int = 0
    """Chats the client closed mid-reply (the load stopped, Escape): neither ok nor failed."""
    unstreamed: int = 0
    """Successful chats asked with `stream: false`: in end to end and tokens, but they have no
    TTFT and no inter-token gaps."""


@dataclass(frozen=True)
class ScalingFigures:
    """The HPA's bounds and each change of the replica counts."""

    min_replicas: int | None
    max_replicas: int | None
    changes: tuple[ReplicaPoint, ...]
    """The first point and every point whose counts differ from the one before."""
    peak_replicas: int | None


@dataclass(frozen=True)
class PhaseFigures:
    """One load phase as users felt it, and how the HPA reacted to its start and its end.

    Reaction moments are seconds after the phase started (`*_after_start`) or ended
    (`*_after_stop`); None when it did not happen while the run was recorded."""

    kind: str
    label: str
    users: int
    started_at: float
    ended_at: float | None
    chats: int
    ok: int
    failed: int
    shed: int
    replicas_at_start: int | None
    desired_up_after_start: float | None
    """Until the HPA first wanted more replicas than it had when the load started."""
    scaled_up_to: int | None
    """The most replicas the HPA wanted from the load's start until its end (or the record's)."""
    ready_after_start: float | None
    """Until as many pods were Ready as the HPA first wanted after scaling up."""
    desired_down_after_stop: float | None
    """Until the HPA first wanted fewer replicas than it had when the load stopped."""
    back_to_min_after_stop: float | None
    """Until the current replicas were back at the HPA's minimum."""
    cancelled: int = 0
    """Chats closed mid-reply when the load stopped."""


@dataclass(frozen=True)
class Figures:
    """Every number of a report, computed from one `CockpitRecord`."""

    health: HealthFigures
    chats: ChatFigures
    scaling: ScalingFigures
    worst_recovery_seconds: float | None
    """The longest time from a kill to its replacement being Ready."""
    phases: tuple[PhaseFigures, ...] = ()
    most_users_without_failure: int | None = None
    """The most users of a load phase in which no chat failed (429s are not failures) and
    at least one was answered; None without load phases."""
    cost: CostFigures | None = None
    """Replica-seconds used, against a fixed Deployment at the maximum (`tui.core.cost`)."""


def peak_concurrency(chats: Iterable[ChatSample]) -> int:
    """The most chats that were open at one moment (a chat is open from its start to its end)."""
    edges: list[tuple[float, int]] = []
    for chat in chats:
        edges.append((chat.started_at, 1))
        edges.append((chat.ended_at, -1))
    # At equal moments, ends before starts: back-to-back chats are not concurrent.
    edges.sort()
    peak = open_now = 0
    for _, step in edges:
        open_now += step
        peak = max(peak, open_now)
    return peak


def health_figures(healths: Sequence[HealthSample]) -> HealthFigures:
    """The health checks' figures."""
    answered = [h.latency for h in healths if h.ok and h.latency is not None]
    kinds = Counter(
        h.error or (f"http_{h.status}" if h.status is not None else "error")
        for h in healths
        if not h.ok
    )
    return HealthFigures(
        checks=len(healths),
        failures=sum(kinds.values()),
        mean=sum(answered) / len(answered) if answered else None,
        p50=percentile(answered, 50),
        p99=percentile(answered, 99),
        failures_by_kind=tuple(kinds.most_common()),
    )


def chat_figures(record: CockpitRecord) -> ChatFigures:
    """The chats' figures."""
    chats = record.chats
    ok = [c for c in chats if c.outcome is Outcome.OK]
    errors = Counter(c.error_kind or "error" for c in chats if c.outcome is Outcome.ERROR)
    # One window over every sample, so summarize's throughput and per-pod figures cover it all.
    start = min([record.started_at, *(c.started_at for c in chats)])
    end = max([record.ended_at, *(c.ended_at for c in chats)])
    summary = summarize(chats, (), window_seconds=end - start, now=end)
    return ChatFigures(
        requests=len(chats),
        ok=len(ok),
        shed=sum(1 for c in chats if c.outcome is Outcome.SHED),
        failed=sum(errors.values()),
        failures_by_kind=tuple(errors.most_common()),
        ttft=Percentiles.of([c.ttft for c in ok if c.ttft is not None]),
        inter_token=Percentiles.of([gap for c in ok for gap in c.gaps]),
        end_to_end=Percentiles.of([c.e2e for c in ok if c.e2e is not None]),
        tokens_per_second=summary.tokens_per_second,
        tokens_per_second_per_chat_p50=percentile(
            [r for c in ok if (r := c.tokens_per_second) is not None], 50
        ),
        tokens_are_chunks=summary.tokens_are_chunks,
        served_by=summary.served_by,
        ttft_p50_by_pod=summary.ttft_p50_by_pod,
        peak_concurrency=peak_concurrency(chats),
        cancelled=sum(1 for c in chats if c.outcome is Outcome.CANCELLED),
        unstreamed=sum(1 for c in ok if not c.streamed),
    )


def scaling_figures(record: CockpitRecord) -> ScalingFigures:
    """The scaling figures: bounds, changes and the peak."""
    changes: list[ReplicaPoint] = []
    for point in sorted(record.replicas, key=lambda p: p.at):
        last = changes[-1] if changes else None
        if last is None or (last.current, last.desired, last.ready) != (
            point.current,
            point.desired,
            point.ready,
        ):
            changes.append(point)
    hpa = record.hpa
    return ScalingFigures(
        min_replicas=hpa.min_replicas if hpa else None,
        max_replicas=hpa.max_replicas if hpa else None,
        changes=tuple(changes),
        peak_replicas=max((p.current for p in changes), default=None),
    )


def _first_after(
    points: Sequence[ReplicaPoint], since: float, until: float, test: Callable[[ReplicaPoint], bool]
) -> ReplicaPoint | None:
    return next((p for p in points if since <= p.at <= until and test(p)), None)


def _at(points: Sequence[ReplicaPoint], moment: float) -> ReplicaPoint | None:
    """The replica counts that held at `moment` (the last point at or before it, else the first)."""
    before = [p for p in points if p.at <= moment]
    if before:
        return before[-1]
    return points[0] if points else None


def phase_figures(record: CockpitRecord, phase: LoadPhase) -> PhaseFigures:
    """A load phase's chats and the HPA's reaction to it, from the record's samples."""
    end = record.ended_at if phase.ended_at is None else phase.ended_at
    # A chat belongs to the phase it started in: its users sent it.
    chats = [
        c for c in record.chats if c.origin == "load" and phase.started_at <= c.started_at <= end
    ]
    points = sorted(record.replicas, key=lambda p: p.at)
    start_point = _at(points, phase.started_at)
    base = start_point.desired if start_point else None
    up = desired_up = ready = None
    if base is not None:
        first_up = _first_after(points, phase.started_at, end, lambda p: p.desired > base)
        if first_up is not None:
            desired_up = first_up.at - phase.started_at
            wanted = first_up.desired
            got = _first_after(points, first_up.at, record.ended_at, lambda p: p.ready >= wanted)
            ready = None if got is None else got.at - phase.started_at
        up = max((p.desired for p in points if phase.started_at <= p.at <= end), default=base)
    down = back = None
    if phase.ended_at is not None:
        stop_point = _at(points, phase.ended_at)
        if stop_point is not None:
            top = stop_point.desired
            lower = _first_after(points, phase.ended_at, record.ended_at, lambda p: p.desired < top)
            down = None if lower is None else lower.at - phase.ended_at
            minimum = record.hpa.min_replicas if record.hpa else None
            if minimum is not None:
                home = _first_after(
                    points, phase.ended_at, record.ended_at, lambda p: p.current <= minimum
                )
                back = None if home is None else home.at - phase.ended_at
    return PhaseFigures(
        kind=phase.kind,
        label=phase.label,
        users=phase.users,
        started_at=phase.started_at,
        ended_at=phase.ended_at,
        chats=len(chats),
        ok=sum(1 for c in chats if c.outcome is Outcome.OK),
        failed=sum(1 for c in chats if c.outcome is Outcome.ERROR),
        shed=sum(1 for c in chats if c.outcome is Outcome.SHED),
        replicas_at_start=base,
        desired_up_after_start=desired_up,
        scaled_up_to=up,
        ready_after_start=ready,
        desired_down_after_stop=down,
        back_to_min_after_stop=back,
        cancelled=sum(1 for c in chats if c.outcome is Outcome.CANCELLED),
    )


def figures(record: CockpitRecord) -> Figures:
    """Every figure of the report on `record`."""
    recoveries = [r.recovery_seconds for r in record.recoveries]
    phases = tuple(phase_figures(record, phase) for phase in record.phases)
    clean = [p.users for p in phases if p.failed == 0 and p.ok > 0]
    chats = chat_figures(record)
    return Figures(
        health=health_figures(record.healths),
        chats=chats,
        scaling=scaling_figures(record),
        worst_recovery_seconds=max((s for s in recoveries if s is not None), default=None),
        phases=phases,
        most_users_without_failure=max(clean, default=None),
        cost=cost_figures(
            record.replicas,
            record.started_at,
            record.ended_at,
            record.hpa.max_replicas if record.hpa else None,
            chats.ok,
        ),
    )
