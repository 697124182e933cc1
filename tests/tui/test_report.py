"""The Markdown report: every number recomputed from the record's samples, untrusted text tamed."""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from tui.cli.main import main
from tui.core.figures import CockpitRecord, LoadPhase, figures, peak_concurrency
from tui.core.model import (
    ChatSample,
    HealthSample,
    HpaMetric,
    HpaView,
    Outcome,
    RecoveryTimeline,
    ReplicaPoint,
)
from tui.core.stats import percentile
from tui.report.record_json import FORMAT, ReportJsonError, record_from_json, record_json
from tui.report.writer import (
    MARKDOWN_NAME,
    ReportError,
    cell,
    render,
    write_report_folder,
)
from tui.services.chaos import describe

START = 1_764_547_200.0  # 2025-12-01 00:00 UTC
EVIL_POD = "llm-backend-7f9c-x|2k4\n\x1b]0;owned\x07<b>`x"
EVIL_KIND = "http_503 | \x1b[31mred\r\nnext"


def make_record(*, usage: bool = True, seed: int = 7) -> CockpitRecord:
    """Ten minutes of a realistic cockpit session: load, a kill, a scale-up."""
    rng = random.Random(seed)
    pods = ["llm-backend-7f9c-aaaa", "llm-backend-7f9c-bbbb", EVIL_POD]
    chats: list[ChatSample] = []
    for i in range(120):
        started = START + i * 4 + rng.random()
        roll = rng.random()
        if roll < 0.1:
            chats.append(ChatSample(started, "load", Outcome.SHED, 429, "shed", e2e=0.01))
        elif roll < 0.15:
            kind = EVIL_KIND if i % 2 else "timeout"
            chats.append(ChatSample(started, "load", Outcome.ERROR, None, kind, e2e=2.0))
        else:
            ttft = rng.uniform(0.05, 0.6)
            gaps = tuple(rng.uniform(0.005, 0.05) for _ in range(rng.randint(3, 30)))
            chats.append(
                ChatSample(
                    started,
                    "chat" if i % 10 == 0 else "load",
                    Outcome.OK,
                    200,
                    pod=rng.choice(pods),
                    ttft=ttft,
                    e2e=ttft + sum(gaps),
                    gaps=gaps,
                    output_tokens=len(gaps) + 1,
                    tokens_from_usage=usage,
                )
            )
    healths = [
        HealthSample(START + s, rng.uniform(0.002, 0.09), 200, rng.choice(pods))
        for s in range(0, 600, 2)
    ]
    healths += [
        HealthSample(START + 301, None, None, None, "connect"),
        HealthSample(START + 303, 0.5, 503, pods[0]),
    ]
    recovery = RecoveryTimeline(
        pod=EVIL_POD,
        action="evict",
        requested_at=START + 300,
        terminating_at=START + 300.1,
        left_endpoints_at=START + 300.1,
        gone_at=START + 302.4,
        replacement="llm-backend-7f9c-cccc",
        replacement_created_at=START + 300.3,
        replacement_started_at=START + 300.4,
        replacement_ready_at=START + 306.2,
        first_chat_at=START + 306.9,
        failed_requests=1,
        shed_requests=2,
        ok_requests=14,
        complete=True,
    )
    refused = RecoveryTimeline(
        pod=pods[0],
        action="evict",
        requested_at=START + 301,
        refused="Cannot evict pod as it would violate the pod's disruption budget.",
        complete=True,
    )
    removed = RecoveryTimeline(
        pod=pods[1],
        action="delete",
        requested_at=START + 400,
        gone_at=START + 400.2,
        replacement="llm-backend-7f9c-dddd",
        replacement_created_at=START + 400.3,
        replacement_removed_at=START + 403,
        closed_at=START + 403,
    )
    still_open = RecoveryTimeline(
        pod="llm-backend-7f9c-eeee", action="evict", requested_at=START + 590
    )
    replicas = [ReplicaPoint(START + s, 2, 2, 2) for s in range(0, 100, 5)]
    replicas += [ReplicaPoint(START + 100, 2, 4, 2), ReplicaPoint(START + 101, 4, 4, 2)]
    replicas += [ReplicaPoint(START + 110, 4, 4, 4), ReplicaPoint(START + 115, 4, 4, 4)]
    hpa = HpaView(
        name="llm-backend",
        min_replicas=2,
        max_replicas=6,
        current_replicas=4,
        desired_replicas=4,
        metrics=(
            HpaMetric("ContainerResource", "cpu", "engine", target_utilization=70),
            HpaMetric("ContainerResource", "memory", "backend", target_utilization=80),
        ),
    )
    return CockpitRecord(
        started_at=START,
        ended_at=START + 600,
        context="kube-llm-sandbox",
        namespace="kube-llm",
        backend="service proxy through the API server",
        chats=tuple(chats),
        healths=tuple(healths),
        recoveries=(recovery, refused, removed, still_open),
        replicas=tuple(replicas),
        events=((START + 300, f"evict {EVIL_POD}"), (START + 5, "Scheduled | \x1b[2J")),
        hpa=hpa,
        model="smollm2:135m",
    )


