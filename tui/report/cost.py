"""The report's cost section: replica-seconds used, against a fixed Deployment at the maximum."""

from __future__ import annotations

from tui.core.cost import CostFigures
from tui.report.markdown import table


def replica_seconds_text(value: float | None) -> str:
    """Replica-seconds as a report writes them: "1234 replica-s"."""
    return "n/a" if value is None else f"{value:.0f} replica-s"


def cost_lines(cost: CostFigures | None) -> list[str]:
    """The `## Cost` section (nothing when no replica count was recorded)."""
    if cost is None or cost.span_seconds <= 0:
        return []
    rows = [
        ["used", replica_seconds_text(cost.replica_seconds)],
        [
            "fixed at the maximum",
            replica_seconds_text(cost.fixed_at_max),
        ],
        ["ratio", "n/a" if cost.ratio is None else f"{cost.ratio:.2f}"],
        [
            f"per successful chat ({cost.chats_ok})",
            "n/a" if cost.per_chat is None else f"{cost.per_chat:.1f} replica-s",
        ],
    ]
    return [
        "## Cost (replica-seconds)",
        "",
        f"One replica-second is one pod kept for one second. Integrated over "
        f"{cost.span_seconds:.0f} s from the {cost.counted} the cockpit recorded; the fixed "
        "Deployment keeps the HPA's maximum for the same span.",
        "",
        *table(["measure", "value"], rows),
        "",
    ]
