"""What followed each pod kill, moment by moment: the recovery timeline.

The cockpit calls `RecoveryTracker.requested` just before it evicts or force-deletes a pod, then
feeds it every `ClusterSnapshot` and every `ChatSample`; the tracker returns each timeline as it
completes. It does no I/O and reads no clock: every moment comes from the inputs, so the same
tracker serves the cockpit, headless scenarios and tests.

How each moment is derived (the cockpit's Role cannot read Endpoints or EndpointSlices):

- terminating: the first snapshot in which the pod carries a `deletionTimestamp`. That field is
  the deadline of the grace period (deletion + grace), not the moment of deletion, so the moment
  the tracker saw it is used instead.
- left endpoints: the endpoints controller lists only pods whose Ready condition is True and that
  are not terminating, so the pod left the Service's endpoints at the first of: its Ready
  condition turning False, its deletionTimestamp appearing, or the pod vanishing from the list.
- gone: the first snapshot in which the pod is missing, unless that snapshot may simply not
  know the pods yet (still connecting, or no pods at all while a watch is down). The adapter's
  snapshot state is the worst of its watches, so a forbidden Events watch must not hide a pod
  that is gone.
- the replacement: the first pod of the Deployment, in creation order, that was not there when
  the kill was requested and that no earlier kill claimed. (A pod the HPA adds at the same moment
  is indistinguishable from a replacement; the earliest new pod is taken.)
- created, started, Ready: the pod's `creationTimestamp`, `status.startTime` and the Ready
  condition's `lastTransitionTime`. The API server writes them in whole seconds, so each is
  kept within the interval in which the tracker saw the change happen (never before the kill,
  never before the previous moment, never after the snapshot that showed it) and within its
  second; the latest moment that fits is taken. A chat the replacement already served bounds
  its start and Ready too: a Service routes only to Ready endpoints, so the pod was Ready by
  that chat's first token, however late the snapshot that shows it.
- first chat: the first successful chat whose `X-Served-By` names the replacement; its moment is
  when its first token arrived.
- what users felt: the chats that ended from the kill until the timeline closed, by outcome.
- closed: once the pod is gone and the replacement served its first chat (or stayed Ready for
  `first_chat_wait` seconds without one); incomplete once the pod is gone and its replacement
  was deleted before it was Ready (the ReplicaSet deletes unready pods first when the HPA
  scales down), or when `budget` seconds passed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from tui.core.format import clock_time
from tui.core.model import (
    ChatSample,
    ClusterSnapshot,
    Connection,
    Outcome,
    PodView,
    RecoveryTimeline,
)

_ACTION_WORDS = {"evict": "evicted", "delete": "force-deleted"}
_REFUSED_WORDS = {"evict": "eviction", "delete": "force delete"}


@dataclass
class _Kill:
    """One kill in progress: its timeline so far and what the tracker needs to go on."""

    timeline: RecoveryTimeline
    before: frozenset[str]
    """The Deployment's pods when the kill was requested: none of them is the replacement."""
    last_seen_at: float
    """When the tracker last saw the replacement (or the kill's request, before one exists)."""