_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table in the text, as rows of cells (the header included)."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in _CELL_SPLIT.split(line)[1:-1]]
            if not all(set(c) <= {"-"} for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def table_after(text: str, heading: str) -> dict[str, list[str]]:
    """The first table after `heading`, keyed by its first column."""
    section = text.split(heading, 1)[1]
    rows = tables(section)[0]
    return {row[0]: row[1:] for row in rows}


def ms(value: float | None) -> str:
    assert value is not None
    return f"{value * 1000:.1f} ms"


def s(value: float | None) -> str:
    assert value is not None
    return f"{value:.3f} s"


@pytest.fixture
def report(tmp_path: Path) -> tuple[CockpitRecord, str, Path]:
    record = make_record()
    folder = write_report_folder(record, tmp_path / "reports" / "nested", written_at=START + 601)
    path = folder / MARKDOWN_NAME
    return record, path.read_text(encoding="utf-8"), path


def test_file_name_folder_and_no_overwrite(tmp_path: Path) -> None:
    record = make_record()
    folder = tmp_path / "new" / "folder"
    first = write_report_folder(record, folder, written_at=START + 601)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(START + 601))
    assert first == folder / f"kube-llm-report-{stamp}"
    before = (first / MARKDOWN_NAME).read_bytes()
    second = write_report_folder(record, folder, written_at=START + 601)
    assert second == folder / f"kube-llm-report-{stamp}-2"
    assert (first / MARKDOWN_NAME).read_bytes() == before


def test_health_numbers_come_from_the_samples(report: tuple[CockpitRecord, str, Path]) -> None:
    record, text, _ = report
    answered = [h.latency for h in record.healths if h.ok and h.latency is not None]
    rows = table_after(text, "## Health checks")
    assert rows["checks"] == [str(len(record.healths))]
    assert rows["failures"] == ["2"]
    assert rows["mean"] == [ms(sum(answered) / len(answered))]
    assert rows["p50"] == [ms(percentile(answered, 50))]
    assert rows["p99"] == [ms(percentile(answered, 99))]
    assert table_after(text, "Health check failures by kind:") == {
        "kind": ["count"],
        "connect": ["1"],
        "http_503": ["1"],
    }


