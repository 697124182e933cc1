"""The headless commands behind the CLI: `kube-llm load`, `kube-llm scenario`, `kube-llm report`.

Each takes the parsed flags, runs on the cockpit's session (`tui.headless.terminal`), prints its
result (a table, or `-o json|yaml`; `--json` is `-o json`) and writes the report folder
(Markdown, JSON, chart).
Exit codes: 0 done (for a scenario: every expectation held), 1 a scenario expectation failed, 2
the command could not run (bad flags, bad file, no cluster, a 403 on a write), 128 + the signal
when Ctrl+C, SIGTERM or SIGHUP stopped it (130, 143, 129; the report is still written, marked
interrupted; a second signal quits at once).

`scenario run FILE...` parses every file first (nothing runs on a bad file), prints a line per step
as it starts (stderr), then a line per verdict (stdout: PASS or FAIL, the file's line, what was
expected and by how much it held or not), and writes the report folder with the verdicts at its
top and in its JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from tui.cli.package import dump
from tui.cli.scenarios import Outcome, dry_run_bounds, read_timing, summary_lines, uses_auto
from tui.cluster.hpa_timing import HpaTimingError
from tui.cluster.rollout import DeploymentControl
from tui.core.figures import LoadPhase
from tui.core.settings import CockpitSettings
from tui.headless.load import load_summary, load_table, progress_text, wait_quietly
from tui.headless.terminal import (
    STOP_SIGNALS,
    HeadlessError,
    HeadlessSink,
    Interrupts,
    ProgressLine,
    headless_session,
    load_cluster,
    tick_progress,
)
from tui.report.record_json import ReportJsonError, record_from_json
from tui.report.writer import ReportError, cell, write_report_folder
from tui.scenario.runner import ScenarioResult, ScenarioRunner, Verdict
from tui.scenario.spec import Scenario, ScenarioError, load_scenario
from tui.scenario.words import plan_text
from tui.services.chaos import RecoveryTracker
from tui.services.load import LoadError
from tui.services.phase import LoadPlan, read_prompts, run_phase, use_prompts


def _fail(message: str) -> int:
    print(f"kube-llm: {message}", file=sys.stderr)
    return 2


def load_plan_of(parsed: argparse.Namespace) -> LoadPlan:
    """The load phase the flags ask for."""
    plan = LoadPlan(
        users=parsed.users,
        chats_per_user=parsed.chats_per_user,
        duration=parsed.duration,
        rate=parsed.rate,
    )
    plan.check()
    return plan


def run_load(parsed: argparse.Namespace, settings: CockpitSettings) -> int:
    """`kube-llm load`."""
    try:
        plan = load_plan_of(parsed)
        prompts = read_prompts(parsed.prompts) if parsed.prompts else None
        target = load_cluster(settings)
    except (HeadlessError, LoadError) as error:
        return _fail(str(error))
    sink = HeadlessSink(quiet=parsed.output is not None)
    progress = ProgressLine(enabled=None if parsed.output is None else False)

    interrupts = Interrupts(lambda: None)

    async def main() -> int:
        main_task = asyncio.current_task()
        assert main_task is not None
        # Ctrl+C (or SIGTERM, SIGHUP) before the load starts (waiting for a Ready pod) just stops.
        interrupts.on_first = main_task.cancel
        with interrupts:
            async with headless_session(settings, target, sink) as session:
                if prompts is not None or not parsed.stream:
                    use_prompts(session, prompts, settings.max_tokens, stream=parsed.stream)
                sink.note(f"load: {plan.describe()} through {session.target}")
                started = session.clock()
                ticker = asyncio.create_task(
                    tick_progress(
                        progress, lambda: progress_text(session, started, session.clock())
                    )
                )
                load = asyncio.create_task(run_phase(session, plan, session.clock))
                interrupts.on_first = load.cancel
                try:
                    phase = await load
                except asyncio.CancelledError:
                    if not interrupts.interrupted or main_task.cancelling():
                        raise
                    # Stopped by a signal: the phase is what ran, and its open chats were
                    # closed (each one a `cancelled` sample).
                    label = f"{plan.label or plan.describe()} (interrupted by {interrupts.cause})"
                    phase = LoadPhase(plan.kind, plan.users, started, session.clock(), label)
                finally:
                    interrupts.on_first = lambda: None  # the report is next: nothing to stop
                    await wait_quietly(ticker)
                record = dataclasses.replace(session.record(), phases=(phase,))
            stopped = interrupts.interrupted
            folder = None
            if not parsed.no_report:
                folder = await asyncio.to_thread(
                    write_report_folder,
                    record,
                    settings.report_dir,
                    name="kube-llm-load",
                    preface=[interrupted_note(interrupts.cause)] if stopped else (),
                    extra=(
                        {"interrupted": True, "interrupted_by": interrupts.cause}
                        if stopped
                        else None
                    ),
                )
        # After SIGHUP the terminal may be gone: the report is written, the exit code says it.
        with contextlib.suppress(OSError):
            if parsed.output is not None:
                summary = load_summary(record, folder) | {"interrupted": stopped}
                print(dump(summary, parsed.output))
            else:
                print(load_table(record))
                if folder is not None:
                    print(f"report: {folder}")
            if stopped:
                print(
                    f"kube-llm: interrupted ({interrupts.cause}): the load was stopped early; "
                    "the table and the report cover what was done",
                    file=sys.stderr,
                )
        return interrupts.exit_code if stopped else 0

    try:
        return asyncio.run(main())
    except (HeadlessError, LoadError, ReportError) as error:
        return _fail(str(error))
    except (KeyboardInterrupt, asyncio.CancelledError):
        with contextlib.suppress(OSError):
            print(
                f"kube-llm: stopped ({interrupts.cause}) before the load began; nothing to report",
                file=sys.stderr,
            )
        return interrupts.exit_code


def interrupted_note(cause: str = "Ctrl+C") -> str:
    """The report's note on a load stopped by `cause` (Ctrl+C, SIGTERM, SIGHUP)."""
    return (
        f"**Interrupted ({cause}):** the load was stopped before its end. The figures cover what "
        "was done; chats closed mid-reply by the stop count as cancelled, not as failures."
    )


