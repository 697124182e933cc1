"""A scenario's waits against the HPA's pace: `within: auto`, and fixed waits too short to hold.

A `wait_for` on the HPA's replicas or a `replicas_reach` / `replicas_return` expectation with
`within: auto` gets the longest time the live HPA may take for that change
(`tui.core.hpa_timing.scale_bound`), counted as the fixed number would be. A fixed `within`
shorter than the least time the HPA could possibly take fails at once, with the numbers, rather
than after waiting it out: the scenario was written for a faster cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from tui.core.hpa_timing import Bound, HpaTiming, scale_bound
from tui.scenario.spec import AUTO, Expectation, Scenario, Step

__all__ = [
    "Resolved",
    "expectation_bound",
    "plan_lines",
    "preflight",
    "too_short",
    "wait_bound",
]


@dataclass(frozen=True)
class Resolved:
    """A `within` as the run uses it: seconds, and how they were found."""

    seconds: float
    words: str


def wait_bound(timing: HpaTiming, condition: str, wanted: int, current: int) -> Bound | None:
    """The HPA's bound for a `wait_for` from `current` replicas (None: not an HPA wait)."""
    if condition == "replicas":
        return scale_bound(timing, current, max(current, wanted))
    if condition == "replicas_at_most":
        return scale_bound(timing, current, min(current, wanted))
    return None


def resolve(within: float | str, bound: Bound | None, elapsed: float = 0.0) -> Resolved:
    """`within` in seconds: a number as given; `auto` the bound's highest time, less what has
    passed since the load started or stopped (`elapsed`)."""
    if within != AUTO:
        return Resolved(float(within), f"{float(within):g} s")
    if bound is None or bound.highest is None:
        why = "no bound" if bound is None else bound.explain()
        return Resolved(0.0, f"auto: {why}")
    left = round(max(bound.highest - elapsed, 0.0), 1)
    since = f", {elapsed:.0f} s of it passed already" if elapsed >= 0.5 else ""
    return Resolved(left, f"auto {left:.0f} s ({bound.explain()}{since})")


def too_short(within: float, bound: Bound | None, elapsed: float | None) -> str | None:
    """Why a fixed `within` cannot be enough, if it cannot: shorter than the least time the HPA
    takes, less what has already passed (`elapsed` None: unknown, so nothing is claimed)."""
    if bound is None or elapsed is None:
        return None
    if bound.highest is None:
        return f"the HPA can never scale {bound.start} -> {bound.goal}: {bound.why_never}"
    needed = bound.lowest - elapsed
    if within >= needed:
        return None
    return (
        f"{within:g} s is shorter than the HPA can possibly scale {bound.start} -> {bound.goal} "
        f"replicas: at least {needed:.0f} s ({bound.explain()}); use within: auto or at least "
        f"{bound.highest - elapsed:.0f} s"
    )


def expectation_bound(
    expectation: Expectation, timing: HpaTiming, start: int, peak: int
) -> Bound | None:
    """The bound a `replicas_reach` (from `start` replicas at the load's start) or
    `replicas_return` (from the `peak` reached) expectation is judged against."""
    wanted = int(expectation.get("replicas"))
    if expectation.kind == "replicas_reach":
        return scale_bound(timing, min(start, wanted), wanted)
    if expectation.kind == "replicas_return":
        return scale_bound(timing, max(peak, wanted), wanted)
    return None


def preflight(scenario: Scenario, timing: HpaTiming, current: int) -> list[tuple[int, str, str]]:
    """Fixed bounds that cannot hold on this HPA, found before any step runs:
    (line, what, why). Checked: the expectations, and a `replicas_at_most` wait after a
    `stop_load` with only sleeps between (the scale-down cannot have begun sooner)."""
    found: list[tuple[int, str, str]] = []
    for expectation in scenario.expectations:
        within = expectation.get("within")
        if expectation.kind not in ("replicas_reach", "replicas_return") or within == AUTO:
            continue
        wanted = int(expectation.get("replicas"))
        # The least any run can take: from the minimum (or the count now) up; one pod down.
        bound = expectation_bound(expectation, timing, current, wanted + 1)
        why = too_short(float(within), bound, 0.0)
        if why is not None:
            found.append((expectation.line, expectation.kind, why))
    slept: float | None = None
    for step in scenario.steps:
        if step.kind == "stop_load":
            slept = 0.0
        elif step.kind == "sleep" and slept is not None:
            slept += float(step.get("seconds"))
        elif step.kind == "wait_for" and slept is not None:
            within, wanted = step.get("within"), step.get("replicas_at_most")
            if wanted is not None and within != AUTO:
                bound = scale_bound(timing, wanted + 1, wanted)
                why = too_short(float(within), bound, slept)
                if why is not None:
                    found.append((step.line, "wait_for", why))
            slept = None
        else:
            slept = None
    return found


def _step_lines(step: Step, timing: HpaTiming) -> list[str]:
    condition = "replicas" if step.get("replicas") is not None else "replicas_at_most"
    wanted = int(step.get(condition))
    if condition == "replicas":
        starts = {timing.min_replicas}
    else:
        starts = {min(wanted + 1, timing.max_replicas), timing.max_replicas}
    return [
        f"line {step.line}: wait_for {condition} {wanted}, from {start}: "
        + scale_bound(
            timing, start, max(start, wanted) if condition == "replicas" else wanted
        ).explain()
        for start in sorted(starts)
        if start != wanted
    ]


def plan_lines(scenario: Scenario, timing: HpaTiming) -> list[str]:
    """The bounds `--dry-run` shows: the timing, each `auto` for the likely starting counts,
    and every fixed bound that cannot hold."""
    hpa_waits = [s for s in scenario.steps if s.kind == "wait_for" and s.get("ready_pods") is None]
    hpa_expectations = [
        e for e in scenario.expectations if e.kind in ("replicas_reach", "replicas_return")
    ]
    if not hpa_waits and not hpa_expectations:
        return []
    lines = [*timing.words()]
    for step in scenario.steps:
        if step.kind == "wait_for" and step.get("within") == AUTO:
            lines += _step_lines(step, timing)
    for expectation in scenario.expectations:
        if expectation.get("within") != AUTO:
            continue
        wanted = int(expectation.get("replicas"))
        if expectation.kind == "replicas_reach":
            starts = [timing.min_replicas]
        else:
            starts = sorted({min(wanted + 1, timing.max_replicas), timing.max_replicas})
        for start in starts:
            bound = expectation_bound(expectation, timing, start, start)
            if bound is not None and start != wanted:
                lines.append(
                    f"line {expectation.line}: {expectation.kind} {wanted}, from {start}: "
                    + bound.explain()
                )
    for line, what, why in preflight(scenario, timing, timing.min_replicas):
        lines.append(f"line {line}: {what} WILL FAIL: {why}")
    return lines