def test_chat_numbers_come_from_the_samples(report: tuple[CockpitRecord, str, Path]) -> None:
    record, text, _ = report
    ok = [c for c in record.chats if c.outcome is Outcome.OK]
    errors = Counter(c.error_kind for c in record.chats if c.outcome is Outcome.ERROR)
    counts = tables(text.split("## Chats", 1)[1])[0]
    assert counts[1] == [
        str(len(record.chats)),
        str(len(ok)),
        str(sum(c.outcome is Outcome.SHED for c in record.chats)),
        str(sum(errors.values())),
    ]
    latency = tables(text.split("## Chats", 1)[1])[1]
    by_name = {row[0]: row[1:] for row in latency}
    for name, values in (
        ("time to first token", [c.ttft for c in ok if c.ttft is not None]),
        ("inter-token gap", [g for c in ok for g in c.gaps]),
        ("end to end", [c.e2e for c in ok if c.e2e is not None]),
    ):
        expected = [s(percentile(values, q)) for q in (50, 95, 99)] + [str(len(values))]
        assert by_name[name] == expected, name
    tokens = sum(c.output_tokens for c in ok)
    span = max(c.ended_at for c in ok) - min(c.started_at for c in ok)
    per_chat = percentile([r for c in ok if (r := c.tokens_per_second) is not None], 50)
    assert per_chat is not None
    assert (
        f"Output tokens/s, all chats together (from the first start to the last end): "
        f"{tokens / span:.1f}; per chat, p50: {per_chat:.1f}."
    ) in text
    failures = table_after(text, "Failures by kind:")
    assert failures[cell(EVIL_KIND)] == [str(errors[EVIL_KIND])]
    assert failures["timeout"] == [str(errors["timeout"])]
    served = table_after(text, "Served by pod")
    for pod in {c.pod for c in ok if c.pod}:
        mine = [c for c in ok if c.pod == pod]
        assert served[cell(pod)] == [
            str(len(mine)),
            s(percentile([c.ttft for c in mine if c.ttft is not None], 50)),
        ]


def test_chunks_are_called_chunks(tmp_path: Path) -> None:
    folder = write_report_folder(make_record(usage=False), tmp_path, written_at=START)
    text = (folder / MARKDOWN_NAME).read_text()
    assert "Output chunks/s" in text
    assert "counted as content chunks" in text


def test_recoveries_scaling_and_poster(report: tuple[CockpitRecord, str, Path]) -> None:
    record, text, _ = report
    recovery, refused, removed, still_open = record.recoveries
    rows = table_after(text, "## Recoveries")
    assert rows[removed.pod][:2] == ["delete", "no: replacement removed"]
    assert rows[still_open.pod][:4] == ["evict", "in progress", "n/a", "n/a"]
    assert rows[cell(recovery.pod)] == ["evict", "yes", "6.2 s", "6.9 s", "1", "2", "14"]
    assert rows[cell(refused.pod)][:4] == ["evict", "refused", "n/a", "n/a"]
    for timeline in record.recoveries:
        first, *more = describe(timeline)
        assert f"\n- {cell(first)}\n" in text
        for line in more:
            assert f"\n  - {cell(line)}\n" in text
    scaling = tables(text.split("## Scaling", 1)[1])[0]
    # Only the changes: the first point, 2 -> desired 4, 4 current, 4 ready.
    assert [row[2:] for row in scaling[1:]] == [
        ["2", "2", "2"],
        ["2", "4", "2"],
        ["4", "4", "2"],
        ["4", "4", "4"],
    ]
    assert "The HPA keeps 2 to 6 replicas." in text
    poster = table_after(text, "## Against the poster")
    answered = [h.latency for h in record.healths if h.ok and h.latency is not None]
    assert poster["health check"][1] == f"p50 {ms(percentile(answered, 50))}"
    assert poster["recovery after a pod kill"][1] == "worst 6.2 s to the replacement Ready"
    peak = peak_concurrency(record.chats)
    assert (
        poster["concurrent users"][1] == f"peak {peak} chat{'' if peak == 1 else 's'} open at once"
    )
    assert poster["health check"][2].startswith("no: every hop is loopback")  # a sandbox context
    e2e = [c.e2e for c in record.chats if c.outcome is Outcome.OK and c.e2e is not None]
    assert poster["chat reply"][1] == f"p50 {s(percentile(e2e, 50))} end to end"
    assert all(row[2] for row in poster.values())  # every row says whether it compares


