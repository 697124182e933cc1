"""The headless commands behind the CLI: `kube-llm load`, `kube-llm scenario`, `kube-llm report`.

Each takes the parsed flags, runs on the cockpit's session (`tui.headless`), prints its result
(a table, or JSON with `--json`) and writes the report folder (Markdown, JSON, chart). Exit
codes: 0 done (for a scenario: every expectation held), 1 a scenario expectation failed,
2 the command could not run (bad flags, bad file, no cluster), 128 + the signal when Ctrl+C,
SIGTERM or SIGHUP stopped it (130, 143, 129; the report is still written, marked interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys

from tui.figures import LoadPhase
from tui.gateway import GatewayTarget
from tui.headless import (
    STOP_SIGNALS,
    HeadlessError,
    HeadlessSink,
    Interrupts,
    ProgressLine,
    headless_session,
    load_cluster,
    tick_progress,
)
from tui.load import LoadError
from tui.loadcmd import (
    LoadPlan,
    load_summary,
    load_table,
    progress_text,
    read_prompts,
    run_phase,
    use_prompts,
    wait_quietly,
)
from tui.report import ReportError, write_report_folder
from tui.session import CockpitSettings


def _fail(message: str) -> int:
    print(f"kube-llm: {message}", file=sys.stderr)
    return 2


def settings_of(parsed: argparse.Namespace) -> CockpitSettings:
    """The session's settings from the headless commands' flags."""
    return CockpitSettings(
        kubeconfig=parsed.kubeconfig,
        context=parsed.context,
        namespace=parsed.namespace,
        backend_url=parsed.backend_url,
        deployment=parsed.deployment,
        service=parsed.deployment,
        max_tokens=parsed.max_tokens,
        report_dir=parsed.report_dir,
    )


def check_backend_url(url: str | None) -> None:
    """`HeadlessError` when `--backend-url` is not an http(s) URL."""
    if url is not None:
        try:
            GatewayTarget.direct(url)
        except ValueError as error:
            raise HeadlessError(f"--backend-url: {error}") from None


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


def run_load(parsed: argparse.Namespace) -> int:
    """`kube-llm load`."""
    try:
        plan = load_plan_of(parsed)
        prompts = read_prompts(parsed.prompts) if parsed.prompts else None
        settings = settings_of(parsed)
        check_backend_url(settings.backend_url)
        target = load_cluster(settings)
    except (HeadlessError, LoadError) as error:
        return _fail(str(error))
    sink = HeadlessSink(quiet=parsed.json)
    progress = ProgressLine(enabled=None if not parsed.json else False)

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
            if parsed.json:
                summary = load_summary(record, folder) | {"interrupted": stopped}
                print(json.dumps(summary, indent=1))
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


INTERRUPTED_NOTE = interrupted_note()


def run_headless(parsed: argparse.Namespace) -> int:
    """Run the headless command the flags name."""
    if parsed.command == "load":
        return run_load(parsed)
    if parsed.command == "report":
        return run_report(parsed)
    from tui.scenario_cmd import run_scenario

    return run_scenario(parsed)


def run_report(parsed: argparse.Namespace) -> int:
    """`kube-llm report FILE.json`: the report folder again, every figure recomputed from the
    samples stored in the JSON."""
    from tui.reportjson import ReportJsonError, record_from_json

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


__all__ = ["run_headless", "run_load", "run_report", "settings_of"]
