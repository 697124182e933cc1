"""The `r` key's Markdown report: what the cockpit has seen so far, as numbers a reader can check.

Every figure is computed here from the samples in a `CockpitRecord` with `tui.stats`, so a report
(and the JSON a later report adds beside it) can be recomputed from its own samples. The writer
does no other I/O than the report file. Untrusted text (pod names, error kinds, event messages)
is flattened to one line, stripped of control characters and escaped, so it cannot break a table
or inject markup.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tui.chaos import describe
from tui.explain import metric_label
from tui.model import (
    ChatSample,
    HealthSample,
    HpaView,
    Outcome,
    RecoveryTimeline,
    ReplicaPoint,
)
from tui.sanitize import one_line
from tui.stats import percentile, summarize

POSTER_HEALTH_MS = 76.0
POSTER_USERS = 10
POSTER_RECOVERY_S = 30.0
POSTER_CHAT_REPLY_S = 173.0


class ReportError(Exception):
    """The report could not be written (the message says where and why)."""


@dataclass(frozen=True)
class CockpitRecord:
    """What the cockpit has seen from `started_at` to `ended_at` (epoch seconds)."""

    started_at: float
    ended_at: float
    context: str
    """The kubeconfig context."""
    namespace: str
    backend: str
    """How the cockpit reaches the Service: "service proxy via the API server", a URL..."""
    chats: tuple[ChatSample, ...] = ()
    healths: tuple[HealthSample, ...] = ()
    recoveries: tuple[RecoveryTimeline, ...] = ()
    replicas: tuple[ReplicaPoint, ...] = ()
    events: tuple[tuple[float, str], ...] = ()
    """The cockpit's actions and the cluster's events, as (moment, text) lines."""
    hpa: HpaView | None = None
    """The last HPA seen (its bounds and targets), if there is one."""
    model: str | None = None
    """The model the backend serves, when the cockpit knows it."""


def cell(text: str) -> str:
    """Untrusted text made safe for a Markdown table cell (and for prose): on one line (line
    breaks and other whitespace runs become one space), every other control character shown as
    the cockpit shows it (ESC as a visible stand-in), and Markdown's `|`, `\\`, `` ` `` and `<`
    escaped."""
    escaped = one_line(" ".join(text.split())).replace("\\", "\\\\").replace("|", "\\|")
    # No raw HTML (a tag needs a "<") and no code spans that could swallow the row's other cells.
    return escaped.replace("<", "&lt;").replace("`", "\\`")


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def _s(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.3f} s"


def _clock(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(moment))


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def peak_concurrency(chats: Iterable[ChatSample]) -> int:
    """The most chats that were open at one moment (a chat is open from its start to its end)."""
    edges: list[tuple[float, int]] = []
    for chat in chats:
        edges.append((chat.started_at, 1))
        edges.append((chat.ended_at, -1))
    # At equal moments, ends before starts: back-to-back chats are not concurrent.
    edges.sort()
    peak = open_now = 0
    for _, step in edges:
        open_now += step
        peak = max(peak, open_now)
    return peak


def render(record: CockpitRecord, written_at: float) -> str:
    """The report's Markdown text."""
    lines = [
        "# kube-llm report",
        "",
        f"Written {_clock(written_at)}; covers {_clock(record.started_at)} to "
        f"{_clock(record.ended_at)} ({record.ended_at - record.started_at:.0f} s).",
        "",
    ]
    lines += _configuration(record)
    lines += _health(record.healths)
    lines += _chats(record)
    lines += _recoveries(record.recoveries)
    lines += _scaling(record)
    lines += _poster(record)
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
        targets = ", ".join(
            f"{cell(metric_label(m))} "
            + (f"{m.target_utilization} %" if m.target_utilization is not None else "")
            + (cell(m.target_value) if m.target_value is not None else "")
            for m in hpa.metrics
        )
        rows.append(
            [
                "HPA",
                f"{cell(hpa.name)}: {hpa.min_replicas} to {hpa.max_replicas} replicas"
                + (f"; targets: {targets}" if targets else ""),
            ]
        )
    return ["## Configuration", "", *_table(["setting", "value"], rows), ""]


