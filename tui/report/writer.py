"""The `r` key's Markdown report: what the cockpit has seen so far, as numbers a reader can check.

Every figure comes from `tui.core.figures` (computed from the samples in the `CockpitRecord`), so a
report, and the JSON a later report stores beside it, can be recomputed from its own samples.
The writer does no I/O other than the report file. Untrusted text (pod names, error kinds,
event messages) is put on one line, its control characters shown as the cockpit shows them,
and escaped, so it cannot break a table or inject markup.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tui.core.figures import (
    ChatFigures,
    CockpitRecord,
    Figures,
    HealthFigures,
    Percentiles,
    figures,
)
from tui.core.format import clock_time
from tui.core.model import RecoveryTimeline
from tui.report.cost import cost_lines
from tui.report.markdown import cell, table
from tui.report.record_json import record_json
from tui.services.chaos import describe
from tui.services.explain import explain, metric_reading, metric_target

POSTER_HEALTH_MS = 76.0
POSTER_USERS = 10
POSTER_RECOVERY_S = 30.0
POSTER_CHAT_REPLY_S = 173.0


class ReportError(Exception):
    """The report could not be written (the message says where and why)."""


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def _s(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.3f} s"


def _clock(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(moment))


def render(record: CockpitRecord, written_at: float) -> str:
    """The report's Markdown text."""
    numbers = figures(record)
    lines = [
        "# kube-llm report",
        "",
        f"Written {_clock(written_at)}; covers {_clock(record.started_at)} to "
        f"{_clock(record.ended_at)} ({record.ended_at - record.started_at:.0f} s).",
        "",
    ]
    lines += _configuration(record)
    lines += _health(numbers.health)
    lines += _chats(numbers.chats)
    lines += _recoveries(record.recoveries)
    lines += _scaling(record, numbers)
    lines += _phases(numbers)
    lines += cost_lines(numbers.cost)
    lines += _poster(record, numbers)
    lines += _events(record.events)
    return "\n".join(lines).rstrip() + "\n"


def _configuration(record: CockpitRecord) -> list[str]:
    rows = [
        ["context", cell(record.context)],
        ["namespace", cell(record.namespace)],
        ["backend", cell(record.backend)],
        ["model", cell(record.model) if record.model else "not known to the cockpit"],
    ]
    if record.hpa is not None:
        hpa = record.hpa
        targets = ", ".join(cell(metric_target(m)) for m in hpa.metrics)
        rows.append(
            [
                "HPA",
                f"{cell(hpa.name)}: {hpa.min_replicas} to {hpa.max_replicas} replicas"
                + (f"; targets: {targets}" if targets else ""),
            ]
        )
    return ["## Configuration", "", *table(["setting", "value"], rows), ""]


def _health(health: HealthFigures) -> list[str]:
    rows = [
        ["checks", str(health.checks)],
        ["failures", str(health.failures)],
        ["mean", _ms(health.mean)],
        ["p50", _ms(health.p50)],
        ["p99", _ms(health.p99)],
    ]
    lines = [
        "## Health checks (`/healthz` through the Service)",
        "",
        "Latency over the checks answered 200; a failure is any other answer or none.",
        "",
        *table(["measure", "value"], rows),
        "",
    ]
    if health.failures_by_kind:
        lines += ["Health check failures by kind:", ""]
        lines += table(["kind", "count"], [[cell(k), str(n)] for k, n in health.failures_by_kind])
        lines.append("")
    return lines


NOT_STREAMED = "n/a (not streamed)"
"""What a table shows for TTFT and gaps when no successful chat was streamed."""


def _percentiles(name: str, values: Percentiles, unstreamed: int = 0) -> list[str]:
    if values.count == 0 and unstreamed:
        # Chats asked with `stream: false` have no first token or gaps to time.
        return [name, NOT_STREAMED, NOT_STREAMED, NOT_STREAMED, "0"]
    return [name, _s(values.p50), _s(values.p95), _s(values.p99), str(values.count)]


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _chats(chats: ChatFigures) -> list[str]:
    unit = "chunks" if chats.tokens_are_chunks else "tokens"
    lines = ["## Chats", ""]
    lines += table(
        ["requests", "ok", "shed (429)", "failed"],
        [[str(chats.requests), str(chats.ok), str(chats.shed), str(chats.failed)]],
    )
    if chats.cancelled:
        lines += [
            "",
            f"{_count(chats.cancelled, 'chat')} closed by the client mid-reply (the load was "
            "stopped, or Escape): counted in the requests, neither ok nor failed.",
        ]
    lines += ["", "Latency over the chats that succeeded:", ""]
    lines += table(
        ["measure", "p50", "p95", "p99", "count"],
        [
            _percentiles("time to first token", chats.ttft, chats.unstreamed),
            _percentiles("inter-token gap", chats.inter_token, chats.unstreamed),
            _percentiles("end to end", chats.end_to_end),
        ],
    )
    if chats.unstreamed:
        lines += [
            "",
            f"{_count(chats.unstreamed, 'chat')} asked with `stream: false`: one reply at the "
            "end, so no time to first token and no inter-token gaps; their end to end and "
            "their tokens (from `usage`) count.",
        ]
    lines += [
        "",
        f"Output {unit}/s, all chats together (from the first start to the last end): "
        f"{_rate(chats.tokens_per_second)}; per chat, p50: "
        f"{_rate(chats.tokens_per_second_per_chat_p50)}.",
    ]
    if chats.tokens_are_chunks:
        lines += [
            "",
            "The backend sent no `usage` for some chats: their tokens are counted as content "
            "chunks, which can hold more than one token.",
        ]
    if chats.failures_by_kind:
        lines += ["", "Failures by kind:", ""]
        lines += table(["kind", "count"], [[cell(k), str(n)] for k, n in chats.failures_by_kind])
    if chats.served_by:
        ttft_by_pod = dict(chats.ttft_p50_by_pod)
        lines += ["", "Served by pod (from `X-Served-By`):", ""]
        lines += table(
            ["pod", "chats", "TTFT p50"],
            [[cell(pod), str(n), _s(ttft_by_pod.get(pod))] for pod, n in chats.served_by],
        )
    return [*lines, ""]


