"""Chats the client closed mid-reply (the load stopped, Escape): a sample of their own,
counted apart like shed ones, in every place that counts chats: the cockpit's latency window,
the report's figures and text, and `kube-llm load`'s table."""

from __future__ import annotations

from tui.core.figures import CockpitRecord, LoadPhase, figures
from tui.core.model import ChatSample, Outcome
from tui.core.stats import summarize
from tui.headless.load import load_table
from tui.report.record_json import record_from_json, record_json
from tui.report.writer import render
from tui.services.recorder import Recorder

START = 1_800_000_000.0


def chats() -> tuple[ChatSample, ...]:
    """Two answered chats, a failed one, a shed one and two cancelled ones (one mid-reply,
    one before its first token)."""
    return (
        ChatSample(START + 1, "load", Outcome.OK, 200, None, "pod-a", 0.1, 1.0, (0.1,) * 9, 10),
        ChatSample(START + 2, "load", Outcome.OK, 200, None, "pod-b", 0.3, 2.0, (0.2,) * 9, 10),
        ChatSample(START + 3, "load", Outcome.ERROR, 503, "http_503", "pod-a", e2e=0.05),
        ChatSample(START + 4, "load", Outcome.SHED, 429, "http_429", "pod-b", e2e=0.01),
        ChatSample(
            START + 5, "load", Outcome.CANCELLED, 200, "cancelled", "pod-a", 4.0, 4.5, (0.1,), 2
        ),
        ChatSample(START + 5, "load", Outcome.CANCELLED, None, "cancelled", e2e=0.5),
    )


def record() -> CockpitRecord:
    return CockpitRecord(
        started_at=START,
        ended_at=START + 10,
        context="kube-llm-sandbox",
        namespace="kube-llm",
        backend="test",
        chats=chats(),
        phases=(LoadPhase("sustained", 4, START, START + 6, "sustained"),),
    )


def test_cancelled_chats_are_neither_ok_nor_failed_in_the_figures() -> None:
    numbers = figures(record())
    chat = numbers.chats
    assert (chat.requests, chat.ok, chat.failed, chat.shed, chat.cancelled) == (6, 2, 1, 1, 2)
    assert chat.failures_by_kind == (("http_503", 1),)
    # Latency is over the answered chats only: the cancelled one's 4 s TTFT is not in it.
    assert (chat.ttft.count, chat.ttft.p99) == (2, 0.3 - (0.3 - 0.1) * 0.01)
    assert chat.end_to_end.count == 2
    (phase,) = numbers.phases
    assert (phase.chats, phase.ok, phase.failed, phase.shed, phase.cancelled) == (6, 2, 1, 1, 2)
    # One cancelled sustained phase had a failure: no "users without failure" from it.
    assert numbers.most_users_without_failure is None


def test_the_cockpit_window_counts_them_as_chats_but_not_as_answers() -> None:
    recorder = Recorder(clock=lambda: START + 10)
    for sample in chats():
        recorder.add_chat(sample)
    for window in (3.0, 9.0, 60.0):
        merged = recorder.summary(window, START + 10)
        assert merged == summarize(chats(), (), window, START + 10), window
    whole = recorder.summary(60.0, START + 10)
    assert (whole.chats, whole.ok, whole.shed, whole.errors) == (6, 2, 1, (("http_503", 1),))
    assert whole.ttft_p95 is not None
    assert whole.ttft_p95 < 1.0


def test_report_and_table_say_how_many_were_cancelled() -> None:
    data = record_json(record())
    again = record_from_json(data)
    assert again.chats == chats()  # the outcome `cancelled` survives the JSON
    assert data["figures"]["chats"]["cancelled"] == 2
    text = render(again, START + 11)
    assert "2 chats closed by the client mid-reply" in text
    table = load_table(again)
    assert table.splitlines()[0].endswith("cancelled (load stopped) 2")
    assert "failures: http_503 1" in table
