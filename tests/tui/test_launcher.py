"""`kube-llm demo`'s launcher: the real sandbox as a child process, started and stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from tests.sandbox.harness import ROOT, fake_engine_cmd, wait_for
from tui.launcher import SandboxFailed, SandboxLauncher

pytestmark = pytest.mark.slow


def family(pid: int) -> list[psutil.Process]:
    """A process and everything it started."""
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def test_the_sandbox_starts_reports_progress_and_stops_with_nothing_left(tmp_path: Path) -> None:
    launcher = SandboxLauncher(
        tmp_path / "state", ["--engine-cmd", fake_engine_cmd(busy_ms_per_token=0)], cwd=ROOT
    )
    launcher.start()
    progress: list[str] = []
    try:
        kubeconfig = asyncio.run(launcher.wait_ready(progress.append, limit=60))
        assert kubeconfig == tmp_path / "state" / "kubeconfig"
        assert "current-context" in kubeconfig.read_text()
        assert progress, "the wait reports progress while the sandbox starts"
        assert launcher.process is not None
        pid = launcher.process.pid
        # The pods' engines and backends start as the sandbox's children.
        wait_for(lambda: len(family(pid)) >= 5, 60, "the pods' processes")
        started = family(pid)
    finally:
        code = launcher.stop()
    assert code == 0, launcher.output_tail()
    left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == []
    assert "stopped; no process left behind" in launcher.output_tail()


def test_a_sandbox_that_fails_says_why(tmp_path: Path) -> None:
    launcher = SandboxLauncher(
        tmp_path / "state", ["--overlay", str(tmp_path / "no-such-overlay")], cwd=ROOT
    )
    launcher.start()
    with pytest.raises(SandboxFailed) as failure:
        asyncio.run(launcher.wait_ready(lambda _: None, limit=60))
    message = str(failure.value)
    assert "exited with code" in message
    assert "no-such-overlay" in message, message
    assert launcher.stop() not in (None, 0)


def test_a_sandbox_too_slow_to_get_ready_is_reported(tmp_path: Path) -> None:
    launcher = SandboxLauncher(
        tmp_path / "state", ["--engine-cmd", fake_engine_cmd(busy_ms_per_token=0)], cwd=ROOT
    )
    launcher.start()
    try:
        with pytest.raises(SandboxFailed, match="not ready after"):
            asyncio.run(launcher.wait_ready(lambda _: None, limit=0.5))
    finally:
        launcher.stop(grace=5)
