"""The report's chart: its points are the percentiles of the samples, and it draws a PNG."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from tests.tui.test_report import START, make_record
from tui.core.figures import ROLLOUT_NOTE, SCALE_NOTE, LoadPhase, deployment_actions
from tui.core.model import Outcome
from tui.core.stats import percentile
from tui.report.charts import bucket_seconds, draw_timeline, latency_series


def test_latency_points_are_the_percentiles_of_each_bucket() -> None:
    record = make_record()
    step = bucket_seconds(record)
    assert step == math.ceil((record.ended_at - record.started_at) / 60)
    series = latency_series(record)
    assert series
    # Recompute every point by walking the samples afresh.
    for point in series:
        low = record.started_at + point.at - step / 2
        inside = [
            c
            for c in record.chats
            if c.outcome is Outcome.OK and low <= c.ended_at < low + step and c.e2e is not None
        ]
        assert point.chats == len(inside)
        assert point.no_ttft == sum(1 for c in inside if c.ttft is None)
        ttfts = [c.ttft for c in inside if c.ttft is not None]
        e2es = [c.e2e for c in inside if c.e2e is not None]
        assert point.ttft_p50 == percentile(ttfts, 50)
        assert point.ttft_p95 == percentile(ttfts, 95)
        assert point.e2e_p50 == percentile(e2es, 50)
        assert point.e2e_p95 == percentile(e2es, 95)
    ok = sum(1 for c in record.chats if c.outcome is Outcome.OK)
    assert sum(p.chats for p in series) == ok


def test_the_chart_is_a_png_with_phases_and_kills(tmp_path: Path) -> None:
    record = replace(
        make_record(),
        phases=(
            LoadPhase("sustained", 8, START + 100, START + 400, "sustained 8"),
            LoadPhase("burst", 10, START + 450, None),
        ),
    )
    path = draw_timeline(record, tmp_path / "deep" / "timeline.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    # 10 x 6 inches at 100 dpi.
    assert int.from_bytes(data[16:20], "big") == 1000
    assert int.from_bytes(data[20:24], "big") == 600


def test_an_empty_record_still_draws(tmp_path: Path) -> None:
    record = replace(make_record(), chats=(), replicas=(), recoveries=(), phases=())
    assert latency_series(record) == ()
    assert draw_timeline(record, tmp_path / "empty.png").stat().st_size > 0


def test_whole_replies_without_a_ttft_still_draw_their_end_to_end_line(tmp_path: Path) -> None:
    # A `--no-stream` run: every chat is a whole reply, with an end to end and no TTFT.
    streamed = make_record()
    whole = tuple(
        replace(c, ttft=None, gaps=(), streamed=False) if c.outcome is Outcome.OK else c
        for c in streamed.chats
    )
    record = replace(streamed, chats=whole)
    series = latency_series(record)
    ok = [c for c in whole if c.outcome is Outcome.OK]
    assert ok
    assert sum(p.chats for p in series) == len(ok)
    assert sum(p.no_ttft for p in series) == len(ok)
    assert all(p.ttft_p50 is None and p.ttft_p95 is None for p in series)
    # End to end is what the streamed run showed, bucket for bucket.
    assert [(p.at, p.e2e_p50, p.e2e_p95) for p in series] == [
        (p.at, p.e2e_p50, p.e2e_p95) for p in latency_series(streamed)
    ]
    # Half and half: TTFT from the streamed ones only, end to end from all of them.
    pairs = zip(streamed.chats, whole, strict=True)
    mixed = replace(streamed, chats=tuple(w if i % 2 else c for i, (c, w) in enumerate(pairs)))
    step = bucket_seconds(mixed)
    for point in latency_series(mixed):
        low = mixed.started_at + point.at - step / 2
        inside = [
            c for c in mixed.chats if c.outcome is Outcome.OK and low <= c.ended_at < low + step
        ]
        ttfts = [c.ttft for c in inside if c.ttft is not None]
        assert point.ttft_p50 == percentile(ttfts, 50)
        assert point.e2e_p50 == percentile([c.e2e for c in inside if c.e2e is not None], 50)
        assert point.no_ttft == len(inside) - len(ttfts)
    assert draw_timeline(record, tmp_path / "whole.png").stat().st_size > 0


def test_rollouts_and_scales_among_the_notes_are_marked() -> None:
    notes = (
        (START + 5, f"{ROLLOUT_NOTE}restartedAt 2026-12-01T04:07:23Z)"),
        (START + 9, "rollout restart done: 2 pods replaced, all Ready, in 30.1 s"),
        (START + 12, f"{SCALE_NOTE}4 replicas"),
        (START + 14, "evicted llm-backend-5d8f-abcde"),
    )
    assert deployment_actions(notes) == [(START + 5, "rollout"), (START + 12, "scale 4")]


def test_the_chart_draws_with_a_rollout_marked(tmp_path: Path) -> None:
    record = replace(make_record(), events=((START + 5, f"{ROLLOUT_NOTE}restartedAt x)"),))
    path = draw_timeline(record, tmp_path / "timeline.png")
    assert path.read_bytes().startswith(b"\x89PNG")
