"""The cockpit's memory of samples: sliding-window summaries and time series for the charts.

`Recorder` keeps the chat and health samples (bounded in count and age) in time order, and folds
each one as it arrives into a per-interval `Bucket`. A window's summary is merged from its whole
buckets plus the few samples at its two edges, so it costs about one sort of the window's
latencies rather than a walk over every sample; it equals `tui.core.stats.summarize` on the same
samples. Chart series read the same buckets; a closed bucket's median is computed once and kept
until a late sample lands in it.

Which moment places a sample: a chat's end (`ChatSample.ended_at`, as in `summarize`), a health
probe's start (`HealthSample.at`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

from tui.core.model import ChatSample, HealthSample, LatencySummary
from tui.core.stats import summarize
from tui.services.windows import LATENCY_SERIES, Bucket, Series, Timeline, merged_summary

__all__ = ["Recorder"]

_S = TypeVar("_S", ChatSample, HealthSample)


def _chat_key(chat: ChatSample) -> float:
    return chat.ended_at


def _health_key(probe: HealthSample) -> float:
    return probe.at


class Recorder:
    """Every sample the cockpit saw, bounded, with windowed summaries and chart series.

    Memory is bounded by `max_chats` / `max_healths` samples and `max_age_seconds` (the newest
    sample minus the oldest); chart buckets are kept for `series_horizon_seconds`, the longest
    chart. A chat sample with its per-token gaps takes about 2.5 KB at 64 tokens (measured with
    tracemalloc, buckets included), so the default 40,000 chats is about 100 MB at most.
    """

    def __init__(
        self,
        max_chats: int = 40_000,
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
        self._chats: Timeline[ChatSample] = Timeline(
            lambda c: c.ended_at, max_chats, max_age_seconds
        )
        self._healths: Timeline[HealthSample] = Timeline(
            lambda h: h.at, max_healths, max_age_seconds
        )
        self.resolution = resolution_seconds
        self._horizon_buckets = math.ceil(series_horizon_seconds / resolution_seconds)
        self._buckets: dict[int, Bucket] = {}
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
        if bucket is not None:
            bucket.add_chat(sample)

    def add_health(self, sample: HealthSample) -> None:
        """Record a health sample."""
        self._healths.add(sample)
        bucket = self._bucket(sample.at)
        if bucket is not None:
            bucket.add_health(sample)

    def _bucket(self, at: float) -> Bucket | None:
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
            bucket = self._buckets[index] = Bucket()
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
        # Whole buckets first..last-1 lie inside the window; the edges are read sample by sample.
        first = math.ceil(since / self.resolution)
        last = math.floor(now / self.resolution)
        if last - first < 1 or not self._buckets_cover(since, first):
            return summarize(
                self._chats.window(since, now),
                self._healths.window(since, now),
                window_seconds,
                now,
            )
        parts = [self._buckets[i] for i in range(first, last) if i in self._buckets]
        edges = Bucket()
        for chat in self._edge(self._chats.window(since, now), first, last, _chat_key):
            edges.add_chat(chat)
        for probe in self._edge(self._healths.window(since, now), first, last, _health_key):
            edges.add_health(probe)
        return merged_summary([*parts, edges], window_seconds, now)

    def _buckets_cover(self, since: float, first: int) -> bool:
        """Whether the buckets hold every kept sample from `since` on: none of the window is
        past the buckets' horizon, and no sample in it was dropped from the timelines."""
        if self._newest_bucket is None or first <= self._newest_bucket - self._horizon_buckets:
            return False
        return since > self._chats.gone_until and since > self._healths.gone_until

    def _edge(
        self, samples: list[_S], first: int, last: int, key: Callable[[_S], float]
    ) -> list[_S]:
        """The samples of a window that are not in its whole buckets (at its two ends)."""
        resolution = self.resolution
        head: list[_S] = []
        for sample in samples:
            if math.floor(key(sample) / resolution) >= first:
                break
            head.append(sample)
        tail: list[_S] = []
        for sample in reversed(samples):
            if math.floor(key(sample) / resolution) < last:
                break
            tail.append(sample)
        return head + tail

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


def _value(series: Series, parts: list[Bucket], step: float) -> float | None:
    """One chart point from the base buckets it spans."""
    if series in LATENCY_SERIES:
        if len(parts) == 1:
            return parts[0].median(series)
        merged: list[float] = [v for part in parts for v in part.values(series)]
        return statistics.median(merged) if merged else None
    return sum(part.count(series) for part in parts) / step