def run_headless(parsed: argparse.Namespace, settings: CockpitSettings) -> int:
    """Run the headless command the flags name."""
    if parsed.command == "load":
        return run_load(parsed, settings)
    if parsed.command == "report":
        return run_report(parsed)
    if parsed.scenario_command == "compare":
        from tui.cli.compare import run_compare

        return run_compare(parsed, settings)
    return run_scenario(parsed, settings)


def run_report(parsed: argparse.Namespace) -> int:
    """`kube-llm report FILE.json`: the report folder again, every figure recomputed from the
    samples stored in the JSON."""
    try:
        data = json.loads(parsed.json_file.read_text(encoding="utf-8"))
        record = record_from_json(data)
        extra = {k: v for k, v in data.items() if k not in {"format", "record", "figures"}}
        cause = extra.get("interrupted_by")
        cause = cause if isinstance(cause, str) and cause in STOP_SIGNALS.values() else "Ctrl+C"
        preface = [interrupted_note(cause)] if extra.get("interrupted") is True else []
        folder = write_report_folder(record, parsed.report_dir, extra=extra, preface=preface)
    except (OSError, UnicodeDecodeError, ValueError, ReportJsonError, ReportError) as error:
        return _fail(f"{parsed.json_file}: {error}")
    print(f"report: {folder}")
    return 0


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
    if result.bounds:
        lines += ["", "Bounds from the HPA (`within: auto`, and fixed waits checked against them):"]
        lines += ["", *(f"- {cell(line)}" for line in result.bounds)]
    return lines


def result_json(result: ScenarioResult, scenario: Scenario) -> dict[str, Any]:
    """The scenario's outcome for the report's JSON and `-o json|yaml`."""
    return {
        "name": result.name,
        "file": str(scenario.path),
        "passed": result.passed,
        "aborted": result.aborted,
        "interrupted": result.interrupted,
        "interrupted_by": result.interrupted_by if result.interrupted else None,
        "verdicts": [dataclasses.asdict(v) for v in result.verdicts],
        "windows": [dataclasses.asdict(w) for w in result.windows],
        "bounds": list(result.bounds),
    }


