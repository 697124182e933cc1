"""Issue 14 item 3: the scenario runner's `rollout_restart` step judges the rollout from the
Deployment's status (the kmock fixtures' shapes, converted as the watcher converts them), over
a scripted cluster: an evicted leftover pod does not hold a finished rollout open, a status the
watch shows before the restart's generation does not count, and a rollout past its progress
deadline fails the step at once with the reason."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from tests.tui.k8s_objects import DEPLOYMENT_ROLLED_OUT, DEPLOYMENT_STUCK, EVICTED, running_pod
from tests.tui.scripted import NAMESPACE, ScriptedCluster, ScriptedGateway, snapshot
from tui.cluster.convert import deployment_view, pod_view
from tui.core.model import ClusterSnapshot, DeploymentView
from tui.core.settings import CockpitSettings
from tui.scenario.runner import ScenarioRunner
from tui.scenario.spec import parse_scenario
from tui.services.session import Session

DONE = deployment_view(DEPLOYMENT_ROLLED_OUT)  # generation 4, observed 4, rolled out
NEW_GENERATION = 5
"""The Deployment's generation after the restart's PATCH (what its response says)."""


class QuietSink:
    """A session sink that keeps nothing (the runner reads the session itself)."""

    def snapshot(self, snapshot: ClusterSnapshot) -> None:
        """Nothing to show."""

    def cluster_event(self, event: object) -> None:
        """Nothing to show."""

    def backend_metrics(self, metrics: object) -> None:
        """Nothing to show."""

    def recovery(self, timeline: object) -> None:
        """Nothing to show."""

    def note(self, text: str, severity: str = "information") -> None:
        """Nothing to show."""


class StagedRollout:
    """Stands in for `DeploymentControl` (tui/cluster/rollout.py): `restart` answers what the
    PATCH answers (the stamp and the new generation), then the scripted cluster shows the
    rollout's stages one after another, as the watch would."""

    def __init__(self, cluster: ScriptedCluster, stages: list[ClusterSnapshot]) -> None:
        self.cluster = cluster
        self.stages = stages
        self.shown: list[ClusterSnapshot] = []

    async def restart(self, at: float | None = None) -> tuple[str, int]:
        asyncio.get_running_loop().create_task(self._show())
        return "2026-01-10T09:30:00Z", NEW_GENERATION

    async def _show(self) -> None:
        for stage in self.stages:
            await asyncio.sleep(0.25)
            self.cluster.push(stage)
            self.shown.append(stage)


def stage(deployment: DeploymentView, leftover: bool = True) -> ClusterSnapshot:
    pods = [pod_view(running_pod(s)) for s in ("aaaaa", "bbbbb", "ccccc")]
    if leftover:
        pods.append(pod_view(EVICTED))
    return snapshot(*pods, deployment=deployment)


async def run_restart(stages: list[ClusterSnapshot], within: float) -> tuple[bool, str, float]:
    clusters: list[ScriptedCluster] = []

    def cluster(on_snapshot, on_event):  # type: ignore[no-untyped-def]
        made = ScriptedCluster(on_snapshot, on_event, stage(DONE))
        clusters.append(made)
        return made

    session = Session(CockpitSettings(namespace=NAMESPACE), QuietSink(), cluster, ScriptedGateway())
    clusters[0].push(stage(DONE))
    text = f"name: restart\nsteps:\n  - rollout_restart: {{within: {within}}}\n"
    scenario = parse_scenario(text, Path("restart.yaml"))
    control = StagedRollout(clusters[0], stages)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await ScenarioRunner(scenario, session, control).run()  # type: ignore[arg-type]
    [verdict] = result.verdicts
    return verdict.held, verdict.detail, loop.time() - started


async def test_an_evicted_leftover_does_not_hold_the_step_open() -> None:
    observed = dataclasses.replace(DONE, generation=NEW_GENERATION)
    stages = [
        stage(DONE),  # the watch still shows the old status: not this rollout's
        stage(observed),  # not yet observed (observedGeneration 4 < 5)
        stage(dataclasses.replace(observed, observed_generation=5, updated_replicas=1)),
        stage(
            dataclasses.replace(
                observed, observed_generation=5, updated_replicas=3, status_replicas=3
            )
        ),
    ]
    held, detail, took = await run_restart(stages, within=20)
    assert held, detail
    assert detail.startswith("3 pods replaced, all Ready, in ")
    assert took >= 0.9  # it waited for the last stage, not the stale first one


async def test_a_stuck_rollout_fails_the_step_at_once_with_the_reason() -> None:
    stuck = deployment_view(DEPLOYMENT_STUCK)  # generation 5, ProgressDeadlineExceeded
    stages = [stage(DONE), stage(stuck)]
    held, detail, took = await run_restart(stages, within=60)
    assert not held
    assert detail == (
        'the rollout failed: deployment "llm-backend" exceeded its progress deadline: '
        'ReplicaSet "llm-backend-6b8d9c7f4" has timed out progressing.'
    )
    assert took < 30  # long before `within` ran out (a generous sanity limit)


async def test_a_rollout_that_does_not_finish_says_where_it_stands() -> None:
    waiting = dataclasses.replace(
        DONE, generation=5, observed_generation=5, updated_replicas=3, status_replicas=4
    )
    held, detail, _ = await run_restart([stage(waiting)], within=1.5)
    assert not held
    assert detail == (
        'not rolled out within 1.5 s: Waiting for deployment "llm-backend" rollout to finish: '
        "1 old replicas are pending termination..."
    )
