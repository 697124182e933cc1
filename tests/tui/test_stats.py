"""Percentiles and window summaries against values computed independently."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from tui.core.model import ChatSample, HealthSample, Outcome
from tui.core.stats import percentile, summarize


@pytest.mark.parametrize("size", [1, 2, 3, 10, 101, 1000])
def test_percentile_matches_statistics_inclusive_quantiles(size: int) -> None:
    rng = random.Random(size)
    values = [rng.lognormvariate(-2, 1) for _ in range(size)]
    if size == 1:
        assert all(percentile(values, q) == values[0] for q in (0, 50, 99, 100))
        return
    # statistics' "inclusive" method is the same linear interpolation between closest ranks.
    expected = statistics.quantiles(values, n=100, method="inclusive")
    for q in range(1, 100):
        assert percentile(values, q) == pytest.approx(expected[q - 1], rel=1e-12)
    assert percentile(values, 0) == min(values)
    assert percentile(values, 100) == max(values)
    assert percentile(values, 50) == pytest.approx(statistics.median(values), rel=1e-12)


def test_percentile_by_hand() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([10.0, 20.0], 95) == pytest.approx(19.5)
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="within 0 and 100"):
        percentile([1.0], 101)


def _chat(
    rng: random.Random, ended: float, outcome: Outcome, pod: str, usage: bool = True
) -> ChatSample:
    e2e = rng.uniform(0.2, 3.0)
    ttft = rng.uniform(0.01, 0.2)
    return ChatSample(
        started_at=ended - e2e,
        origin="load",
        outcome=outcome,
        status={Outcome.OK: 200, Outcome.SHED: 429, Outcome.ERROR: 503}.get(outcome),
        error_kind=None if outcome is Outcome.OK else rng.choice(["http_503", "truncated"]),
        pod=pod,
        ttft=ttft if outcome is Outcome.OK else None,
        e2e=e2e,
        output_tokens=rng.randint(2, 64) if outcome is Outcome.OK else 0,
        tokens_from_usage=usage,
    )


def test_summarize_counts_only_the_window_and_matches_hand_computed_values() -> None:
    rng = random.Random(7)
    now = 10_000.0
    window = 60.0
    chats = [
        _chat(
            rng,
            now - rng.uniform(0, 120),
            rng.choices(list(Outcome), weights=[8, 1, 1, 1])[0],
            rng.choice(["pod-a", "pod-b", "pod-c"]),
        )
        for _ in range(500)
    ]
    healths = [
        HealthSample(at=now - rng.uniform(0, 120), latency=rng.uniform(0.001, 0.01), status=200)
        for _ in range(200)
    ] + [HealthSample(at=now - 1, latency=None, error="timeout")]
    summary = summarize(chats, healths, window, now)

    inside = [c for c in chats if now - window <= c.ended_at <= now]
    ok = [c for c in inside if c.outcome is Outcome.OK]
    assert 0 < len(inside) < len(chats)
    assert summary.chats == len(inside)
    assert summary.ok == len(ok)
    assert summary.shed == sum(c.outcome is Outcome.SHED for c in inside)
    errors = Counter(c.error_kind for c in inside if c.outcome is Outcome.ERROR)
    assert dict(summary.errors) == dict(errors)
    assert [n for _, n in summary.errors] == sorted(errors.values(), reverse=True)
    ttfts = [c.ttft for c in ok if c.ttft is not None]
    e2es = [c.e2e for c in ok if c.e2e is not None]
    assert summary.ttft_p50 == pytest.approx(statistics.median(ttfts))
    assert summary.ttft_p95 == pytest.approx(
        statistics.quantiles(ttfts, n=20, method="inclusive")[-1]
    )
    assert summary.e2e_p50 == pytest.approx(statistics.median(e2es))
    health_in = [h.latency for h in healths if h.latency and now - window <= h.at <= now]
    assert summary.health_p50 == pytest.approx(statistics.median(health_in))
    assert summary.health_p99 == pytest.approx(
        statistics.quantiles(health_in, n=100, method="inclusive")[-1]
    )
    assert summary.requests_per_second == pytest.approx(len(inside) / window)
    assert dict(summary.served_by) == dict(Counter(c.pod for c in ok))
    for pod, p50 in summary.ttft_p50_by_pod:
        assert p50 == pytest.approx(
            statistics.median(c.ttft for c in ok if c.pod == pod and c.ttft is not None)
        )
    start = max(now - window, min(c.started_at for c in ok))
    end = min(now, max(c.ended_at for c in ok))
    assert summary.tokens_per_second == pytest.approx(
        sum(c.output_tokens for c in ok) / (end - start)
    )
    assert not summary.tokens_are_chunks


def test_summarize_flags_counted_chunks_and_handles_an_empty_window() -> None:
    rng = random.Random(3)
    chats = [_chat(rng, 100.0, Outcome.OK, "p", usage=False)]
    assert summarize(chats, [], 10, 105.0).tokens_are_chunks
    empty = summarize(chats, [], 10, 500.0)
    assert (empty.chats, empty.ttft_p50, empty.health_p50, empty.tokens_per_second) == (
        0,
        None,
        None,
        None,
    )
    assert empty.requests_per_second == 0.0


def test_errors_are_ordered_by_count_then_name_whatever_came_first() -> None:
    def failed(kind: str, ended: float) -> ChatSample:
        return ChatSample(
            started_at=ended - 1, origin="load", outcome=Outcome.ERROR, error_kind=kind, e2e=1.0
        )

    kinds = ["truncated", "http_503", "connect", "http_503", "truncated", "timeout"]
    first = summarize([failed(k, 10.0 + i) for i, k in enumerate(kinds)], [], 60, 60.0)
    again = summarize([failed(k, 10.0 + i) for i, k in enumerate(reversed(kinds))], [], 60, 60.0)
    expected = (("http_503", 2), ("truncated", 2), ("connect", 1), ("timeout", 1))
    assert first.errors == again.errors == expected