class RecoveryTracker:
    """Follows pod kills to their replacement's first chat; see the module docstring for how.

    `first_chat_wait` is how long a Ready replacement may wait for a chat before its timeline
    completes without one; `budget` is how long a timeline may take in all before it is closed as
    incomplete (no replacement Ready in time).
    """

    def __init__(self, first_chat_wait: float = 15.0, budget: float = 300.0) -> None:
        if first_chat_wait < 0 or budget <= 0:
            raise ValueError("first_chat_wait must be >= 0 and budget > 0 seconds")
        self.first_chat_wait = first_chat_wait
        self.budget = budget
        self._active: list[_Kill] = []
        self._completed: list[RecoveryTimeline] = []
        self._first_served: dict[str, float] = {}
        """When each pod first served a chat since the oldest active kill (chats may arrive
        before the snapshot that reveals the replacement)."""

    @property
    def active(self) -> tuple[RecoveryTimeline, ...]:
        """Timelines still in progress, oldest kill first."""
        return tuple(kill.timeline for kill in self._active)

    @property
    def completed(self) -> tuple[RecoveryTimeline, ...]:
        """Finished timelines (complete, refused, or closed past the budget), in finishing order."""
        return tuple(self._completed)

    def requested(
        self, pod: str, action: str, at: float, pods_now: Iterable[str]
    ) -> RecoveryTimeline:
        """Start a timeline: `action` (`evict` or `delete`) of `pod` at `at`, with the
        Deployment's pods at that moment (`pods_now`; the replacement is none of them)."""
        if action not in _ACTION_WORDS:
            raise ValueError(f"action must be 'evict' or 'delete', not {action!r}")
        if not self._active:
            self._first_served.clear()
        timeline = RecoveryTimeline(pod=pod, action=action, requested_at=at)
        self._active.append(_Kill(timeline, frozenset(pods_now) | {pod}, at))
        return timeline

    def refused(self, pod: str, action: str, reason: str, at: float) -> RecoveryTimeline:
        """Record a kill that did not happen (a PDB refusal, a pod already gone) as complete.

        An active timeline for the same pod and action (from `requested`) is replaced by it.
        """
        requested_at = at
        for kill in list(self._active):
            if kill.timeline.pod == pod and kill.timeline.action == action:
                requested_at = kill.timeline.requested_at
                self._active.remove(kill)
        timeline = RecoveryTimeline(
            pod=pod,
            action=action,
            requested_at=requested_at,
            refused=reason,
            complete=True,
            closed_at=max(at, requested_at),
        )
        self._completed.append(timeline)
        return timeline

    def observe(self, snapshot: ClusterSnapshot) -> list[RecoveryTimeline]:
        """Take in a snapshot (its `at` is when it was taken); the timelines completed just now."""
        seen_at = snapshot.at
        claimed = {k.timeline.replacement for k in self._active if k.timeline.replacement}
        # Oldest first, to the oldest kill still without one: overlapping kills each get their
        # own replacement in creation order.
        newcomers = sorted(
            (p for p in snapshot.pods if p.name not in claimed and not p.terminating),
            key=lambda p: (p.created_at is None, p.created_at or 0.0, p.name),
        )
        for kill in self._active:
            kill.timeline = self._killed_pod(kill.timeline, snapshot, seen_at)
            if kill.timeline.replacement is None:
                found = next((p for p in newcomers if p.name not in kill.before), None)
                if found is not None:
                    newcomers.remove(found)
                    kill.timeline = replace(
                        kill.timeline,
                        replacement=found.name,
                        replacement_created_at=_moment(
                            found.created_at, kill.timeline.requested_at, seen_at
                        ),
                    )
            if kill.timeline.replacement is not None:
                replacement = snapshot.pod(kill.timeline.replacement)
                if replacement is not None:
                    self._replacement(kill, replacement, seen_at)
                waiting = kill.timeline.replacement_ready_at is None
                if (
                    waiting
                    and kill.timeline.replacement_removed_at is None
                    and (
                        (replacement is None and _knows_pods(snapshot))
                        or (replacement is not None and replacement.terminating)
                    )
                ):
                    # The ReplicaSet deletes its unready pods first when it scales down: the
                    # kill needs no replacement any more.
                    kill.timeline = replace(
                        kill.timeline, replacement_removed_at=max(kill.last_seen_at, seen_at)
                    )
        return self._expire(seen_at)

    def observe_chat(self, sample: ChatSample) -> list[RecoveryTimeline]:
        """Take in a finished chat; the timelines completed just now (by their first chat)."""
        if not self._active:
            return []
        if sample.outcome is Outcome.OK and sample.pod:
            served_at = sample.started_at + (sample.ttft if sample.ttft is not None else 0.0)
            self._first_served.setdefault(sample.pod, served_at)
        for kill in self._active:
            timeline = kill.timeline
            if sample.ended_at < timeline.requested_at:
                continue
            kill.timeline = replace(
                timeline,
                failed_requests=timeline.failed_requests + (sample.outcome is Outcome.ERROR),
                shed_requests=timeline.shed_requests + (sample.outcome is Outcome.SHED),
                ok_requests=timeline.ok_requests + (sample.outcome is Outcome.OK),
            )
            self._first_chat(kill)
        return self._finish(
            lambda kill: _done(kill.timeline, None, 0.0), complete=True, at=sample.ended_at
        )

    def tick(self, now: float) -> list[RecoveryTimeline]:
        """Close timelines whose replacement waited `first_chat_wait` for a chat, or that ran
        past `budget` (those stay incomplete); the timelines completed just now."""
        return self._expire(now)

    # -- internals --------------------------------------------------------------------------

    def _killed_pod(
        self, timeline: RecoveryTimeline, snapshot: ClusterSnapshot, seen_at: float
    ) -> RecoveryTimeline:
        """Update the killed pod's moments from one snapshot."""
        pod = snapshot.pod(timeline.pod)
        moment = max(timeline.requested_at, seen_at)
        if pod is None:
            if not _knows_pods(snapshot) or timeline.gone_at is not None:
                return timeline
            return replace(
                timeline,
                terminating_at=timeline.terminating_at or moment,
                left_endpoints_at=timeline.left_endpoints_at or moment,
                gone_at=moment,
            )
        if pod.terminating and timeline.terminating_at is None:
            timeline = replace(timeline, terminating_at=moment)
        if (pod.terminating or not pod.ready) and timeline.left_endpoints_at is None:
            timeline = replace(timeline, left_endpoints_at=moment)
        return timeline

    def _replacement(self, kill: _Kill, pod: PodView, seen_at: float) -> None:
        """Update the replacement's moments from one snapshot."""
        timeline = kill.timeline
        # A change first seen now happened after the previous sighting (or the kill).
        earliest = max(kill.last_seen_at, timeline.requested_at)
        created = timeline.replacement_created_at or earliest
        # ... and before this sighting, or before the first chat the pod served if that came
        # first (the snapshot that shows it Ready can arrive after chats it served ended).
        served_at = self._first_served.get(pod.name)
        latest = seen_at if served_at is None else min(seen_at, served_at)
        if pod.started_at is not None and timeline.replacement_started_at is None:
            floor = max(earliest, created)
            timeline = replace(
                timeline, replacement_started_at=_moment(pod.started_at, floor, latest)
            )
        if pod.serving and timeline.replacement_ready_at is None:
            floor = max(earliest, timeline.replacement_started_at or created)
            timeline = replace(timeline, replacement_ready_at=_moment(pod.ready_at, floor, latest))
        kill.timeline = timeline
        kill.last_seen_at = max(kill.last_seen_at, seen_at)
        self._first_chat(kill)

    def _first_chat(self, kill: _Kill) -> None:
        """Set the first chat from the replacement's first served chat, once it is Ready."""
        timeline = kill.timeline
        if timeline.replacement is None or timeline.first_chat_at is not None:
            return
        if timeline.replacement_ready_at is None:
            return
        served_at = self._first_served.get(timeline.replacement)
        if served_at is None:
            return
        # A chat can be reported before the snapshot that shows its pod Ready.
        first = max(served_at, timeline.replacement_ready_at)
        kill.timeline = replace(timeline, first_chat_at=first)

    def _expire(self, now: float) -> list[RecoveryTimeline]:
        """Close what waited long enough for a first chat, or ran past the budget."""
        done = self._finish(
            lambda kill: _done(kill.timeline, now, self.first_chat_wait), complete=True, at=now
        )
        done += self._finish(
            lambda kill: (
                kill.timeline.gone_at is not None
                and kill.timeline.replacement_removed_at is not None
            ),
            complete=False,
            at=now,
        )
        return done + self._finish(
            lambda kill: now - kill.timeline.requested_at >= self.budget, complete=False, at=now
        )

    def _finish(
        self, finished: Callable[[_Kill], bool], *, complete: bool, at: float
    ) -> list[RecoveryTimeline]:
        """Move the kills `finished` picks to the completed list, closed at `at`."""
        done: list[RecoveryTimeline] = []
        for kill in list(self._active):
            if finished(kill):
                self._active.remove(kill)
                closed_at = max(at, kill.timeline.requested_at)
                timeline = replace(kill.timeline, complete=complete, closed_at=closed_at)
                self._completed.append(timeline)
                done.append(timeline)
        return done


