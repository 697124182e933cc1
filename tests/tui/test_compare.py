"""The side-by-side report of `kube-llm scenario compare` (issue 18 item 5): each column is the
run's own figures, the table has every measure the issue asks for, and the chart is drawn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tui.cli.main import main
from tui.core.figures import CockpitRecord, LoadPhase, figures
from tui.core.model import ChatSample, Outcome, ReplicaPoint
from tui.report.compare import column, compare_rows, draw_compare, load_start, render_compare

START = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[2]


def run(*, ttft: float, scale_at: float | None, pods_up: int) -> CockpitRecord:
    """A 200 s record: quiet for 20 s, load from +20 to +120, ten chats, maybe a scale-up."""
    replicas = [ReplicaPoint(START, 2, 2, 2, pods=2)]
    if scale_at is not None:
        replicas += [
            ReplicaPoint(START + scale_at, 2, pods_up, 2, pods=pods_up),
            ReplicaPoint(START + 150, 2, 2, 2, pods=2),
        ]
    chats = [
        ChatSample(
            started_at=START + 20 + i * 10,
            origin="load",
            outcome=Outcome.OK if i < 9 else Outcome.SHED,
            status=200 if i < 9 else 429,
            ttft=ttft * (1 + i / 10) if i < 9 else None,
            e2e=ttft * 3 if i < 9 else None,
        )
        for i in range(10)
    ]
    return CockpitRecord(
        started_at=START,
        ended_at=START + 200,
        context="kube-llm-sandbox-cockpit",
        namespace="kube-llm",
        backend="service proxy via the API server",
        chats=tuple(chats),
        replicas=tuple(replicas),
        phases=(LoadPhase("sustained", 6, START + 20, START + 120),),
    )


def test_each_column_is_the_runs_own_figures() -> None:
    record = run(ttft=1.0, scale_at=35.0, pods_up=4)
    numbers = figures(record)
    mine = column(record)
    assert load_start(record) == START + 20
    assert mine.ttft_p50 == numbers.chats.ttft.p50
    assert mine.ttft_p95 == numbers.chats.ttft.p95
    assert mine.e2e_p95 == numbers.chats.end_to_end.p95
    assert (mine.chats_ok, mine.failed, mine.shed) == (9, 0, 1)
    assert mine.first_added_replica == pytest.approx(15.0)
    assert mine.back_to_minimum == numbers.phases[0].back_to_min_after_stop
    assert numbers.cost is not None
    # 2 pods for 35 s, 4 for 115 s, 2 for 50 s
    used = 2 * 35 + 4 * 115 + 2 * 50
    assert mine.replica_seconds == pytest.approx(used)
    assert mine.replica_seconds_per_chat == pytest.approx(used / 9)


def test_the_table_has_a_column_per_run_and_every_measure(tmp_path: Path) -> None:
    runs = {
        "cpu": run(ttft=2.0, scale_at=None, pods_up=2),
        "queue": run(ttft=1.0, scale_at=35.0, pods_up=3),
    }
    columns = {name: column(record) for name, record in runs.items()}
    rows = {row[0]: row[1:] for row in compare_rows(columns)}
    assert rows["load start to first added replica"] == ["not seen", "15.0 s"]
    assert rows["replica-seconds"] == ["400", f"{2 * 35 + 3 * 115 + 2 * 50:.0f}"]
    assert rows["shed (429)"] == ["1", "1"]
    for measure in (
        "TTFT p50",
        "TTFT p95",
        "end to end p95",
        "failed",
        "load stop to back at the minimum",
    ):
        assert len(rows[measure]) == 2
    text = render_compare(
        "autoscalers",
        columns,
        [("date", "today"), ("load average", "1.00, 1.00, 1.00 (2 CPUs)")],
        {"cpu": tmp_path / "a", "queue": tmp_path / "b"},
    )
    assert "| measure | cpu | queue |" in text
    assert "| load average | 1.00, 1.00, 1.00 (2 CPUs) |" in text
    chart = draw_compare(runs, tmp_path / "compare.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_autoscalers_are_refused_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scenario", "compare", "scenarios/autoscalers.yaml", "--autoscalers", "cpu,gpu"])
    assert code == 2
    assert "--autoscalers takes names from cpu, queue, not gpu" in capsys.readouterr().err


SHORT = """\
name: short
description: a short side-by-side run on the fake engine
settings: {max_tokens: 16, ready_timeout: 120}
steps:
  - wait_for: {ready_pods: 2, within: 120}
  - sleep: 3
  - burst: {users: 6, chats_per_user: 2}
  - sustained: {users: 6, duration: 15}
  - sleep: 15
  - stop_load: {}
  - wait_for: {replicas_at_most: 2, within: 90}
"""


@pytest.mark.slow(reason="two fresh sandboxes, one per autoscaler, under load")
def test_compare_runs_each_autoscaler_on_its_own_sandbox(tmp_path: Path) -> None:
    """`kube-llm scenario compare` end to end on the fake engine: two sandboxes one after the
    other, a report per run and one with both columns; no process left behind."""
    scenario = tmp_path / "short.yaml"
    scenario.write_text(SHORT)
    engine = (
        "--sandbox-arg=--engine-cmd=python -m tests.fakes.engine --host 127.0.0.1 --port {port}"
        " --model {model} --busy-ms-per-token 1 --token-delay 0.1 --tokens 16"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui",
            "scenario",
            "compare",
            str(scenario),
            "--hpa-sync-seconds",
            "3",
            "--state-dir",
            str(tmp_path / "state"),
            "--report-dir",
            str(tmp_path / "reports"),
            engine,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| measure | cpu | queue |" in done.stdout
    folders = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert [f.rsplit("-", 2)[0] for f in folders] == [
        "kube-llm-compare",
        "kube-llm-compare-cpu",
        "kube-llm-compare-queue",
    ]
    compare = next((tmp_path / "reports").glob("kube-llm-compare-2*"))
    assert (compare / "compare.png").stat().st_size > 0
    queue_report = next((tmp_path / "reports").glob("kube-llm-compare-queue-*")) / "report.md"
    assert "in flight + waiting" in queue_report.read_text()
    for state in ("cpu", "queue"):
        assert not (tmp_path / "state" / state / "kubeconfig").exists()


def test_a_replica_added_after_the_burst_ended_still_counts() -> None:
    """The HPA may react only once the next phase runs: the first load phase's own reaction
    time is then "not seen", the run's is not."""
    record = run(ttft=1.0, scale_at=35.0, pods_up=4)
    burst = LoadPhase("burst", 8, START + 20, START + 30)
    sustained = LoadPhase("sustained", 6, START + 30, START + 120)
    record = CockpitRecord(**{**record.__dict__, "phases": (burst, sustained)})
    assert figures(record).phases[0].desired_up_after_start is None
    assert column(record).first_added_replica == pytest.approx(15.0)
    quiet = CockpitRecord(**{**record.__dict__, "replicas": record.replicas[:1]})
    assert column(quiet).first_added_replica is None
