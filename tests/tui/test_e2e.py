"""The cockpit end to end: the real app, services and Kubernetes client on a real sandbox.

The sandbox runs the fake engine (a slow real model has no place in a test budget); the cockpit
acts as its ServiceAccount (context `kube-llm-sandbox-cockpit`, exactly the Role in the
manifests, T6), through the same `session_for` the CLI uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.sandbox.harness import RunningSandbox, fake_engine_cmd, start_sandbox
from tests.tui.test_app import wait_until
from tui.cluster.kubeconfig import load_target
from tui.cockpit.app import CockpitApp, make_cockpit
from tui.cockpit.widgets import EventLog, LatencyPanel, PodsTable
from tui.core.settings import CockpitSettings
from tui.services.connect import DEMO_CONTEXT, session_for
from tui.services.session import Session, SessionSink

pytestmark = pytest.mark.slow(
    reason="a sandbox for the module; the cockpit waits for pods and the HPA"
)
SIZE = (160, 48)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A sandbox whose engines burn CPU per token, so load moves the HPA; HPA sync every 1 s."""
    running = start_sandbox(
        tmp_path_factory.mktemp("cockpit-e2e"),
        "--hpa-sync-seconds",
        "1",
        engine_cmd=fake_engine_cmd(busy_ms_per_token=8, tokens=16, token_delay=0.01),
    )
    yield running
    assert running.stop() == 0


def cockpit(sandbox: RunningSandbox, tmp_path: Path, **settings: object) -> CockpitApp:
    """The cockpit on the sandbox's kubeconfig, as `kube-llm tui --context ...` builds it."""
    chosen = CockpitSettings(report_dir=tmp_path / "reports", **settings)  # type: ignore[arg-type]
    target = load_target(sandbox.kubeconfig, DEMO_CONTEXT, None)
    assert target.sandbox

    async def connect(
        settings: CockpitSettings, sink: SessionSink, progress: Callable[[str], None]
    ) -> Session:
        return session_for(target, settings, sink)

    return make_cockpit(chosen, connect)


def ready_rows(app: CockpitApp) -> list[str]:
    """Pods the table shows Ready (READY n/n and Running), not terminating."""
    table = app.query_one(PodsTable)
    rows = []
    for key in table.row_names:
        cells = [cell.plain for cell in table.cells(key)]
        ready, total = cells[1].split("/")
        if ready == total and cells[2] == "Running" and not cells[0].startswith("✖"):
            rows.append(key)
    return rows


def log_text(app: CockpitApp) -> str:
    """The event log's text."""
    return "\n".join(strip.text for strip in app.query_one(EventLog).lines)


async def test_k_evicts_and_the_recovery_is_timed(sandbox: RunningSandbox, tmp_path: Path) -> None:
    app = cockpit(sandbox, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(ready_rows(app)) >= 2, timeout=30)
        before = set(ready_rows(app))
        await pilot.press("down", "k")
        victim = app.query_one(PodsTable).selected_pod
        assert victim in before
        table = app.query_one(PodsTable)
        # The pod leaves: terminating first, then gone; the replacement comes up Ready.
        await wait_until(
            pilot,
            lambda: (
                victim not in set(table.row_names) or table.cells(victim)[0].plain.startswith("✖")
            ),
            timeout=20,
        )
        await wait_until(
            pilot,
            lambda: victim not in set(table.row_names) and len(set(ready_rows(app)) - before) >= 1,
            timeout=60,
        )
        # A chat to reach the replacement; the timeline completes and is logged with every moment.
        await pilot.press("c", *"hello", "enter")
        await wait_until(pilot, lambda: f"{victim} evicted at" in log_text(app), timeout=60)
        # The log wraps lines at the panel's width: compare with the whitespace made plain.
        line = " ".join(log_text(app).split(f"{victim} evicted at", 1)[1].split())
        for moment in ("terminating +", "left endpoints +", "created +", "started +", "Ready +"):
            assert moment in line, line
        session = app.session
        assert session is not None
        timeline = session.tracker.completed[-1]
        assert timeline.pod == victim
        assert timeline.replacement is not None
        assert timeline.replacement not in before
        assert timeline.recovery_seconds is not None
        assert 0 < timeline.recovery_seconds < 60
        assert timeline.failed_requests == 0


async def test_burst_fills_the_latency_panel_and_the_hpa_scales_up(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    app = cockpit(sandbox, tmp_path, sustained_users=6)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(ready_rows(app)) >= 2, timeout=60)
        session = app.session
        assert session is not None
        await pilot.press("l")
        await wait_until(pilot, lambda: session.recorder.summary(60).ok >= 30, timeout=90)
        app._refresh_panels()
        numbers = str(app.query_one("#latency-numbers").render())
        assert "TTFT   p50 -" not in numbers
        assert "30 ok" in numbers or session.recorder.summary(60).ok > 30
        summary = session.recorder.summary(60)
        assert summary.ttft_p50 is not None
        assert summary.health_p50 is not None
        assert len(summary.served_by) >= 2, "the Service spreads chats over both pods"
        assert app.query_one(LatencyPanel) is not None
        # Sustained load keeps the engines busy until the HPA asks for more pods, and the panel
        # says why. The burst alone may already have scaled up and left the HPA in its scale-down
        # window ("wants 3, keeps 4"), a true line but not this one: wait for the load's.
        await pilot.press("L")
        why = ""

        def explained_scaling_up() -> bool:
            nonlocal why
            hpa = session.snapshot.hpa
            if hpa is None or hpa.desired_replicas <= 2:
                return False
            app._refresh_panels()
            why = str(app.query_one("#hpa-why").render())
            return any(word in why for word in ("scaling up", "holding", "at maximum"))

        try:
            await wait_until(pilot, explained_scaling_up, timeout=120)
        except AssertionError as error:
            raise AssertionError(f"no scale-up explained; the panel said {why!r}") from error
        assert max(point.desired for point in session.replicas) > 2
        await pilot.press("q")
    assert session.load_status.sustained_users == 0
