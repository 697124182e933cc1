"""`kube-llm demo`'s launcher: the real sandbox as a child process, started and stopped."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx2
import psutil
import pytest

from tests.sandbox.harness import ROOT, fake_engine_cmd, wait_for
from tui.services.launcher import SandboxFailed, SandboxLauncher

pytestmark = pytest.mark.slow(reason="starts and stops whole sandboxes")


def family(pid: int) -> list[psutil.Process]:
    """A process and everything it started."""
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def answers(url: str) -> bool:
    """Whether the web cockpit answers its readiness path."""
    try:
        return httpx2.get(f"{url}readyz", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


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
        # The banner gives the frontend Service's address, which `kube-llm demo` shows; it
        # answers once a frontend pod is Ready.
        web = launcher.web_url()
        assert web is not None, launcher.output_tail()
        assert web.startswith("http://127.0.0.1:"), web
        wait_for(lambda: answers(web), 60, "the web cockpit at the Service's address")
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


PARENT = """
import asyncio, sys, time
from pathlib import Path
from tui.services.launcher import SandboxLauncher
launcher = SandboxLauncher(Path(sys.argv[1]), sys.argv[2:], cwd=Path.cwd())
launcher.start()
asyncio.run(launcher.wait_ready(lambda _: None, limit=60))
print(launcher.process.pid, flush=True)
time.sleep(600)
"""


def test_a_demo_killed_outright_leaves_no_sandbox_behind(tmp_path: Path) -> None:
    """`--stop-with-parent`: a cockpit killed with SIGKILL (or a closed terminal) cannot stop
    its sandbox, so the sandbox stops itself once its parent has gone."""
    args = [
        str(tmp_path / "state"),
        "--engine-cmd",
        fake_engine_cmd(busy_ms_per_token=0),
        "--stop-with-parent",
    ]
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        sandbox_pid = int(parent.stdout.readline())
        wait_for(lambda: len(family(sandbox_pid)) >= 5, 60, "the pods' processes")
        started = family(sandbox_pid)
        parent.kill()
        parent.wait()

        def all_gone() -> bool:
            return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in started)

        wait_for(all_gone, 45, "the orphaned sandbox and its pods to stop")
    finally:
        parent.kill()
        for process in family(parent.pid):
            process.kill()
