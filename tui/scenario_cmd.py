"""`kube-llm scenario run FILE`: parse (nothing runs on a bad file), run, judge, report.

Prints a line per step as it starts (stderr), then a line per verdict (stdout: PASS or FAIL,
the file's line, what was expected and by how much it held or not), and writes the report
folder with the verdicts at its top and in its JSON. Exit 0 when every verdict held, 1 when one
did not, 2 when the scenario could not run (a bad file, no cluster, a 403 on a write), 128 + the
signal when Ctrl+C, SIGTERM or SIGHUP (the terminal closed) stopped it: 130, 143, 129 (the report
is still written, marked as interrupted; a second signal quits at once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from tui.chaos import RecoveryTracker
from tui.commands import check_backend_url, settings_of
from tui.headless import (
    HeadlessError,
    HeadlessSink,
    Interrupts,
    headless_session,
    load_cluster,
)
from tui.load import LoadError
from tui.loadcmd import use_prompts
from tui.report import ReportError, cell, write_report_folder
from tui.rollout import DeploymentControl
from tui.scenario import Scenario, ScenarioError, load_scenario
from tui.scenario_run import ScenarioResult, ScenarioRunner, Verdict
from tui.scenario_words import plan_text


def verdict_line(verdict: Verdict) -> str:
    """One verdict for the terminal."""
    mark = "PASS" if verdict.held else "FAIL"
    return f"{mark}  line {verdict.line:<3} {verdict.what}: {verdict.detail}"


def verdict_markdown(result: ScenarioResult) -> list[str]:
    """The verdicts as the report's first section."""
    outcome = "passed" if result.passed else "FAILED"
    if result.interrupted:
        outcome = f"interrupted ({result.interrupted_by})"
    lines = [f"## Scenario {cell(result.name)}: {outcome}", ""]
    if result.aborted:
        lines += [f"The steps stopped early: {cell(result.aborted)}", ""]
    lines += ["| held | line | expected | measured |", "|---|---|---|---|"]
    lines += [
        f"| {'yes' if v.held else '**no**'} | {v.line} | {cell(v.what)} | {cell(v.detail)} |"
        for v in result.verdicts
    ]
    return lines


def result_json(result: ScenarioResult, scenario: Scenario) -> dict[str, Any]:
    """The scenario's outcome for the report's JSON and `--json`."""
    return {
        "name": result.name,
        "file": str(scenario.path),
        "passed": result.passed,
        "aborted": result.aborted,
        "interrupted": result.interrupted,
        "interrupted_by": result.interrupted_by if result.interrupted else None,
        "verdicts": [dataclasses.asdict(v) for v in result.verdicts],
        "windows": [dataclasses.asdict(w) for w in result.windows],
    }


def run_scenario(parsed: argparse.Namespace) -> int:
    """`kube-llm scenario run FILE [--dry-run]`."""
    try:
        scenario = load_scenario(parsed.file)
    except ScenarioError as error:
        print(f"kube-llm: the scenario cannot run:\n{error}", file=sys.stderr)
        return 2
    if parsed.dry_run:
        print(plan_text(scenario))
        return 0
    settings = dataclasses.replace(settings_of(parsed), max_tokens=scenario.max_tokens)
    try:
        check_backend_url(settings.backend_url)
        target = load_cluster(settings)
    except HeadlessError as error:
        print(f"kube-llm: {error}", file=sys.stderr)
        return 2
    sink = HeadlessSink(quiet=parsed.json)

    def log(line: str) -> None:
        if not parsed.json:
            print(line, file=sys.stderr, flush=True)

    interrupts = Interrupts(lambda: None)

    async def main() -> tuple[ScenarioResult, Path | None]:
        main_task = asyncio.current_task()
        assert main_task is not None
        # Ctrl+C (SIGTERM, SIGHUP) before the steps start (waiting for a Ready pod) just stops.
        interrupts.on_first = main_task.cancel
        with interrupts:
            async with headless_session(
                settings, target, sink, ready_timeout=scenario.ready_timeout
            ) as session:
                # The tracker's wait for a replacement's first chat is a scenario setting.
                session.tracker = RecoveryTracker(first_chat_wait=scenario.first_chat_wait)
                if not scenario.stream:
                    use_prompts(session, None, settings.max_tokens, stream=False)
                control = DeploymentControl(target, settings.deployment)
                runner = ScenarioRunner(scenario, session, control, log=log, clock=session.clock)
                interrupts.on_first = lambda: runner.interrupt(interrupts.cause)
                result = await runner.run()
                interrupts.on_first = lambda: None  # the report is next: nothing to stop
            folder = None
            if not parsed.no_report:
                folder = await asyncio.to_thread(
                    write_report_folder,
                    result.record,
                    settings.report_dir,
                    preface=verdict_markdown(result),
                    extra={"scenario": result_json(result, scenario)},
                    name=f"kube-llm-scenario-{_safe(scenario.name)}",
                )
        return result, folder

    try:
        result, folder = asyncio.run(main())
    except (HeadlessError, LoadError, ReportError) as error:
        print(f"kube-llm: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        with contextlib.suppress(OSError):
            print(
                f"kube-llm: stopped ({interrupts.cause}) before the steps began; nothing to report",
                file=sys.stderr,
            )
        return interrupts.exit_code
    # After SIGHUP the terminal may be gone: the report is written, the exit code says the rest.
    with contextlib.suppress(OSError):
        _print_result(parsed, result, scenario, folder)
    if result.interrupted:
        return interrupts.exit_code
    if result.aborted:
        return 2
    return 0 if result.passed else 1


def _print_result(
    parsed: argparse.Namespace, result: ScenarioResult, scenario: Scenario, folder: Path | None
) -> None:
    """The verdicts (or `--json`) on stdout."""
    if parsed.json:
        data = result_json(result, scenario)
        data["report"] = None if folder is None else str(folder)
        print(json.dumps(data, indent=1))
        return
    for verdict in result.verdicts:
        print(verdict_line(verdict))
    if result.aborted:
        print(f"STOPPED  {result.aborted}")
    outcome = "passed" if result.passed else "FAILED"
    print(f"scenario {scenario.name}: {'interrupted' if result.interrupted else outcome}")
    if folder is not None:
        print(f"report: {folder}")


def _safe(name: str) -> str:
    """A scenario's name as part of a folder name."""
    kept = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
    return kept.strip("-")[:40] or "unnamed"


__all__ = ["result_json", "run_scenario", "verdict_line", "verdict_markdown"]
