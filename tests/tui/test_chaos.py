"""The recovery timeline: moment by moment from snapshots and chats, then against the sandbox."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from tests.sandbox.harness import (
    NAMESPACE,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)
from tui.cluster.convert import pod_view
from tui.core.model import (
    ChatSample,
    ClusterSnapshot,
    Connection,
    Outcome,
    PodView,
    RecoveryTimeline,
)
from tui.services.chaos import RecoveryTracker, describe

A, B, C, D = (f"llm-backend-7f9c-{s}" for s in ("x2k4", "b8mq", "abcd", "zz91"))


def pod(
    name: str,
    created: float = 900.0,
    *,
    started: float | None = None,
    ready: bool = False,
    ready_at: float | None = None,
    deleting: float | None = None,
) -> PodView:
    """A pod as the adapter hands it over (API timestamps in whole seconds)."""
    return PodView(
        name=name,
        uid=f"uid-{name}",
        phase="Running" if started is not None else "Pending",
        status="Terminating" if deleting is not None else ("Running" if ready else "Init:0/2"),
        ready=ready,
        ready_containers=2 if ready else 0,
        total_containers=2,
        restarts=0,
        created_at=created,
        started_at=started if started is not None else (900.0 if ready else None),
        ready_at=ready_at if ready_at is not None else (901.0 if ready else None),
        deleting_at=deleting,
    )


def snap(at: float, *pods: PodView, connection: Connection = Connection.LIVE) -> ClusterSnapshot:
    return ClusterSnapshot(namespace="kube-llm", connection=connection, pods=pods, at=at)


def chat(
    started: float, outcome: Outcome = Outcome.OK, pod: str | None = B, e2e: float = 0.5
) -> ChatSample:
    return ChatSample(
        started_at=started,
        origin="load",
        outcome=outcome,
        status={Outcome.OK: 200, Outcome.SHED: 429, Outcome.ERROR: 503}[outcome],
        error_kind=None
        if outcome is Outcome.OK
        else ("http_503" if outcome is Outcome.ERROR else "shed"),
        pod=pod if outcome is Outcome.OK else None,
        ttft=0.1 if outcome is Outcome.OK else None,
        e2e=e2e,
        output_tokens=12,
    )


def test_eviction_timeline_moment_by_moment() -> None:
    tracker = RecoveryTracker()
    tracker.requested(A, "evict", 1000.3, [A, B])
    # Terminating: the deletionTimestamp is the end of the grace period (30 s ahead); the pod's
    # Ready condition is still True, but a terminating pod is out of the endpoints.
    assert (
        tracker.observe(
            snap(1000.4, pod(A, ready=True, deleting=1030.0), pod(B, ready=True), pod(C, 1000.0))
        )
        == []
    )
    tracker.observe(
        snap(
            1000.7,
            pod(A, ready=True, deleting=1030.0),
            pod(B, ready=True),
            pod(C, 1000.0, started=1000.0),
        )
    )
    assert tracker.observe_chat(chat(1000.2, e2e=0.8)) == []  # ended 1001.0, after the kill
    tracker.observe_chat(chat(1001.0, Outcome.SHED, e2e=1.0))
    tracker.observe_chat(chat(1002.0, Outcome.ERROR, e2e=0.5))
    tracker.observe_chat(chat(999.0, e2e=1.0))  # ended 1000.0, before the kill: not counted
    tracker.observe(
        snap(
            1006.5,
            pod(A, ready=False, deleting=1030.0),
            pod(B, ready=True),
            pod(C, 1000.0, started=1000.0, ready=True, ready_at=1006.0),
        )
    )
    # Its first chat: the first token came at 1006.9. The old pod is still draining, so the
    # timeline stays open.
    assert tracker.observe_chat(chat(1006.8, pod=C)) == []
    (active,) = tracker.active
    assert active.first_chat_at == pytest.approx(1006.9)
    done = tracker.observe(
        snap(
            1008.0, pod(B, ready=True), pod(C, 1000.0, started=1000.0, ready=True, ready_at=1006.0)
        )
    )
    assert tracker.active == ()
    assert done == list(tracker.completed)
    (timeline,) = done
    assert timeline.first_chat_at == pytest.approx(1006.9)
    assert replace(timeline, first_chat_at=None) == RecoveryTimeline(
        closed_at=1008.0,
        pod=A,
        action="evict",
        requested_at=1000.3,
        terminating_at=1000.4,
        left_endpoints_at=1000.4,
        gone_at=1008.0,
        replacement=C,
        # Whole-second timestamps mean "within that second"; each moment is the latest that
        # fits its second and the snapshots around it. creationTimestamp 1000 and first seen at
        # 1000.4: 1000.4. startTime 1000, not seen at 1000.4 but at 1000.7: 1000.7. Ready
        # since 1006 and seen at 1006.5: 1006.5.
        replacement_created_at=1000.4,
        replacement_started_at=1000.7,
        replacement_ready_at=1006.5,
        failed_requests=1,
        shed_requests=1,
        ok_requests=2,
        complete=True,
    )
    assert timeline.recovery_seconds == pytest.approx(6.2)


def test_force_delete_vanishes_at_once() -> None:
    tracker = RecoveryTracker()
    tracker.requested(A, "delete", 50.0, [A, B])
    tracker.observe(snap(50.2, pod(B, ready=True)))
    (timeline,) = tracker.active
    assert (timeline.terminating_at, timeline.left_endpoints_at, timeline.gone_at) == (
        50.2,
        50.2,
        50.2,
    )
    assert timeline.replacement is None


def test_unready_before_terminating_leaves_endpoints_first() -> None:
    tracker = RecoveryTracker()
    tracker.requested(A, "evict", 10.0, [A, B])
    tracker.observe(snap(10.5, pod(A, ready=False), pod(B, ready=True)))
    tracker.observe(snap(11.0, pod(A, ready=False, deleting=40.0), pod(B, ready=True)))
    (timeline,) = tracker.active
    assert timeline.left_endpoints_at == 10.5
    assert timeline.terminating_at == 11.0


def test_a_snapshot_that_knows_no_pods_does_not_mean_gone() -> None:
    tracker = RecoveryTracker()
    tracker.requested(A, "evict", 10.0, [A, B])
    tracker.observe(snap(10.5, connection=Connection.RETRYING))
    tracker.observe(snap(10.6, pod(B, ready=True), connection=Connection.CONNECTING))
    (timeline,) = tracker.active
    assert timeline.gone_at is None
    assert timeline.left_endpoints_at is None
    # A snapshot whose pods are known is believed even while another watch is refused.
    tracker.observe(snap(11.0, pod(B, ready=True), connection=Connection.FORBIDDEN))
    (timeline,) = tracker.active
    assert timeline.gone_at == 11.0


def test_overlapping_kills_get_replacements_in_creation_order() -> None:
    tracker = RecoveryTracker()
    E = "llm-backend-7f9c-eeee"
    tracker.requested(A, "delete", 100.0, [A, B, E])
    tracker.requested(B, "delete", 100.1, [A, B, E])
    # Listed out of order: D was created after C. E was there before the kills.
    tracker.observe(snap(101.5, pod(E, ready=True), pod(D, 101.0), pod(C, 100.0)))
    first, second = tracker.active
    assert (first.pod, first.replacement) == (A, C)
    assert (second.pod, second.replacement) == (B, D)


def test_a_later_kill_does_not_take_an_earlier_replacement() -> None:
    tracker = RecoveryTracker()
    tracker.requested(A, "delete", 100.0, [A, B])
    tracker.observe(snap(100.5, pod(B, ready=True), pod(C, 100.0)))
    tracker.requested(B, "delete", 101.0, [B, C])
    tracker.observe(snap(101.5, pod(C), pod(D, 101.0)))
    first, second = tracker.active
    assert (first.replacement, second.replacement) == (C, D)


def test_pdb_refusal_is_a_complete_timeline() -> None:
    tracker = RecoveryTracker()
    tracker.requested(B, "evict", 20.0, [A, B])
    reason = "Cannot evict pod as it would violate the pod's disruption budget."
    refused = tracker.refused(B, "evict", reason, 20.1)
    assert tracker.active == ()
    assert tracker.completed == (refused,)
    assert refused.refused == reason
    assert refused.complete
    assert refused.requested_at == 20.0
    assert refused.closed_at == 20.1
    clock = time.strftime("%H:%M:%S", time.localtime(20.0))
    assert describe(refused) == [f"{B} eviction refused at {clock}: {reason}"]


def test_ready_replacement_without_chats_completes_after_the_wait() -> None:
    tracker = RecoveryTracker(first_chat_wait=15.0)
    tracker.requested(A, "delete", 0.0, [A, B])
    tracker.observe(snap(0.1, pod(B, ready=True), pod(C, 0.0)))
    tracker.observe(
        snap(6.0, pod(B, ready=True), pod(C, 0.0, started=1.0, ready=True, ready_at=6.0))
    )
    assert tracker.tick(20.9) == []
    (timeline,) = tracker.tick(21.0)
    assert timeline.closed_at == 21.0
    assert timeline.complete
    assert timeline.first_chat_at is None
    assert describe(timeline)[-1] == "the replacement served no chat while the timeline was open"


def test_past_the_budget_the_timeline_closes_incomplete() -> None:
    tracker = RecoveryTracker(budget=300.0)
    tracker.requested(A, "evict", 0.0, [A, B])
    tracker.observe(snap(1.0, pod(B, ready=True), pod(C, 0.0)))  # the replacement never starts
    assert tracker.tick(299.9) == []
    (timeline,) = tracker.tick(300.0)
    assert not timeline.complete
    assert timeline.replacement == C
    assert timeline.closed_at == 300.0
    assert describe(timeline)[-1] == (
        "closed unfinished after 300 s, without a Ready replacement, the replacement's first chat"
    )
    # An open timeline says what it still waits for.
    tracker.requested(B, "evict", 400.0, [B, C])
    (open_timeline,) = tracker.active
    assert describe(open_timeline)[-1] == (
        "still open: waiting for the pod to go, a Ready replacement, the replacement's first chat"
    )


def test_a_replacement_removed_by_a_scale_down_closes_the_timeline() -> None:
    tracker = RecoveryTracker()
    tracker.requested(A, "delete", 0.0, [A, B, D])
    tracker.observe(snap(0.1, pod(B, ready=True), pod(D, ready=True), pod(C, 0.0)))
    # The HPA scales down at once: the ReplicaSet deletes its unready pod, the replacement.
    (done,) = tracker.observe(snap(3.0, pod(B, ready=True), pod(D, ready=True)))
    assert done.replacement == C
    assert done.replacement_removed_at == 3.0
    assert done.replacement_ready_at is None
    assert not done.complete
    assert done.closed_at == 3.0
    assert tracker.active == ()
    assert describe(done)[-1].startswith("the replacement was deleted before it was Ready")


def test_a_terminating_replacement_counts_as_removed() -> None:
    tracker = RecoveryTracker()
    tracker.requested(A, "evict", 0.0, [A, B])
    tracker.observe(snap(0.1, pod(A, ready=True, deleting=30.0), pod(B, ready=True), pod(C, 0.0)))
    tracker.observe(snap(2.0, pod(A, deleting=30.0), pod(B, ready=True), pod(C, 0.0, deleting=2.0)))
    (timeline,) = tracker.active  # the killed pod is still draining
    assert timeline.replacement_removed_at == 2.0
    (done,) = tracker.observe(snap(9.0, pod(B, ready=True)))
    assert done.gone_at == 9.0
    assert done.replacement_removed_at == 2.0
    assert not done.complete


def test_a_chat_reported_before_the_ready_snapshot_counts_from_ready() -> None:
    tracker = RecoveryTracker()
    tracker.requested(A, "delete", 0.0, [A, B])
    tracker.observe(snap(0.1, pod(B, ready=True), pod(C, 0.0)))
    tracker.observe_chat(chat(5.0, pod=C))  # first token 5.1; the snapshot showing Ready is late
    (done,) = tracker.observe(
        snap(5.5, pod(B, ready=True), pod(C, 0.0, started=1.0, ready=True, ready_at=5.0))
    )
    # Ready was seen at 5.5, but the Service routes only to Ready pods: the pod was Ready by the
    # chat's first token (5.1), and the first chat is that token.
    assert done.replacement_ready_at == pytest.approx(5.1)
    assert done.first_chat_at == pytest.approx(5.1)
    assert done.ok_requests == 1


def test_a_ready_snapshot_after_the_first_chat_ended_keeps_the_chat_first() -> None:
    """The race the sandbox test met: the snapshot that shows Ready is taken a few ms after a
    chat the replacement served ended, and its Ready timestamp is a whole second."""
    tracker = RecoveryTracker()
    tracker.requested(A, "delete", 0.0, [A, B])
    tracker.observe(snap(0.1, pod(B, ready=True), pod(C, 0.0)))
    first = chat(10.0, pod=C, e2e=0.3)  # first token at 10.1, ended at 10.3
    tracker.observe_chat(first)
    (done,) = tracker.observe(
        snap(10.31, pod(B, ready=True), pod(C, 0.0, started=1.0, ready=True, ready_at=10.0))
    )
    assert done.first_chat_at is not None
    assert done.replacement_ready_at is not None
    assert done.first_chat_at <= first.ended_at
    assert done.replacement_ready_at <= done.first_chat_at


def test_timestamps_with_a_fraction_are_taken_as_they_are() -> None:
    tracker = RecoveryTracker()
    tracker.requested(A, "delete", 100.0, [A, B])
    tracker.observe(snap(101.0, pod(B, ready=True), pod(C, 100.25, started=100.5)))
    (timeline,) = tracker.active
    assert (timeline.replacement_created_at, timeline.replacement_started_at) == (100.25, 100.5)


def test_describe_reads_like_the_event_log() -> None:
    timeline = RecoveryTimeline(
        pod=A,
        action="evict",
        requested_at=43201.0,
        terminating_at=43201.1,
        left_endpoints_at=43201.1,
        gone_at=43203.3,
        replacement=C,
        replacement_created_at=43201.3,
        replacement_started_at=43201.4,
        replacement_ready_at=43207.2,
        first_chat_at=43207.9,
        shed_requests=2,
        ok_requests=14,
        complete=True,
    )
    clock = time.strftime("%H:%M:%S", time.localtime(43201.0))
    assert describe(timeline) == [
        f"{A} evicted at {clock}; terminating +0.1 s; left endpoints +0.1 s; gone +2.3 s; "
        f"replacement {C} created +0.3 s, started +0.4 s, Ready +6.2 s, first chat +6.9 s; "
        "users: 0 failed, 2 shed, 14 ok"
    ]


def test_bad_arguments_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="'evict' or 'delete'"):
        RecoveryTracker().requested(A, "drain", 0.0, [A])
    with pytest.raises(ValueError, match="budget"):
        RecoveryTracker(budget=0)


# --- against the sandbox -----------------------------------------------------------------------

PROXY = f"/api/v1/namespaces/{NAMESPACE}/services/llm-backend:http/proxy"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
SELECTOR = "app.kubernetes.io/name=llm-backend"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(tmp_path_factory.mktemp("chaos"), engine_cmd=fake_engine_cmd())
    yield running
    if running.process.poll() is None:
        running.stop()


def snapshot_of(sandbox: RunningSandbox) -> ClusterSnapshot:
    """The pods as one list shows them, stamped when the list was asked for: the tracker takes a
    change first seen in a snapshot to have happened after the previous one was taken, which a
    stamp taken after the answer breaks (a pod that turned Ready between the server's read and
    that stamp, and served a chat, would seem to have served before it was Ready)."""
    asked_at = time.time()
    with sandbox.http() as http:
        items = http.get(PODS, params={"labelSelector": SELECTOR}).json()["items"]
    return snap(asked_at, *(pod_view(item) for item in items))


def chat_through_the_service(http: object, samples: queue.Queue[ChatSample]) -> None:
    started = time.time()
    response = http.post(  # type: ignore[attr-defined]
        f"{PROXY}/v1/chat/completions",
        json={"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}]},
    )
    e2e = time.time() - started
    outcome = {200: Outcome.OK, 429: Outcome.SHED}.get(response.status_code, Outcome.ERROR)
    samples.put(
        ChatSample(
            started_at=started,
            origin="load",
            outcome=outcome,
            status=response.status_code,
            error_kind=None if outcome is Outcome.OK else f"http_{response.status_code}",
            pod=response.headers.get("x-served-by"),
            ttft=e2e if outcome is Outcome.OK else None,
            e2e=e2e,
        )
    )


class Users:
    """Two users chatting through the Service until stopped; their samples queue up."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.samples: queue.Queue[ChatSample] = queue.Queue()
        self._stop = threading.Event()

        def user() -> None:
            with sandbox.http() as http:
                while not self._stop.is_set():
                    chat_through_the_service(http, self.samples)
                    time.sleep(0.1)

        self._threads = [threading.Thread(target=user, daemon=True) for _ in range(2)]

    def __enter__(self) -> Users:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def follow(
    tracker: RecoveryTracker, sandbox: RunningSandbox, users: Users, fed: list[ChatSample]
) -> RecoveryTimeline:
    """Feed the tracker as the cockpit would until a timeline completes; `fed` gets exactly the
    chats it was given."""
    done: list[RecoveryTimeline] = []
    deadline = time.monotonic() + 100
    while not done and time.monotonic() < deadline:
        done += tracker.observe(snapshot_of(sandbox))
        while not done and not users.samples.empty():
            sample = users.samples.get()
            fed.append(sample)
            done += tracker.observe_chat(sample)
        if not done:
            done += tracker.tick(time.time())
        time.sleep(0.1)
    assert done, f"no timeline completed: {tracker.active}\n{sandbox.diagnosis()}"
    (timeline,) = done
    return timeline