def test_untrusted_text_cannot_break_the_markdown(report: tuple[CockpitRecord, str, Path]) -> None:
    _, text, _ = report
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text)
    assert "<b>" not in text
    for table in tables(text):
        widths = {len(row) for row in table}
        assert len(widths) == 1, table
    # The escaped pod name still reads as itself, on one line, its controls shown as in the UI.
    assert "llm-backend-7f9c-x\\|2k4 \u241b]0;owned\u2407&lt;b>\\`x" in text


def test_cell_escaping() -> None:
    assert cell("a|b") == "a\\|b"
    assert cell("line\nbreak\ttab") == "line break tab"
    assert cell("\x1b[31mred\x9b\u202e") == "\u241b[31mred\ufffd\ufffd"
    assert cell("back\\slash") == "back\\\\slash"


def test_peak_concurrency() -> None:
    def open_between(start: float, end: float) -> ChatSample:
        return ChatSample(start, "load", Outcome.OK, 200, e2e=end - start)

    assert peak_concurrency([]) == 0
    # Back to back is not concurrent; three overlap at 2.5.
    chats = [open_between(0, 1), open_between(1, 2), open_between(1.5, 3), open_between(2, 4)]
    chats.append(open_between(2.5, 2.6))
    assert peak_concurrency(chats) == 3


def test_a_real_cluster_is_not_called_a_sandbox(tmp_path: Path) -> None:
    record = replace(make_record(), context="minikube")
    assert not record.on_sandbox
    assert replace(record, sandbox=True).on_sandbox
    poster = table_after(render(record, START), "## Against the poster")
    assert poster["health check"][2].startswith("no: timed from this terminal")
    assert poster["recovery after a pod kill"][2].startswith("yes in kind: a real cluster")


def test_an_empty_record_still_reports(tmp_path: Path) -> None:
    record = CockpitRecord(START, START + 5, "ctx", "ns", "http://127.0.0.1:8000")
    text = (write_report_folder(record, tmp_path, written_at=START) / MARKDOWN_NAME).read_text()
    assert "No pod was killed." in text
    assert "No replica counts were recorded." in text
    assert table_after(text, "## Health checks")["p50"] == ["n/a"]


def test_an_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(ReportError, match=r"cannot write the report in .*not-a-folder"):
        write_report_folder(make_record(), blocker / "reports")


def test_figures_are_plain_data_for_a_json_report() -> None:
    record = make_record()
    numbers = figures(record)
    # A JSON report stores the samples and the figures side by side; both must round-trip.
    stored = json.loads(json.dumps({"record": asdict(record), "figures": asdict(numbers)}))
    assert stored["figures"]["chats"]["requests"] == len(record.chats)
    assert stored["figures"]["health"]["failures_by_kind"] == [["connect", 1], ["http_503", 1]]
    assert stored["figures"]["worst_recovery_seconds"] == pytest.approx(6.2)
    assert len(stored["record"]["chats"]) == len(record.chats)


# -- the report folder and its JSON (issue 10) ---------------------------------------------


def test_the_json_holds_the_samples_and_their_figures_recompute_from_it() -> None:
    record = replace(
        make_record(), phases=(LoadPhase("sustained", 8, START + 90, START + 112, "eight"),)
    )
    data = json.loads(json.dumps(record_json(record, {"scenario": {"name": "x"}})))
    assert data["format"] == FORMAT
    assert data["scenario"] == {"name": "x"}
    again = record_from_json(data)
    assert again == record
    assert json.loads(json.dumps(asdict(figures(again)))) == data["figures"]


def test_a_json_that_is_not_a_report_is_refused_in_words() -> None:
    data = record_json(make_record())
    with pytest.raises(ReportJsonError, match="format"):
        record_from_json({**data, "format": "other"})
    broken = json.loads(json.dumps(data))
    broken["record"]["chats"][3]["outcome"] = "maybe"
    with pytest.raises(ReportJsonError, match=r"record\.chats\[3\]\.outcome: 'maybe'"):
        record_from_json(broken)
    broken = json.loads(json.dumps(data))
    broken["record"]["healths"] = {"not": "a list"}
    with pytest.raises(ReportJsonError, match=r"record\.healths: expected a list"):
        record_from_json(broken)


