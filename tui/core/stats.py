"""Percentiles and rates over samples: one computation for the latency panel and the reports."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from tui.core.model import ChatSample, HealthSample, LatencySummary, Outcome


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; None if empty."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0 and 100, not {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(
    chats: Iterable[ChatSample],
    healths: Iterable[HealthSample],
    window_seconds: float,
    now: float,
) -> LatencySummary:
    """Summarise the samples that ended within the last `window_seconds` before `now`."""
    since = now - window_seconds
    chats_in = [c for c in chats if since <= c.ended_at <= now]
    health_in = [h for h in healths if since <= h.at <= now and h.latency is not None and h.ok]
    ok = [c for c in chats_in if c.outcome is Outcome.OK]
    ttfts = [c.ttft for c in ok if c.ttft is not None]
    e2es = [c.e2e for c in ok if c.e2e is not None]
    health_latencies = [h.latency for h in health_in if h.latency is not None]
    errors = Counter(c.error_kind or "error" for c in chats_in if c.outcome is Outcome.ERROR)
    served = Counter(c.pod for c in ok if c.pod)
    by_pod: dict[str, list[float]] = {}
    for chat in ok:
        if chat.pod and chat.ttft is not None:
            by_pod.setdefault(chat.pod, []).append(chat.ttft)
    tokens = sum(c.output_tokens for c in ok)
    span = _busy_span(ok, since, now)
    return LatencySummary(
        window_seconds=window_seconds,
        health_p50=percentile(health_latencies, 50),
        health_p99=percentile(health_latencies, 99),
        ttft_p50=percentile(ttfts, 50),
        ttft_p95=percentile(ttfts, 95),
        e2e_p50=percentile(e2es, 50),
        e2e_p95=percentile(e2es, 95),
        tokens_per_second=tokens / span if tokens and span > 0 else None,
        tokens_are_chunks=any(not c.tokens_from_usage for c in ok),
        requests_per_second=len(chats_in) / window_seconds if window_seconds > 0 else 0.0,
        chats=len(chats_in),
        ok=len(ok),
        shed=sum(1 for c in chats_in if c.outcome is Outcome.SHED),
        errors=errors_by_count(errors),
        served_by=tuple(sorted(served.items())),
        ttft_p50_by_pod=tuple(
            sorted(
                (pod, p50)
                for pod, values in by_pod.items()
                if (p50 := percentile(values, 50)) is not None
            )
        ),
    )


def errors_by_count(errors: Counter[str]) -> tuple[tuple[str, int], ...]:
    """Errors by kind, most frequent first, ties by name: an order that does not depend on
    which failure came first, so the panel's list does not reshuffle as the window slides."""
    return tuple(sorted(errors.items(), key=lambda item: (-item[1], item[0])))


def _busy_span(chats: Sequence[ChatSample], since: float, now: float) -> float:
    """Seconds within the window from the first chat's start to the last chat's end."""
    if not chats:
        return 0.0
    start = max(since, min(c.started_at for c in chats))
    end = min(now, max(c.ended_at for c in chats))
    return end - start


def step_series(
    points: Sequence[tuple[float, float]], now: float, span: float, buckets: int
) -> list[float]:
    """A value that holds between changes, sampled at the end of each of `buckets` buckets.

    `points` are (moment, value) pairs in time order, each value holding until the next one.
    Buckets before the first point hold that first value (the cockpit saw it on arrival).
    """
    if not points or buckets <= 0:
        return []
    step = span / buckets
    values: list[float] = []
    index = 0
    current = points[0][1]
    for bucket in range(buckets):
        end = now - span + step * (bucket + 1)
        while index < len(points) and points[index][0] <= end:
            current = points[index][1]
            index += 1
        values.append(current)
    return values