def run_scenario(parsed: argparse.Namespace, settings: CockpitSettings) -> int:
    """`kube-llm scenario run FILE... [--dry-run]`: every file checked first, then each run in
    order, with one summary at the end when there are several."""
    scenarios: list[Scenario] = []
    problems: list[str] = []
    for path in parsed.files:
        try:
            scenarios.append(load_scenario(path))
        except ScenarioError as error:
            problems.append(str(error))
    if problems:
        print("kube-llm: the scenario cannot run:\n" + "\n".join(problems), file=sys.stderr)
        return 2
    if parsed.dry_run:
        print("\n\n".join(plan_text(s, dry_run_bounds(parsed, settings, s)) for s in scenarios))
        return 0
    outcomes: list[Outcome] = []
    codes: list[int] = []
    for scenario in scenarios:
        started = time.monotonic()
        code, result = _run_one(parsed, settings, scenario)
        codes.append(code)
        if result is not None:
            held = sum(1 for v in result.verdicts if v.held)
            outcome = (
                "interrupted"
                if result.interrupted
                else "passed"
                if result.passed
                else ("stopped" if result.aborted else "FAILED")
            )
            outcomes.append(
                Outcome(
                    str(scenario.path),
                    scenario.name,
                    outcome,
                    held,
                    len(result.verdicts),
                    time.monotonic() - started,
                )
            )
        if code >= 128:  # Ctrl+C, SIGTERM or SIGHUP: the rest do not run
            break
    if len(scenarios) > 1 and outcomes and parsed.output is None:
        print("\n".join(["", *summary_lines(outcomes)]))
    if any(code >= 128 for code in codes):
        return max(codes)
    return 2 if 2 in codes else max(codes, default=0)


def _run_one(
    parsed: argparse.Namespace, settings: CockpitSettings, scenario: Scenario
) -> tuple[int, ScenarioResult | None]:
    """One scenario's run: its exit code, and its result when the steps began."""
    settings = dataclasses.replace(settings, max_tokens=scenario.max_tokens)
    try:
        target = load_cluster(settings)
    except HeadlessError as error:
        return _fail(str(error)), None
    sink = HeadlessSink(quiet=parsed.output is not None)

    def log(line: str) -> None:
        if parsed.output is None:
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
                try:
                    timing = await read_timing(parsed, target, settings.deployment)
                except HpaTimingError as error:
                    if uses_auto(scenario):
                        raise HeadlessError(f"within: auto needs the HPA: {error}") from None
                    log(f"no HPA timing ({error}): fixed waits are not checked against it")
                    timing = None
                runner = ScenarioRunner(
                    scenario,
                    session,
                    control,
                    log=log,
                    clock=session.clock,
                    timing=timing,
                    reread=lambda: read_timing(parsed, target, settings.deployment),
                )
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
        return _fail(str(error)), None
    except (KeyboardInterrupt, asyncio.CancelledError):
        with contextlib.suppress(OSError):
            print(
                f"kube-llm: stopped ({interrupts.cause}) before the steps began; nothing to report",
                file=sys.stderr,
            )
        return interrupts.exit_code, None
    # After SIGHUP the terminal may be gone: the report is written, the exit code says the rest.
    with contextlib.suppress(OSError):
        _print_result(parsed, result, scenario, folder)
    if result.interrupted:
        return interrupts.exit_code, result
    if result.aborted:
        return 2, result
    return (0 if result.passed else 1), result


def _print_result(
    parsed: argparse.Namespace, result: ScenarioResult, scenario: Scenario, folder: Path | None
) -> None:
    """The verdicts (or `-o json|yaml`) on stdout."""
    if parsed.output is not None:
        data = result_json(result, scenario)
        data["report"] = None if folder is None else str(folder)
        if parsed.output == "json" and len(parsed.files) > 1:
            # Several files: one object a line (JSON Lines), so the output stays parseable.
            print(json.dumps(data))
        else:
            print(dump(data, parsed.output))
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


__all__ = [
    "result_json",
    "run_headless",
    "run_load",
    "run_report",
    "run_scenario",
    "verdict_line",
    "verdict_markdown",
]