def test_phase_figures_follow_the_replica_points_and_the_chats() -> None:
    base = make_record()
    # The make_record HPA: 2 replicas, wants 4 at +100, has them at +101, all Ready at +110;
    # here it also wants 2 again at +150 and is back at 2 at +165.
    replicas = (
        *base.replicas,
        ReplicaPoint(START + 150, 4, 2, 4),
        ReplicaPoint(START + 165, 2, 2, 2),
    )
    clean = LoadPhase("sustained", 8, START + 90, START + 112, "eight")
    messy = LoadPhase("burst", 12, START + 0, START + 600)
    record = replace(base, replicas=replicas, phases=(clean, messy))
    numbers = figures(record)
    first, second = numbers.phases
    assert first.replicas_at_start == 2
    assert first.desired_up_after_start == pytest.approx(10.0)
    assert first.scaled_up_to == 4
    assert first.ready_after_start == pytest.approx(20.0)
    assert first.desired_down_after_stop == pytest.approx(38.0)
    assert first.back_to_min_after_stop == pytest.approx(53.0)
    for phase, numbers_of in ((clean, first), (messy, second)):
        assert phase.ended_at is not None
        mine = [
            c
            for c in record.chats
            if c.origin == "load" and phase.started_at <= c.started_at <= phase.ended_at
        ]
        assert numbers_of.chats == len(mine)
        assert numbers_of.ok == sum(1 for c in mine if c.outcome is Outcome.OK)
        assert numbers_of.failed == sum(1 for c in mine if c.outcome is Outcome.ERROR)
        assert numbers_of.shed == sum(1 for c in mine if c.outcome is Outcome.SHED)
    # The whole run had failures; the short phase did not.
    assert second.failed > 0
    assert first.failed == 0
    assert first.ok > 0
    assert numbers.most_users_without_failure == 8
    text = render(record, START + 601)
    rows = table_after(text, "## Load phases and scaling reaction")
    assert rows["eight"][:2] == ["8", "22 s"]
    assert rows["eight"][6:] == ["10.0 s", "4", "20.0 s", "38.0 s", "53.0 s"]
    poster = table_after(text, "## Against the poster")
    assert poster["concurrent users"][1].startswith("8 users served without failure")


def test_the_report_folder_holds_markdown_json_and_the_chart(tmp_path: Path) -> None:
    record = replace(make_record(), phases=(LoadPhase("burst", 10, START + 5, START + 60),))
    folder = write_report_folder(
        record, tmp_path / "r", written_at=START + 601, preface=["**verdict: PASS**"],
        extra={"scenario": {"passed": True}},
    )  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(START + 601))
    assert folder == tmp_path / "r" / f"kube-llm-report-{stamp}"
    assert sorted(p.name for p in folder.iterdir()) == ["report.json", "report.md", "timeline.png"]
    markdown = (folder / "report.md").read_text()
    assert markdown.startswith("# kube-llm report\n\n![latency and replicas over time]")
    assert "**verdict: PASS**" in markdown
    data = json.loads((folder / "report.json").read_text())
    assert data["scenario"] == {"passed": True}
    assert record_from_json(data) == record
    again = write_report_folder(record, tmp_path / "r", written_at=START + 601)
    assert again.name == f"kube-llm-report-{stamp}-2"


def test_kube_llm_report_rewrites_a_folder_from_its_json(tmp_path: Path) -> None:
    record = replace(make_record(), phases=(LoadPhase("burst", 10, START + 5, START + 60),))
    first = write_report_folder(record, tmp_path / "a", written_at=START + 601)
    assert main(["report", str(first / "report.json"), "--report-dir", str(tmp_path / "b")]) == 0
    (second,) = (tmp_path / "b").iterdir()
    old = json.loads((first / "report.json").read_text())
    new = json.loads((second / "report.json").read_text())
    assert new == old
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    assert main(["report", str(junk)]) == 2
