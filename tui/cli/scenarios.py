"""What `kube-llm scenario run` adds around each run: the HPA's timing, the plan's bounds, and
one summary when several files run in order."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

from tui.cluster.hpa_timing import HpaTimingError, read_hpa_timing
from tui.cluster.kubeconfig import ClusterTarget
from tui.core.hpa_timing import (
    KUBERNETES_SYNC_SECONDS,
    MINIKUBE_METRICS_RESOLUTION_SECONDS,
    HpaTiming,
)
from tui.core.settings import CockpitSettings
from tui.headless.terminal import HeadlessError, load_cluster
from tui.scenario.bounds import plan_lines
from tui.scenario.spec import AUTO, Scenario

__all__ = [
    "Outcome",
    "dry_run_bounds",
    "read_timing",
    "summary_lines",
    "uses_auto",
]

_DRY_RUN_TIMEOUT = 5.0


def uses_auto(scenario: Scenario) -> bool:
    """Whether a wait or an expectation of the scenario takes `within: auto`."""
    return any(e.get("within") == AUTO for e in (*scenario.steps, *scenario.expectations))


async def read_timing(
    parsed: argparse.Namespace, target: ClusterTarget, hpa: str, request_timeout: float = 15.0
) -> HpaTiming:
    """The live HPA's timing with the flags' sync period and resolution."""
    return await read_hpa_timing(
        target,
        hpa,
        sync_seconds=parsed.hpa_sync_seconds or KUBERNETES_SYNC_SECONDS,
        sync_given=parsed.hpa_sync_seconds is not None,
        resolution_seconds=parsed.metrics_resolution_seconds,
        request_timeout=request_timeout,
    )


def dry_run_bounds(
    parsed: argparse.Namespace, settings: CockpitSettings, scenario: Scenario
) -> list[str]:
    """The bounds `--dry-run` shows: from the live HPA if the cluster answers, else from
    Kubernetes' defaults, saying so."""
    try:
        target = load_cluster(settings)
        timing = asyncio.run(read_timing(parsed, target, settings.deployment, _DRY_RUN_TIMEOUT))
    except (HeadlessError, HpaTimingError) as error:
        sync = parsed.hpa_sync_seconds or KUBERNETES_SYNC_SECONDS
        resolution = parsed.metrics_resolution_seconds or MINIKUBE_METRICS_RESOLUTION_SECONDS
        timing = HpaTiming.from_spec(
            {"minReplicas": 2, "maxReplicas": 6, "behavior": {}},
            sync,
            resolution,
            (
                f"no HPA read ({error}): assumed Kubernetes' default behaviour (scale down after "
                f"300 s, 100 % per 15 s; up 4 pods or 100 % per 15 s), 2-6 replicas, sync "
                f"{sync:g} s, metrics every {resolution:g} s",
            ),
        )
    return plan_lines(scenario, timing)


@dataclass(frozen=True)
class Outcome:
    """One file's run, for the summary."""

    file: str
    name: str
    result: str
    held: int
    verdicts: int
    seconds: float


def summary_lines(outcomes: list[Outcome]) -> list[str]:
    """The table after several scenarios: one row each, and the total."""
    width = max(len(o.file) for o in outcomes)
    lines = [f"{'file':<{width}}  {'scenario':<20} {'result':<11} held   took"]
    for o in outcomes:
        lines.append(
            f"{o.file:<{width}}  {o.name[:20]:<20} {o.result:<11} "
            f"{o.held:>2}/{o.verdicts:<3} {o.seconds:>5.0f} s"
        )
    passed = sum(1 for o in outcomes if o.result == "passed")
    lines.append(f"{passed} of {len(outcomes)} scenarios passed")
    return lines