def _state(timeline: RecoveryTimeline) -> str:
    if timeline.refused:
        return "refused"
    if timeline.complete:
        return "yes"
    if timeline.replacement_removed_at is not None:
        return "no: replacement removed"
    return "no" if timeline.closed_at is not None else "in progress"


def _recoveries(recoveries: Sequence[RecoveryTimeline]) -> list[str]:
    lines = ["## Recoveries", ""]
    if not recoveries:
        return [*lines, "No pod was killed.", ""]
    rows = []
    for timeline in recoveries:
        recovery = timeline.recovery_seconds
        first_chat = (
            None
            if timeline.first_chat_at is None
            else timeline.first_chat_at - timeline.requested_at
        )
        rows.append(
            [
                cell(timeline.pod),
                timeline.action,
                _state(timeline),
                "n/a" if recovery is None else f"{recovery:.1f} s",
                "n/a" if first_chat is None else f"{first_chat:.1f} s",
                str(timeline.failed_requests),
                str(timeline.shed_requests),
                str(timeline.ok_requests),
            ]
        )
    lines += table(
        ["pod", "action", "complete", "to Ready", "to first chat", "failed", "shed", "ok"], rows
    )
    lines.append("")
    for timeline in recoveries:
        first, *more = describe(timeline)
        lines.append(f"- {cell(first)}")
        lines += [f"  - {cell(line)}" for line in more]
    return [*lines, ""]


def _scaling(record: CockpitRecord, numbers: Figures) -> list[str]:
    scaling = numbers.scaling
    lines = ["## Scaling", ""]
    if scaling.min_replicas is not None:
        lines += [f"The HPA keeps {scaling.min_replicas} to {scaling.max_replicas} replicas.", ""]
    if record.hpa is not None:
        readings = "; ".join(metric_reading(m, with_target=True) for m in record.hpa.metrics)
        lines += [
            f"Last seen: {cell(readings or 'no metrics')}. Why: "
            f"{cell(explain(record.hpa, record.ended_at))}.",
            "",
        ]
    if not scaling.changes:
        return [*lines, "No replica counts were recorded.", ""]
    lines += table(
        ["time", "since start", "current", "desired", "ready"],
        [
            [
                clock_time(p.at),
                f"+{p.at - record.started_at:.0f} s",
                str(p.current),
                str(p.desired),
                str(p.ready),
            ]
            for p in scaling.changes
        ],
    )
    changes = len(scaling.changes) - 1
    return [*lines, "", f"Peak: {scaling.peak_replicas} replicas; {changes} changes.", ""]


def _after(seconds: float | None) -> str:
    return "not seen" if seconds is None else f"{seconds:.1f} s"


_PHASE_COLUMNS = [
    "phase",
    "users",
    "lasted",
    "ok",
    "failed",
    "shed",
    "replicas at start",
    "scale-up decided",
    "up to",
    "new pods Ready",
    "scale-down decided",
    "back at min",
]


