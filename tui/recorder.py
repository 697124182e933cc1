"""The cockpit's memory of samples: sliding-window summaries and time series for the charts.

`Recorder` keeps the chat and health samples (bounded in count and age) in time order, so a
window is two binary searches and a slice, and `summary()` hands only the window to
`tui.stats.summarize`. The charts' series come from per-interval buckets filled as samples
arrive; a closed bucket's median is computed once and kept until a late sample lands in it.

Which moment places a sample: a chat's end (`ChatSample.ended_at`, as in `summarize`), a health
probe's start (`HealthSample.at`).
"""

from __future__ import annotations

import bisect
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from tui.model import ChatSample, HealthSample, LatencySummary, Outcome
from tui.stats import summarize

__all__ = ["Recorder", "Series"]

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


_LATENCIES = (Series.HEALTH_P50, Series.TTFT_P50, Series.E2E_P50)


class _Timeline(Generic[T]):
    """Items in order of a time key: the newest `max_items` of them, and none older than
    `max_age` seconds before the newest.

    Items past those bounds are invisible at once but leave memory in batches (deleting a
    list's prefix moves the whole list), so up to `_TRIM_SLACK` of them may wait for it.
    """

    _TRIM_SLACK = 1024

    def __init__(self, key: Callable[[T], float], max_items: int, max_age: float) -> None:
        self._key = key
        self._max_items = max_items
        self._max_age = max_age
        self._slack = min(self._TRIM_SLACK, max(1, max_items // 10))
        self._keys: list[float] = []
        self._items: list[T] = []

    def __len__(self) -> int:
        return len(self._items) - self._start()

    def _start(self) -> int:
        """Index of the first item within the bounds."""
        if not self._keys:
            return 0
        by_count = len(self._items) - self._max_items
        by_age = bisect.bisect_left(self._keys, self._keys[-1] - self._max_age)
        return max(0, by_count, by_age)

    def add(self, item: T) -> None:
        at = self._key(item)
        if not self._keys or at >= self._keys[-1]:
            self._keys.append(at)
            self._items.append(item)
        else:  # a late arrival: rare, and it lands near the end
            index = bisect.bisect_right(self._keys, at)
            self._keys.insert(index, at)
            self._items.insert(index, item)
        start = self._start()
        if start > self._slack:
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
class _Bucket:
    """What happened in one base interval; medians cached until the bucket changes."""

    health: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    medians: dict[Series, float | None] = field(default_factory=dict)

    def values(self, series: Series) -> list[float]:
        if series is Series.HEALTH_P50:
            return self.health
        if series is Series.TTFT_P50:
            return self.ttft
        return self.e2e

    def median(self, series: Series) -> float | None:
        if series not in self.medians:
            values = self.values(series)
            self.medians[series] = statistics.median(values) if values else None
        return self.medians[series]

    def count(self, series: Series) -> int:
        if series is Series.REQUESTS_PER_SECOND:
            return self.requests
        if series is Series.ERRORS_PER_SECOND:
            return self.errors
        return self.tokens


class Recorder:
    """Every sample the cockpit saw, bounded, with windowed summaries and chart series.

    Memory is bounded by `max_chats` / `max_healths` samples and `max_age_seconds` (the newest
    sample minus the oldest); chart buckets are kept for `series_horizon_seconds`, the longest
    chart. A chat sample with its per-token gaps is about 2 KB at 64 tokens, so the default
    50,000 chats is about 100 MB at most.
    """

    def __init__(
        self,
        max_chats: int = 50_000,
        max_healths: int = 100_000,
        max_age_seconds: float = 3600.0,
        resolution_seconds: float = 1.0,
        series_horizon_seconds: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Keep samples within the caps; bucket the charts every `resolution_seconds`."""
        if min(max_chats, max_healths) < 1:
            raise ValueError("the sample caps must be at least 1")
        if not (max_age_seconds > 0 and resolution_seconds > 0 and series_horizon_seconds > 0):
            raise ValueError("ages, resolution and horizon must be positive")
        self._chats: _Timeline[ChatSample] = _Timeline(
            lambda c: c.ended_at, max_chats, max_age_seconds
        )
        self._healths: _Timeline[HealthSample] = _Timeline(
            lambda h: h.at, max_healths, max_age_seconds
        )
        self.resolution = resolution_seconds
        self._horizon_buckets = math.ceil(series_horizon_seconds / resolution_seconds)
        self._buckets: dict[int, _Bucket] = {}
        self._newest_bucket: int | None = None
        self._clock = clock

    def add(self, sample: ChatSample | HealthSample) -> None:
        """Record a chat or a health sample."""
        if isinstance(sample, ChatSample):
            self.add_chat(sample)
        else:
            self.add_health(sample)

    def add_chat(self, sample: ChatSample) -> None:
        """Record a chat sample."""
        self._chats.add(sample)
        bucket = self._bucket(sample.ended_at)
        if bucket is None:
            return
        bucket.requests += 1
        if sample.outcome is Outcome.ERROR:
            bucket.errors += 1
        elif sample.outcome is Outcome.OK:
            bucket.tokens += sample.output_tokens
            if sample.ttft is not None:
                bucket.ttft.append(sample.ttft)
                bucket.medians.pop(Series.TTFT_P50, None)
            if sample.e2e is not None:
                bucket.e2e.append(sample.e2e)
                bucket.medians.pop(Series.E2E_P50, None)

    def add_health(self, sample: HealthSample) -> None:
        """Record a health sample."""
        self._healths.add(sample)
        if not sample.ok or sample.latency is None:
            return
        bucket = self._bucket(sample.at)
        if bucket is not None:
            bucket.health.append(sample.latency)
            bucket.medians.pop(Series.HEALTH_P50, None)

    def _bucket(self, at: float) -> _Bucket | None:
        """The bucket for moment `at`, made on demand; None if it is past the horizon."""
        index = math.floor(at / self.resolution)
        newest = self._newest_bucket
        if newest is not None and index <= newest - self._horizon_buckets:
            return None
        if newest is None or index > newest:
            self._newest_bucket = index
            cutoff = index - self._horizon_buckets
            for old in [key for key in self._buckets if key <= cutoff]:
                del self._buckets[old]
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = _Bucket()
        return bucket

    def chats(self, since: float | None = None) -> tuple[ChatSample, ...]:
        """The chat samples kept (those that ended at `since` or later), in order of their end."""
        if since is None:
            return self._chats.all()
        return tuple(self._chats.window(since, math.inf))

    def healths(self, since: float | None = None) -> tuple[HealthSample, ...]:
        """The health samples kept (from `since` on), oldest first."""
        if since is None:
            return self._healths.all()
        return tuple(self._healths.window(since, math.inf))

    def __len__(self) -> int:
        """How many samples are kept, chats and health together."""
        return len(self._chats) + len(self._healths)

    def summary(self, window_seconds: float = 60.0, now: float | None = None) -> LatencySummary:
        """Percentiles and rates over the last `window_seconds` before `now` (default: now)."""
        if not window_seconds > 0:
            raise ValueError(f"the window must be positive, not {window_seconds!r}")
        now = self._clock() if now is None else now
        since = now - window_seconds
        return summarize(
            self._chats.window(since, now), self._healths.window(since, now), window_seconds, now
        )

    def series(
        self,
        series: Series,
        seconds: float = 60.0,
        bucket_seconds: float | None = None,
        now: float | None = None,
    ) -> tuple[float | None, ...]:
        """`series` over the last `seconds`, one value per `bucket_seconds` (default: the
        resolution), oldest first.

        Buckets are aligned to whole multiples of `bucket_seconds` and only complete ones are
        given, so a chart does not jitter as time passes: the last value is the bucket that
        ended most recently. See `Series` for what an empty bucket gives.
        """
        step = self.resolution if bucket_seconds is None else bucket_seconds
        ratio = step / self.resolution
        per_bucket = round(ratio)
        if per_bucket < 1 or not math.isclose(ratio, per_bucket):
            raise ValueError(
                f"bucket_seconds must be a whole multiple of the resolution "
                f"({self.resolution:g} s), not {step!r}"
            )
        count = max(1, round(seconds / step))
        now = self._clock() if now is None else now
        # Index (in resolution units) where the newest complete bucket ends.
        end = math.floor(now / step) * per_bucket
        values: list[float | None] = []
        for number in range(count):
            start = end - (count - number) * per_bucket
            parts = [self._buckets.get(index) for index in range(start, start + per_bucket)]
            values.append(_value(series, [p for p in parts if p is not None], step))
        return tuple(values)


def _value(series: Series, parts: list[_Bucket], step: float) -> float | None:
    """One chart point from the base buckets it spans."""
    if series in _LATENCIES:
        if len(parts) == 1:
            return parts[0].median(series)
        merged: list[float] = [v for part in parts for v in part.values(series)]
        return statistics.median(merged) if merged else None
    return sum(part.count(series) for part in parts) / step