def _knows_pods(snapshot: ClusterSnapshot) -> bool:
    """A pod missing from this snapshot is really gone (it is not still connecting, and it does
    not hold an empty list while a watch is down)."""
    if snapshot.connection is Connection.CONNECTING:
        return False
    return bool(snapshot.pods) or snapshot.connection is Connection.LIVE


def _done(timeline: RecoveryTimeline, now: float | None, first_chat_wait: float) -> bool:
    """Every moment is in: the old pod is gone and the replacement served a chat, or stayed
    Ready for `first_chat_wait` seconds (at `now`) without one."""
    if timeline.gone_at is None:
        return False
    if timeline.first_chat_at is not None:
        return True
    ready = timeline.replacement_ready_at
    return ready is not None and now is not None and now - ready >= first_chat_wait


def _moment(api_time: float | None, floor: float, seen_at: float) -> float:
    """The moment of a change first seen at `seen_at` that cannot precede `floor`.

    An API timestamp in whole seconds means "within that second": the change happened before
    its end. The latest moment that fits both that and the sighting is taken, since a live watch
    sees a change within milliseconds (a timestamp with a fraction is taken as it is).
    """
    latest = max(floor, seen_at)
    if api_time is None:
        return latest
    if api_time == int(api_time):
        api_time += 1.0
    return min(max(api_time, floor), latest)


