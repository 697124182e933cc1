"""Scenario steps and expectations in words, and the plan `kube-llm scenario run --dry-run`
prints (the same words head each step's log line and each verdict)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tui.scenario.spec import AUTO, STEPS, WAIT_CONDITIONS, Expectation, Scenario, Step


def _params_text(params: tuple[tuple[str, Any], ...], skip: Callable[[str, Any], bool]) -> str:
    return ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in params if not skip(k, v)
    )


def describe_step(step: Step) -> str:
    """A step in words."""
    get = step.get
    match step.kind:
        case "burst":
            how = "in the background" if get("background") else "and wait for it to end"
            return f"burst: {get('users')} users x {get('chats_per_user')} chats, {how}"
        case "sustained":
            return (
                f"sustained load: {get('users')} users chatting back to back for "
                f"{get('duration'):g} s, in the background"
            )
        case "rate":
            return (
                f"rate load: {get('per_second'):g} new chats/s for {get('duration'):g} s "
                f"(at most {get('users')} open), in the background"
            )
        case "stop_load":
            return "stop the load and wait for its chats to end"
        case "sleep":
            return f"sleep {get('seconds'):g} s"
        case "evict":
            return f"evict {_pod(get('pod'))} (Eviction API: the PodDisruptionBudget decides)"
        case "kill":
            return f"force-delete {_pod(get('pod'))} (grace period 0)"
        case "rollout_restart":
            return (
                "rollout restart: patch the pod template's kubectl.kubernetes.io/restartedAt, "
                f"wait up to {get('within'):g} s for the rollout to finish, as "
                "`kubectl rollout status` judges it"
            )
        case "scale":
            return (
                f"scale the Deployment to {get('replicas')} replicas (the HPA may change it back)"
            )
        case "wait_for":
            what = next(name for name in WAIT_CONDITIONS if get(name) is not None)
            words = STEPS["wait_for"][what].help
            return f"wait {within_words(get('within'))} for {words} {get(what)}"
    return f"{step.kind}: {_params_text(step.params, lambda k, v: v is None)}"  # pragma: no cover


def within_words(within: float | str, lead: str = "up to") -> str:
    """A `within` in words: `up to 60 s`, or `as long as the HPA can take (auto)`."""
    if within == AUTO:
        if lead == "within":
            return "within the live HPA's bound (auto)"
        return "as long as the live HPA can take (auto)"
    return f"{lead} {float(within):g} s"


def _pod(name: str) -> str:
    return "a random Ready pod" if name == "random" else f"pod {name}"


def describe_expectation(expectation: Expectation) -> str:
    """An expectation in words."""
    get = expectation.get
    match expectation.kind:
        case "ttft_p95_below":
            return f"chat TTFT p95 below {get('seconds'):g} s"
        case "e2e_p95_below":
            return f"chat end-to-end p95 below {get('seconds'):g} s"
        case "health_p50_below":
            return f"health check p50 below {get('seconds') * 1000:g} ms"
        case "failures_at_most":
            return f"at most {get('count')} failed chats and health checks (429s are not failures)"
        case "failures_below_percent":
            return f"failed chats below {get('percent'):g} % of all chats (429s are not failures)"
        case "recovery_below":
            return f"every kill's replacement Ready within {get('seconds'):g} s"
        case "replicas_reach":
            return (
                f"replicas reach {get('replicas')} {within_words(get('within'), 'within')} "
                "of the first load's start"
            )
        case "replicas_return":
            return (
                f"replicas back to {get('replicas')} {within_words(get('within'), 'within')} "
                "of the last load's end"
            )
        case "no_failures_during":
            return f"no failed chat during any {get('step')} step"
        case "failures_only_on_killed_pod":
            return (
                f"the only failed chats are those each {get('step')} step's pod held at the "
                "kill (running or queued there), none served by another pod"
            )
    return expectation.kind  # pragma: no cover


def plan_text(scenario: Scenario, bounds: list[str] | None = None) -> str:
    """The plan `--dry-run` prints: every step and expectation in words, with its line, and
    the bounds from the HPA (`tui.scenario.bounds.plan_lines`)."""
    lines = [f"scenario {scenario.name} ({scenario.path})"]
    if scenario.description:
        lines.append(f"  {scenario.description}")
    lines.append(
        f"settings: max_tokens {scenario.max_tokens}, "
        + ("streamed replies" if scenario.stream else "whole replies (stream: false, no TTFT)")
        + f", wait up to {scenario.ready_timeout:g} s for a Ready pod before the first step"
    )
    lines.append("steps:")
    for number, step in enumerate(scenario.steps, 1):
        lines.append(f"  {number:>2}. (line {step.line}) {describe_step(step)}")
    lines.append("expectations:" if scenario.expectations else "expectations: none")
    for expectation in scenario.expectations:
        lines.append(f"   - (line {expectation.line}) {describe_expectation(expectation)}")
    if bounds:
        lines.append("bounds from the HPA:")
        lines += [f"  {line}" for line in bounds]
    if scenario.needs_deployment_writes:
        lines.append(
            "note: rollout_restart and scale patch the Deployment; the cockpit's Role may not "
            "(use a context that may, e.g. the cluster admin's)"
        )
    return "\n".join(lines)


__all__ = ["describe_expectation", "describe_step", "plan_text", "within_words"]