def _health(healths: Sequence[HealthSample]) -> list[str]:
    answered = [h.latency for h in healths if h.ok and h.latency is not None]
    failures = sum(1 for h in healths if not h.ok)
    mean = sum(answered) / len(answered) if answered else None
    rows = [
        ["checks", str(len(healths))],
        ["failures", str(failures)],
        ["mean", _ms(mean)],
        ["p50", _ms(percentile(answered, 50))],
        ["p99", _ms(percentile(answered, 99))],
    ]
    kinds = Counter(
        h.error or (f"http_{h.status}" if h.status is not None else "error")
        for h in healths
        if not h.ok
    )
    lines = [
        "## Health checks (`/healthz` through the Service)",
        "",
        "Latency over the checks answered 200; a failure is any other answer or none.",
        "",
        *_table(["measure", "value"], rows),
        "",
    ]
    if kinds:
        lines += ["Health check failures by kind:", ""]
        lines += _table(["kind", "count"], [[cell(k), str(n)] for k, n in kinds.most_common()])
        lines.append("")
    return lines


def _chats(record: CockpitRecord) -> list[str]:
    chats = record.chats
    ok = [c for c in chats if c.outcome is Outcome.OK]
    shed = [c for c in chats if c.outcome is Outcome.SHED]
    errors = Counter(c.error_kind or "error" for c in chats if c.outcome is Outcome.ERROR)
    ttfts = [c.ttft for c in ok if c.ttft is not None]
    gaps = [gap for c in ok for gap in c.gaps]
    e2es = [c.e2e for c in ok if c.e2e is not None]
    per_chat = [r for c in ok if (r := c.tokens_per_second) is not None]
    # One window over every sample, so summarize's throughput and per-pod figures cover it all.
    start = min([record.started_at, *(c.started_at for c in chats)])
    end = max([record.ended_at, *(c.ended_at for c in chats)])
    summary = summarize(chats, (), window_seconds=end - start, now=end)
    unit = "chunks" if summary.tokens_are_chunks else "tokens"
    lines = ["## Chats", ""]
    lines += _table(
        ["requests", "ok", "shed (429)", "failed"],
        [[str(len(chats)), str(len(ok)), str(len(shed)), str(sum(errors.values()))]],
    )
    lines += ["", "Latency over the chats that succeeded:", ""]
    lines += _table(
        ["measure", "p50", "p95", "p99", "count"],
        [
            [name, *(_s(percentile(values, q)) for q in (50, 95, 99)), str(len(values))]
            for name, values in (
                ("time to first token", ttfts),
                ("inter-token gap", gaps),
                ("end to end", e2es),
            )
        ],
    )
    throughput = "n/a" if summary.tokens_per_second is None else f"{summary.tokens_per_second:.1f}"
    per_chat_p50 = percentile(per_chat, 50)
    lines += [
        "",
        f"Output {unit}/s, all chats together (from the first start to the last end): "
        f"{throughput}; per chat, p50: "
        f"{'n/a' if per_chat_p50 is None else f'{per_chat_p50:.1f}'}.",
    ]
    if summary.tokens_are_chunks:
        lines.append(
            "The backend sent no `usage` for some chats: their tokens are counted as content "
            "chunks, which can hold more than one token."
        )
    if errors:
        lines += ["", "Failures by kind:", ""]
        lines += _table(["kind", "count"], [[cell(k), str(n)] for k, n in errors.most_common()])
    if summary.served_by:
        ttft_by_pod = dict(summary.ttft_p50_by_pod)
        lines += ["", "Served by pod (from `X-Served-By`):", ""]
        lines += _table(
            ["pod", "chats", "TTFT p50"],
            [[cell(pod), str(n), _s(ttft_by_pod.get(pod))] for pod, n in summary.served_by],
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
    lines += _table(
        ["pod", "action", "complete", "to Ready", "to first chat", "failed", "shed", "ok"], rows
    )
    lines.append("")
    for timeline in recoveries:
        lines += [f"- {cell(line)}" for line in describe(timeline)]
    return [*lines, ""]


def _scaling(record: CockpitRecord) -> list[str]:
    lines = ["## Scaling", ""]
    if record.hpa is not None:
        lines += [
            f"The HPA keeps {record.hpa.min_replicas} to {record.hpa.max_replicas} replicas.",
            "",
        ]
    changes: list[ReplicaPoint] = []
    for point in sorted(record.replicas, key=lambda p: p.at):
        last = changes[-1] if changes else None
        if last is None or (last.current, last.desired, last.ready) != (
            point.current,
            point.desired,
            point.ready,
        ):
            changes.append(point)
    if not changes:
        return [*lines, "No replica counts were recorded.", ""]
    lines += _table(
        ["time", "since start", "current", "desired", "ready"],
        [
            [
                time.strftime("%H:%M:%S", time.localtime(p.at)),
                f"+{p.at - record.started_at:.0f} s",
                str(p.current),
                str(p.desired),
                str(p.ready),
            ]
            for p in changes
        ],
    )
    peak = max(p.current for p in changes)
    return [*lines, "", f"Peak: {peak} replicas; {len(changes) - 1} changes.", ""]


def _poster(record: CockpitRecord) -> list[str]:
    answered = [h.latency for h in record.healths if h.ok and h.latency is not None]
    health_p50 = percentile(answered, 50)
    ok = [c for c in record.chats if c.outcome is Outcome.OK]
    e2e_p50 = percentile([c.e2e for c in ok if c.e2e is not None], 50)
    recoveries = [r for r in record.recoveries if r.recovery_seconds is not None]
    worst = max((r.recovery_seconds or 0.0 for r in recoveries), default=None)
    failed = sum(1 for c in record.chats if c.outcome is Outcome.ERROR)
    failed += sum(1 for h in record.healths if not h.ok)
    model = cell(record.model) if record.model else "the backend's model"
    rows = [
        [
            "health check",
            f"{POSTER_HEALTH_MS:.0f} ms",
            f"p50 {_ms(health_p50)}",
            "no: the poster's path is unknown; this one is timed from the cockpit through the "
            "API server's proxy (or the given URL), on loopback when on the sandbox",
        ],
        [
            "concurrent users",
            f"{POSTER_USERS}+",
            f"peak {peak_concurrency(record.chats)} chats open at once",
            "partly: chats open at once, not users served without failure",
        ],
        [
            "recovery after a pod kill",
            f"< {POSTER_RECOVERY_S:.0f} s",
            "no kill" if worst is None else f"worst {worst:.1f} s to the replacement Ready",
            "partly: the sandbox starts processes, Minikube pulls and starts containers",
        ],
        [
            "chat reply",
            f"~{POSTER_CHAT_REPLY_S:.0f} s",
            f"p50 {_s(e2e_p50)} end to end",
            f"no: TinyLlama 1.1B on Minikube against {model}; reply length and hardware differ",
        ],
        [
            "requests without failure",
            "39 (11 chats, 17 health checks), 0 failed",
            f"{len(record.chats)} chats, {len(record.healths)} health checks, {failed} failed",
            "yes in kind; the counts depend on how long the cockpit ran",
        ],
    ]
    return [
        "## Against the poster",
        "",
        *_table(["measure", "poster", "this run", "like-for-like?"], rows),
        "",
    ]


def _events(events: Sequence[tuple[float, str]]) -> list[str]:
    if not events:
        return []
    rows = [
        [time.strftime("%H:%M:%S", time.localtime(at)), cell(text)]
        for at, text in sorted(events, key=lambda e: e[0])
    ]
    return ["## Actions and events", "", *_table(["time", "what"], rows), ""]


def write_report(record: CockpitRecord, directory: Path, written_at: float | None = None) -> Path:
    """Write the report as `kube-llm-report-YYYYmmdd-HHMMSS.md` in `directory` (created if
    missing) and return its path. An existing file is never overwritten: a suffix `-2`, `-3`...
    is added. Raises `ReportError` with the reason when the file cannot be written."""
    moment = time.time() if written_at is None else written_at
    text = render(record, moment)
    stem = "kube-llm-report-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(moment))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 1000):
            path = directory / (f"{stem}.md" if attempt == 1 else f"{stem}-{attempt}.md")
            try:
                # "x" creates the file or fails: two writers in one second never overwrite.
                with path.open("x", encoding="utf-8") as sink:
                    sink.write(text)
            except FileExistsError:
                continue
            return path
    except OSError as error:
        reason = error.strerror or str(error)
        raise ReportError(f"cannot write the report in {directory}: {reason}") from error
    raise ReportError(f"cannot write the report in {directory}: too many reports this second")


__all__ = [
    "CockpitRecord",
    "ReportError",
    "cell",
    "peak_concurrency",
    "render",
    "write_report",
]