def check_recovered(timeline: RecoveryTimeline, fed: Sequence[ChatSample]) -> None:
    """Every moment is there and in order; what users felt matches the chats fed."""
    assert timeline.complete, describe(timeline)
    moments = [
        timeline.requested_at,
        timeline.replacement_created_at,
        timeline.replacement_started_at,
        timeline.replacement_ready_at,
        timeline.first_chat_at,
    ]
    assert None not in moments, describe(timeline)
    assert moments == sorted(moments), describe(timeline)  # type: ignore[type-var]
    assert timeline.terminating_at is not None
    assert timeline.left_endpoints_at is not None
    assert timeline.gone_at is not None
    assert timeline.requested_at <= timeline.left_endpoints_at <= timeline.gone_at
    assert timeline.recovery_seconds is not None
    assert timeline.recovery_seconds < 30
    # What users felt is exactly the chats that ended in the window, by outcome.
    window = [s for s in fed if timeline.requested_at <= s.ended_at]
    assert timeline.ok_requests == sum(s.outcome is Outcome.OK for s in window)
    assert timeline.shed_requests == sum(s.outcome is Outcome.SHED for s in window)
    assert timeline.failed_requests == sum(s.outcome is Outcome.ERROR for s in window)
    assert timeline.ok_requests > 0
    served = [s for s in window if s.pod == timeline.replacement and s.outcome is Outcome.OK]
    assert served
    assert timeline.first_chat_at is not None
    assert timeline.first_chat_at <= min(s.ended_at for s in served)


