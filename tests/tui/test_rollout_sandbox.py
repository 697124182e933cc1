"""Issue 14 item 3 on the sandbox (fake engine): a rollout that cannot progress fails the
scenario's rollout step with `ProgressDeadlineExceeded` and its reason, as soon as the
Deployment says so, instead of running out its `within` in silence; kubectl agrees."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.harness import NAMESPACE, RunningSandbox, fake_engine_cmd, start_sandbox
from tests.tui.scenario_runs import ADMIN_CONTEXT, run, scenario_file

pytestmark = pytest.mark.slow(
    reason="a live sandbox whose rollout must exceed its progress deadline"
)

NEVER_READY = {
    "spec": {
        "progressDeadlineSeconds": 4,
        "template": {
            "spec": {
                "containers": [
                    {"name": "backend", "readinessProbe": {"httpGet": {"path": "/no-such-probe"}}}
                ]
            }
        },
    }
}
"""A template whose pods never turn Ready (the backend answers 404 to the probe), and a short
progress deadline."""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(tmp_path_factory.mktemp("stuck"), engine_cmd=fake_engine_cmd())
    yield running
    assert running.stop() == 0


def test_a_stuck_rollout_fails_the_step_with_its_reason(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    patch = sandbox.kubectl(
        "patch", "deployment/llm-backend", "-n", NAMESPACE, "-p", json.dumps(NEVER_READY)
    )
    assert patch.returncode == 0, patch.stderr
    status = sandbox.kubectl(
        "rollout", "status", "deployment/llm-backend", "-n", NAMESPACE, "--timeout=60s", timeout=70
    )
    assert status.returncode != 0
    assert 'deployment "llm-backend" exceeded its progress deadline' in status.stderr
    # The old pods still serve (maxUnavailable 25 % of 2 is 0), so the restart can be tried.
    scenario = scenario_file(tmp_path, "name: stuck\nsteps:\n  - rollout_restart: {within: 120}\n")
    started = time.monotonic()
    code, data, stderr = run(sandbox, scenario, tmp_path, context=ADMIN_CONTEXT)
    took = time.monotonic() - started
    assert code == 1, (data, stderr)
    [step] = data["verdicts"]
    assert not step["held"]
    assert step["detail"].startswith(
        'the rollout failed: deployment "llm-backend" exceeded its progress deadline: '
        'ReplicaSet "llm-backend-'
    )
    assert step["detail"].endswith('" has timed out progressing.')
    assert took < 100  # well before the step's 120 s ran out (a generous sanity limit)
