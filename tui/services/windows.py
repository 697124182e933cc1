"""The recorder's building blocks: samples kept in time order, and per-interval aggregates.

A `Bucket` folds the samples of one interval into exactly the pieces `tui.core.stats.summarize`
computes from them (counts, the latency values, tokens, the busy span, per-pod values), so a
window's summary can be merged from whole buckets plus the few samples at its two edges instead
of walking every sample in it. `merged_summary` gives the same `LatencySummary` as
`summarize` on the same samples; the recorder's tests check that on random data.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from tui.core.model import ChatSample, HealthSample, LatencySummary, Outcome
from tui.core.stats import errors_by_count, percentile

__all__ = ["Bucket", "Series", "Timeline", "merged_summary"]

T = TypeVar("T")


class Series(StrEnum):
    """The time series the latency panel charts.

    Latency series (`*_p50`) give None for a bucket with no sample: no data is not a zero
    latency. Rate series (`*_per_second`) give 0.0 for such a bucket: nothing happened.
    """

    HEALTH_P50 = "health_p50"
    """Median `/healthz` latency of the successful probes, seconds."""
    TTFT_P50 = "ttft_p50"
    """Median time to first token of the successful chats, seconds."""
    E2E_P50 = "e2e_p50"
    """Median end-to-end time of the successful chats, seconds."""
    REQUESTS_PER_SECOND = "requests_per_second"
    """Chats that ended, whatever their outcome (429s included)."""
    ERRORS_PER_SECOND = "errors_per_second"
    """Chats that failed (429s are shed, not errors)."""
    TOKENS_PER_SECOND = "tokens_per_second"
    """Output tokens of the successful chats, counted when each chat ends."""


LATENCY_SERIES = (Series.HEALTH_P50, Series.TTFT_P50, Series.E2E_P50)


class Timeline(Generic[T]):
    """Items in order of a time key: the newest `max_items` of them, and none older than
    `max_age` seconds before the newest.

    Items past those bounds are invisible at once but leave memory in batches (deleting a
    list's prefix moves the whole list), so up to `TRIM_SLACK` of them may wait for that.
    """

    TRIM_SLACK = 1024

    def __init__(self, key: Callable[[T], float], max_items: int, max_age: float) -> None:
        """Keep items ordered by `key`, within `max_items` and `max_age`."""
        self._key = key
        self._max_items = max_items
        self._max_age = max_age
        self._slack = min(self.TRIM_SLACK, max(1, max_items // 10))
        self._keys: list[float] = []
        self._items: list[T] = []
        self._dropped_until = -math.inf

    def __len__(self) -> int:
        """How many items are within the bounds."""
        return len(self._items) - self._start()

    def _start(self) -> int:
        """Index of the first item within the bounds."""
        if not self._keys:
            return 0
        by_count = len(self._items) - self._max_items
        by_age = bisect.bisect_left(self._keys, self._keys[-1] - self._max_age)
        return max(0, by_count, by_age)

    @property
    def gone_until(self) -> float:
        """The newest key among the items no longer kept (-inf while none has gone)."""
        start = self._start()
        return self._keys[start - 1] if start else self._dropped_until

    def add(self, item: T) -> None:
        """Insert `item` in key order (an item arrives late only rarely, and near the end)."""
        at = self._key(item)
        if not self._keys or at >= self._keys[-1]:
            self._keys.append(at)
            self._items.append(item)
        else:
            index = bisect.bisect_right(self._keys, at)
            self._keys.insert(index, at)
            self._items.insert(index, item)
        start = self._start()
        if start > self._slack:
            self._dropped_until = self._keys[start - 1]
            del self._keys[:start]
            del self._items[:start]

    def window(self, since: float, until: float) -> list[T]:
        """Items within the bounds whose key is within [since, until]."""
        start = max(self._start(), bisect.bisect_left(self._keys, since))
        end = bisect.bisect_right(self._keys, until)
        return self._items[start:end]

    def all(self) -> tuple[T, ...]:
        """Every item within the bounds, oldest first."""
        return tuple(self._items[self._start() :])


@dataclass
class Bucket:
    """What the samples of one interval add up to, in the pieces a summary is made of."""

    chats: int = 0
    ok: int = 0
    shed: int = 0
    error_count: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    ttft: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    tokens: int = 0
    chunks: bool = False
    """Some successful chat counted chunks, not the backend's usage."""
    first_start: float = math.inf
    """The earliest start of a successful chat."""
    last_end: float = -math.inf
    """The latest end of a successful chat."""
    served: Counter[str] = field(default_factory=Counter)
    ttft_by_pod: dict[str, list[float]] = field(default_factory=dict)
    medians: dict[Series, float | None] = field(default_factory=dict)
    """Chart medians already computed; a new sample clears them."""

    def add_chat(self, chat: ChatSample) -> None:
        """Fold a chat in, as `summarize` counts it."""
        self.chats += 1
        if chat.outcome is Outcome.SHED:
            self.shed += 1
            return
        if chat.outcome is Outcome.ERROR:
            self.error_count += 1
            self.errors[chat.error_kind or "error"] += 1
            return
        if chat.outcome is Outcome.CANCELLED:
            return  # stopped by the client: in the count of chats, not in the service's figures
        self.ok += 1
        self.medians.clear()
        if chat.ttft is not None:
            self.ttft.append(chat.ttft)
        if chat.e2e is not None:
            self.e2e.append(chat.e2e)
        self.tokens += chat.output_tokens
        self.chunks = self.chunks or not chat.tokens_from_usage
        self.first_start = min(self.first_start, chat.started_at)
        self.last_end = max(self.last_end, chat.ended_at)
        if chat.pod:
            self.served[chat.pod] += 1
            if chat.ttft is not None:
                self.ttft_by_pod.setdefault(chat.pod, []).append(chat.ttft)

    def add_health(self, probe: HealthSample) -> None:
        """Fold a health probe in (only a successful one has a latency that counts)."""
        if probe.ok and probe.latency is not None:
            self.health.append(probe.latency)
            self.medians.pop(Series.HEALTH_P50, None)

    def values(self, series: Series) -> list[float]:
        """The latencies behind a latency series."""
        if series is Series.HEALTH_P50:
            return self.health
        if series is Series.TTFT_P50:
            return self.ttft
        return self.e2e

    def median(self, series: Series) -> float | None:
        """A latency series' median over this bucket, cached."""
        if series not in self.medians:
            values = self.values(series)
            self.medians[series] = statistics.median(values) if values else None
        return self.medians[series]

    def count(self, series: Series) -> int:
        """What a rate series counts in this bucket."""
        if series is Series.REQUESTS_PER_SECOND:
            return self.chats
        if series is Series.ERRORS_PER_SECOND:
            return self.error_count
        return self.tokens


def _joined(lists: Sequence[list[float]]) -> list[float]:
    """The values of several lists, sorted (so each percentile's own sort is linear).

    Each list is sorted in place first: a bucket's values are a multiset, a closed bucket is
    then sorted once for every later summary, and sorting runs that are each sorted already
    is a cheap merge.
    """
    for values in lists:
        values.sort()
    return sorted(itertools.chain.from_iterable(lists))


def merged_summary(parts: Sequence[Bucket], window_seconds: float, now: float) -> LatencySummary:
    """The summary of the samples folded into `parts` (the window's buckets and edges)."""
    since = now - window_seconds
    ttfts = _joined([part.ttft for part in parts])
    e2es = _joined([part.e2e for part in parts])
    health = _joined([part.health for part in parts])
    errors: Counter[str] = Counter()
    served: Counter[str] = Counter()
    by_pod: dict[str, list[list[float]]] = {}
    for part in parts:
        errors.update(part.errors)
        served.update(part.served)
        for pod, values in part.ttft_by_pod.items():
            by_pod.setdefault(pod, []).append(values)
    chats = sum(part.chats for part in parts)
    ok = sum(part.ok for part in parts)
    tokens = sum(part.tokens for part in parts)
    span = 0.0
    if ok:
        start = max(since, min(part.first_start for part in parts))
        end = min(now, max(part.last_end for part in parts))
        span = end - start
    return LatencySummary(
        window_seconds=window_seconds,
        health_p50=percentile(health, 50),
        health_p99=percentile(health, 99),
        ttft_p50=percentile(ttfts, 50),
        ttft_p95=percentile(ttfts, 95),
        e2e_p50=percentile(e2es, 50),
        e2e_p95=percentile(e2es, 95),
        tokens_per_second=tokens / span if tokens and span > 0 else None,
        tokens_are_chunks=any(part.chunks for part in parts),
        requests_per_second=chats / window_seconds if window_seconds > 0 else 0.0,
        chats=chats,
        ok=ok,
        shed=sum(part.shed for part in parts),
        errors=errors_by_count(errors),
        served_by=tuple(sorted(served.items())),
        ttft_p50_by_pod=tuple(
            sorted(
                (pod, p50)
                for pod, lists in by_pod.items()
                if (p50 := percentile(_joined(lists), 50)) is not None
            )
        ),
    )
