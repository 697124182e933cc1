"""`kube-llm scenario compare FILE`: the same scenario once per autoscaler, each on a fresh
local sandbox started with `--autoscaler NAME`, then one report with a column per run.

Each run starts its own `python -m sandbox` (the same overlay but for the HPA, the same HPA sync
period, the same engine), waits for it as `kube-llm demo` does, runs the scenario's steps through
the cockpit's context exactly as `scenario run` would, writes that run's own report folder, and
stops the sandbox before the next run starts, so the runs share the machine but never at once.
The machine's load average is read before and after each run: the numbers mean little without it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from pathlib import Path

from tui.cli.package import SANDBOX_AUTOSCALERS
from tui.cluster.hpa_timing import HpaTimingError, read_hpa_timing
from tui.cluster.kubeconfig import KubeconfigError, load_target
from tui.cluster.rollout import DeploymentControl
from tui.core.figures import CockpitRecord
from tui.core.hpa_timing import HpaTiming
from tui.core.settings import CockpitSettings
from tui.headless.terminal import HeadlessError, HeadlessSink, headless_session
from tui.report.compare import CHART_NAME, column, draw_compare, render_compare
from tui.report.writer import ReportError, write_report_folder
from tui.scenario.runner import ScenarioResult, ScenarioRunner
from tui.scenario.spec import Scenario, ScenarioError, load_scenario
from tui.services.chaos import RecoveryTracker
from tui.services.connect import DEMO_CONTEXT
from tui.services.launcher import SandboxFailed, SandboxLauncher
from tui.services.load import LoadError


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} CPUs)"


async def run_on_sandbox(
    scenario: Scenario,
    settings: CockpitSettings,
    launcher: SandboxLauncher,
    sync_seconds: float,
) -> ScenarioResult:
    """Start the sandbox, run the scenario on it through the cockpit's context, stop it."""

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    launcher.start()
    try:
        kubeconfig = await launcher.wait_ready(say)
        try:
            target = load_target(kubeconfig, DEMO_CONTEXT, None)
        except KubeconfigError as error:
            raise SandboxFailed(f"the sandbox's kubeconfig cannot be used: {error}") from None
        async with headless_session(
            settings, target, HeadlessSink(quiet=True), ready_timeout=scenario.ready_timeout
        ) as session:
            session.tracker = RecoveryTracker(first_chat_wait=scenario.first_chat_wait)
            control = DeploymentControl(target, settings.deployment)

            async def timing() -> HpaTiming:
                # The sandbox runs with this sync period; the resolution is read from its metrics.
                return await read_hpa_timing(
                    target, settings.deployment, sync_seconds=sync_seconds, sync_given=True
                )

            runner = ScenarioRunner(
                scenario,
                session,
                control,
                log=say,
                clock=session.clock,
                timing=await timing(),
                reread=timing,
            )
            return await runner.run()
    finally:
        await asyncio.to_thread(launcher.stop)


def run_compare(parsed: argparse.Namespace, settings: CockpitSettings) -> int:
    """`kube-llm scenario compare FILE [--autoscalers cpu,queue]`."""
    try:
        scenario = load_scenario(parsed.file)
    except ScenarioError as error:
        print(f"kube-llm: the scenario cannot run:\n{error}", file=sys.stderr)
        return 2
    names = [n.strip() for n in str(parsed.autoscalers).split(",") if n.strip()]
    unknown = [n for n in names if n not in SANDBOX_AUTOSCALERS]
    if unknown or not names:
        print(
            f"kube-llm: --autoscalers takes names from {', '.join(SANDBOX_AUTOSCALERS)}, "
            f"not {', '.join(unknown) or 'nothing'}",
            file=sys.stderr,
        )
        return 2
    settings = dataclasses.replace(settings, max_tokens=scenario.max_tokens)
    records: dict[str, CockpitRecord] = {}
    reports: dict[str, Path] = {}
    configuration = [
        ("scenario", f"{scenario.name} ({parsed.file})"),
        ("date", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("HPA sync period", f"{parsed.hpa_sync_seconds:g} s"),
        ("max_tokens", str(scenario.max_tokens)),
        ("sandbox arguments", " ".join(parsed.sandbox_arg) or "none (the embedded model)"),
    ]
    for name in names:
        before = load_average()
        print(f"kube-llm: run {name}: starting a sandbox (load average {before})", flush=True)
        launcher = SandboxLauncher(
            parsed.state_dir / name,
            [
                "--autoscaler",
                name,
                "--hpa-sync-seconds",
                f"{parsed.hpa_sync_seconds:g}",
                "--stop-with-parent",
                *parsed.sandbox_arg,
            ],
        )
        try:
            result = asyncio.run(
                run_on_sandbox(scenario, settings, launcher, parsed.hpa_sync_seconds)
            )
        except (SandboxFailed, HeadlessError, LoadError, HpaTimingError) as error:
            print(f"kube-llm: run {name} failed: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("kube-llm: stopped; the sandbox is stopped too", file=sys.stderr)
            return 130
        records[name] = result.record
        configuration.append(
            (f"load average, {name} run (before; after)", f"{before}; {load_average()}")
        )
        if result.aborted:
            configuration.append((f"{name} run stopped early", result.aborted))
        try:
            reports[name] = write_report_folder(
                result.record,
                settings.report_dir,
                name=f"kube-llm-compare-{name}",
                extra={"autoscaler": name},
            )
        except ReportError as error:
            print(f"kube-llm: {error}", file=sys.stderr)
            return 2
    columns = {name: column(record) for name, record in records.items()}
    text = render_compare(scenario.name, columns, configuration, reports)
    folder = settings.report_dir / ("kube-llm-compare-" + time.strftime("%Y%m%d-%H%M%S"))
    try:
        folder.mkdir(parents=True, exist_ok=False)
        (folder / "compare.md").write_text(text, encoding="utf-8")
        draw_compare(records, folder / CHART_NAME)
    except OSError as error:
        print(f"kube-llm: cannot write {folder}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(text)
    print(f"report: {folder}")
    return 0
