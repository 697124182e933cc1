"""Scenarios on a fresh sandbox: `within: auto` reads the metrics resolution again once
metrics-server has measured the new pods.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sandbox.harness import fake_engine_cmd, start_sandbox
from tests.tui.scenario_runs import run, scenario_file

pytestmark = pytest.mark.slow(
    reason="starts a sandbox of its own and waits out a 40 s metrics resolution"
)


def test_auto_reads_the_resolution_again_once_the_pods_have_metrics(tmp_path: Path) -> None:
    """A run that starts before metrics-server (here every 40 s) has measured the new pods
    assumes Minikube's 60 s, then reads the pods' windows when it needs the bound (a pod's
    first window runs from its start, as metrics-server's does)."""
    fresh = start_sandbox(
        tmp_path / "fresh",
        "--hpa-sync-seconds", "1", "--metrics-resolution-seconds", "40",
        engine_cmd=fake_engine_cmd(),
    )  # fmt: skip
    try:
        scenario = scenario_file(
            tmp_path,
            "name: fresh\n"
            "steps:\n"
            "  - sleep: 45\n"
            "  - wait_for: {replicas_at_most: 2, within: auto}\n",
        )
        code, data, stderr = run(fresh, scenario, tmp_path)
        assert code == 0, (data, stderr)
        assert any("metrics resolution 60 s: assumed" in line for line in data["bounds"])
        again = [line for line in data["bounds"] if line.startswith("read again: metrics")]
        assert len(again) == 1, data["bounds"]
        assert again[0].endswith("s: the pods' metrics.k8s.io windows")
    finally:
        assert fresh.stop() == 0