@pytest.mark.slow(reason="kills a sandbox pod and follows it to its replacement's first chat")
def test_eviction_on_the_sandbox(sandbox: RunningSandbox) -> None:
    victim, survivor = sorted(wait_for(lambda: sandbox.ready_pods(), 60, "Ready pods"))
    tracker = RecoveryTracker(first_chat_wait=20.0, budget=90.0)
    fed: list[ChatSample] = []
    with Users(sandbox) as users:
        before = snapshot_of(sandbox)
        tracker.requested(victim, "evict", time.time(), [p.name for p in before.pods])
        eviction = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": victim, "namespace": NAMESPACE},
        }
        with sandbox.http() as http:
            http.post(f"{PODS}/{victim}/eviction", json=eviction).raise_for_status()
            # The PDB keeps one pod available: the survivor cannot go too.
            refused = http.post(
                f"{PODS}/{survivor}/eviction",
                json={**eviction, "metadata": {"name": survivor, "namespace": NAMESPACE}},
            )
        assert refused.status_code == 429, refused.text
        tracker.refused(survivor, "evict", refused.json()["message"], time.time())
        timeline = follow(tracker, sandbox, users, fed)
    check_recovered(timeline, fed)
    refusal, _ = tracker.completed
    assert refusal.pod == survivor
    assert refusal.refused
    assert "disruption budget" in refusal.refused
    assert timeline.replacement not in (victim, survivor)


@pytest.mark.slow(reason="kills a sandbox pod and follows it to its replacement's first chat")
def test_force_delete_on_the_sandbox(sandbox: RunningSandbox) -> None:
    wait_for(lambda: len(sandbox.ready_pods()) == 2, 60, "two Ready pods")
    wait_for(lambda: len(sandbox.pods()) == 2, 60, "no pod left terminating")
    victim = sorted(sandbox.ready_pods())[0]
    tracker = RecoveryTracker(first_chat_wait=20.0, budget=90.0)
    fed: list[ChatSample] = []
    with Users(sandbox) as users:
        before = snapshot_of(sandbox)
        tracker.requested(victim, "delete", time.time(), [p.name for p in before.pods])
        with sandbox.http() as http:
            http.delete(f"{PODS}/{victim}", params={"gracePeriodSeconds": 0}).raise_for_status()
        timeline = follow(tracker, sandbox, users, fed)
    check_recovered(timeline, fed)
    assert timeline.gone_at is not None
    # Grace 0: the pod is gone at once, with no draining.
    assert timeline.gone_at - timeline.requested_at < 5, describe(timeline)
    assert describe(timeline)[0].startswith(f"{victim} force-deleted at ")