def _offset(moment: float | None, start: float) -> str | None:
    return None if moment is None else f"+{moment - start:.1f} s"


def describe(timeline: RecoveryTimeline) -> list[str]:
    """The timeline in plain words, one line per part; pod names are left as given (untrusted:
    the UI and the report sanitise them)."""
    start = timeline.requested_at
    clock = clock_time(start)
    if timeline.refused is not None:
        kind = _REFUSED_WORDS.get(timeline.action, timeline.action)
        return [f"{timeline.pod} {kind} refused at {clock}: {timeline.refused}"]
    word = _ACTION_WORDS.get(timeline.action, timeline.action)
    parts = [f"{timeline.pod} {word} at {clock}"]
    for label, moment in (
        ("terminating", timeline.terminating_at),
        ("left endpoints", timeline.left_endpoints_at),
        ("gone", timeline.gone_at),
    ):
        if (offset := _offset(moment, start)) is not None:
            parts.append(f"{label} {offset}")
    if timeline.replacement is not None:
        steps = [
            f"{label} {offset}"
            for label, moment in (
                ("created", timeline.replacement_created_at),
                ("started", timeline.replacement_started_at),
                ("Ready", timeline.replacement_ready_at),
                ("removed before Ready", timeline.replacement_removed_at),
                ("first chat", timeline.first_chat_at),
            )
            if (offset := _offset(moment, start)) is not None
        ]
        parts.append(f"replacement {timeline.replacement} " + ", ".join(steps))
    else:
        parts.append("no replacement seen")
    parts.append(
        f"users: {timeline.failed_requests} failed, {timeline.shed_requests} shed, "
        f"{timeline.ok_requests} ok"
    )
    lines = ["; ".join(parts)]
    if not timeline.complete:
        missing = [
            what
            for what, moment in (
                ("the pod to go", timeline.gone_at),
                ("a Ready replacement", timeline.replacement_ready_at),
                ("the replacement's first chat", timeline.first_chat_at),
            )
            if moment is None
        ]
        if timeline.replacement_removed_at is not None:
            lines.append(
                "the replacement was deleted before it was Ready (the Deployment scaled down, "
                "or someone deleted it): nothing left to recover"
            )
        elif timeline.closed_at is None:
            lines.append("still open: waiting for " + ", ".join(missing or ["the next snapshot"]))
        else:
            lines.append(
                f"closed unfinished after {timeline.closed_at - start:.0f} s, without "
                + ", ".join(missing)
            )
    elif timeline.replacement_ready_at is not None and timeline.first_chat_at is None:
        lines.append("the replacement served no chat while the timeline was open")
    return lines