def _phases(numbers: Figures) -> list[str]:
    if not numbers.phases:
        return []
    rows = []
    for phase in numbers.phases:
        lasted = (
            "ran to the end"
            if phase.ended_at is None
            else (f"{phase.ended_at - phase.started_at:.0f} s")
        )
        rows.append(
            [
                cell(phase.label or phase.kind),
                str(phase.users),
                lasted,
                f"{phase.ok}/{phase.chats}",
                str(phase.failed),
                str(phase.shed),
                "n/a" if phase.replicas_at_start is None else str(phase.replicas_at_start),
                _after(phase.desired_up_after_start),
                "n/a" if phase.scaled_up_to is None else str(phase.scaled_up_to),
                _after(phase.ready_after_start),
                _after(phase.desired_down_after_stop),
                _after(phase.back_to_min_after_stop),
            ]
        )
    most = numbers.most_users_without_failure
    return [
        "## Load phases and scaling reaction",
        "",
        "Chats count in the phase they started in. Reaction times: from the load's start to the "
        "HPA wanting more replicas, and to that many pods Ready; from the load's stop to the HPA "
        "wanting fewer, and to the current replicas back at the minimum.",
        "",
        *table(_PHASE_COLUMNS, rows),
        "",
        "Most users served without a failed chat: "
        + ("none (every phase had a failure)" if most is None else str(most))
        + ".",
        "",
    ]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _poster(record: CockpitRecord, numbers: Figures) -> list[str]:
    health_p50 = numbers.health.p50
    e2e_p50 = numbers.chats.end_to_end.p50
    worst = numbers.worst_recovery_seconds
    failed = numbers.chats.failed + numbers.health.failures
    model = cell(record.model) if record.model else "the backend's model"
    rows = [
        [
            "health check",
            f"{POSTER_HEALTH_MS:.0f} ms",
            f"p50 {_ms(health_p50)}",
            "no: every hop is loopback on one machine here, the poster measured Minikube"
            if record.on_sandbox
            else "no: timed from this terminal through the backend path above; the poster's "
            "path is not stated",
        ],
        _users_row(numbers),
        [
            "recovery after a pod kill",
            f"< {POSTER_RECOVERY_S:.0f} s",
            "no kill" if worst is None else f"worst {worst:.1f} s to the replacement Ready",
            "partly: the sandbox starts local processes, Minikube schedules and starts containers"
            if record.on_sandbox
            else "yes in kind: a real cluster, with its own nodes, image cache and model load",
        ],
        [
            "chat reply",
            f"~{POSTER_CHAT_REPLY_S:.0f} s",
            f"p50 {_s(e2e_p50)} end to end",
            f"no: TinyLlama 1.1B on Minikube against {model}; reply length and hardware differ"
            + ("; the sandbox may run a fake engine" if record.on_sandbox else ""),
        ],
        [
            "requests without failure",
            "39 (11 chats, 17 health checks), 0 failed",
            f"{numbers.chats.requests} chats, {numbers.health.checks} health checks, "
            f"{failed} failed",
            "yes in kind; the counts depend on how long the cockpit ran",
        ],
    ]
    return [
        "## Against the poster",
        "",
        *table(["measure", "poster", "this run", "like-for-like?"], rows),
        "",
    ]


def _users_row(numbers: Figures) -> list[str]:
    peak = f"peak {_count(numbers.chats.peak_concurrency, 'chat')} open at once"
    if numbers.most_users_without_failure is None:
        return [
            "concurrent users",
            f"{POSTER_USERS}+",
            peak,
            "partly: chats open at once, not users served without failure",
        ]
    return [
        "concurrent users",
        f"{POSTER_USERS}+",
        f"{_count(numbers.most_users_without_failure, 'user')} served without failure; {peak}",
        "yes in kind: simulated users chatting back to back, as the poster's users did",
    ]


def _events(events: Sequence[tuple[float, str]]) -> list[str]:
    if not events:
        return []
    rows = [[clock_time(at), cell(text)] for at, text in sorted(events, key=lambda e: e[0])]
    return ["## Actions and events", "", *table(["time", "what"], rows), ""]


__all__ = [
    "ReportError",
    "cell",
    "render",
    "write_report_folder",
]


CHART_NAME = "timeline.png"
MARKDOWN_NAME = "report.md"
JSON_NAME = "report.json"


def write_report_folder(
    record: CockpitRecord,
    directory: Path,
    written_at: float | None = None,
    *,
    extra: Mapping[str, Any] | None = None,
    preface: Sequence[str] = (),
    name: str = "kube-llm-report",
) -> Path:
    """Write the report as a folder `NAME-YYYYmmdd-HHMMSS/` in `directory` and return it:
    `report.md` (with `preface` lines after its title, a scenario's verdicts say), `report.json`
    (the samples, the figures, and `extra`) and `timeline.png` (the chart). An existing folder
    is never reused (a suffix `-2`, `-3`... is added); `ReportError` says why one cannot be
    written."""
    # Here, not at the top: matplotlib takes a second to import, and the cockpit's `r` and
    # `--help` do not need it.
    from tui.report.charts import draw_timeline

    moment = time.time() if written_at is None else written_at
    stem = f"{name}-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(moment))
    text = render(record, moment)
    title, _, body = text.partition("\n")
    chart_line = f"![latency and replicas over time]({CHART_NAME})"
    head = [title, "", chart_line, ""] + ([*preface, ""] if preface else [])
    text = "\n".join(head) + "\n" + body.lstrip("\n")
    data = record_json(record, extra)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 1000):
            folder = directory / (stem if attempt == 1 else f"{stem}-{attempt}")
            try:
                # mkdir without exist_ok creates or fails: two writers never share a folder.
                folder.mkdir()
            except FileExistsError:
                continue
            (folder / MARKDOWN_NAME).write_text(text, encoding="utf-8")
            (folder / JSON_NAME).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
            draw_timeline(record, folder / CHART_NAME)
            return folder
    except OSError as error:
        reason = error.strerror or str(error)
        raise ReportError(f"cannot write the report in {directory}: {reason}") from error
    raise ReportError(f"cannot write the report in {directory}: too many reports this second")
