"""Why the HPA is or is not scaling, in one line of plain words.

The cockpit cannot import the sandbox (or the kube-controller-manager), so the line is derived
from what every cluster publishes: the HPA's spec (bounds, metric targets, stabilisation windows)
and its status (current and desired replicas, each metric's current value, and the conditions the
controller sets). The condition reasons are upstream's (pkg/controller/podautoscaler):

- AbleToScale: `SucceededGetScale`, `SucceededRescale`, `ReadyForNewScale`, `ScaleDownStabilized`,
  `ScaleUpStabilized` (True); `FailedGetScale`, `FailedUpdateScale`, and the old controllers'
  `BackoffBoth`, `BackoffDownscale`, `BackoffUpscale` (False).
- ScalingActive: `ValidMetricFound` (True); `ScalingDisabled`, `InvalidSelector`,
  `InvalidMetricSourceType`, `FailedGet*Metric` (False). For `FailedGetPodsMetric` the line says
  which of upstream's errors it is: no pod reports the metric yet (or none answers its
  `/metrics`), the adapter does not serve the metric, no adapter serves `custom.metrics.k8s.io`,
  or the pods are all Pending.

A `Pods` metric with an AverageValue target (the queue autoscaler's chats in flight plus waiting
per pod) is compared as the controller compares it: the average per pod over the target.
- ScalingLimited: `TooFewReplicas`, `TooManyReplicas`, `ScaleUpLimit`, `ScaleDownLimit` (True);
  `DesiredWithinRange` (False).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from tui.core.model import HpaCondition, HpaMetric, HpaView

TOLERANCE = 0.1
"""The controller's default tolerance: a usage ratio within 10 % of 1.0 changes nothing."""

# Metrics that come from metrics.k8s.io (metrics-server); the others come from an adapter.
_RESOURCE_METRIC_FAILURES = {"FailedGetResourceMetric", "FailedGetContainerResourceMetric"}
_BACKOFF = {"BackoffBoth", "BackoffDownscale", "BackoffUpscale"}
METRICS_WAIT_SECONDS = 150.0
"""How long "no metrics yet" is only a wait: metrics-server serves a pod from its second sample
(or its first, if 10 s old by then; `pkg/storage/pod.go`), and Minikube's addon samples every
60 s, so a new deployment's pods have none for up to two minutes, plus an HPA sync."""
_NOT_YET_MEASURED = ("might be unready", "no metrics returned")

METRIC_WORDS = {"kube_llm_chats_active": "in flight + waiting"}
"""Custom metrics people know by another name (components/autoscale-queue's metric)."""


def _flat(text: str) -> str:
    """API text on one line (the line is one line; control characters are the UI's to show)."""
    return " ".join(text.split())


def metric_label(metric: HpaMetric) -> str:
    """The metric's name as people say it: "engine CPU", "backend memory", "requests_per_second"."""
    if metric.name == "cpu":
        resource = "CPU"
    elif metric.name == "memory":
        resource = "memory"
    else:
        resource = METRIC_WORDS.get(metric.name) or _flat(metric.name)
    if metric.container:
        return f"{_flat(metric.container)} {resource}"
    if metric.source == "Resource":
        return f"pod {resource}"
    return resource


def metric_reading(metric: HpaMetric, *, with_target: bool = False, long: bool = False) -> str:
    """A metric's current value, maybe against its target ("engine CPU 72 % against 70 %")."""
    label = metric_label(metric)
    if metric.target_average is not None:
        current = (
            "unknown" if metric.current_average is None else f"{_number(metric.current_average)}"
        )
        if metric.current_average is not None:
            current += " per pod"
        if not with_target:
            return f"{label} {current}"
        target = _number(metric.target_average)
        return f"{label} {current} against {f'a target of {target}' if long else target}"
    if metric.target_utilization is not None:
        current = (
            "unknown" if metric.current_utilization is None else f"{metric.current_utilization} %"
        )
        if long and metric.current_utilization is not None:
            current += " of request"
        if not with_target:
            return f"{label} {current}"
        target = (
            f"a {metric.target_utilization} % target" if long else f"{metric.target_utilization} %"
        )
        return f"{label} {current} against {target}"
    current = _flat(metric.current_value or "") or "unknown"
    if not with_target or metric.target_value is None:
        return f"{label} {current}"
    value = _flat(metric.target_value)
    target = f"a {value} target" if long else value
    return f"{label} {current} against {target}"


def metric_target(metric: HpaMetric) -> str:
    """A metric and its target alone: "engine CPU 70 %", "in flight + waiting 4 per pod"."""
    label = metric_label(metric)
    if metric.target_average is not None:
        return f"{label} {_number(metric.target_average)} per pod"
    if metric.target_utilization is not None:
        return f"{label} {metric.target_utilization} %"
    return f"{label} {_flat(metric.target_value or '')}".rstrip()


def _number(value: float) -> str:
    """A per-pod average as people write it: 3.5, 4, 0.25."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def usage_ratio(metric: HpaMetric) -> float | None:
    """Current over target, when both are known: utilisation, or a Pods metric's average per
    pod (other value targets are not compared)."""
    if metric.target_average is not None and metric.current_average is not None:
        if metric.target_average <= 0:
            return None
        return metric.current_average / metric.target_average
    if metric.target_utilization is None or metric.current_utilization is None:
        return None
    if metric.target_utilization <= 0:
        return None
    return metric.current_utilization / metric.target_utilization


def recommended_replicas(hpa: HpaView, ready_pods: int | None = None) -> int | None:
    """What the utilisation metrics ask for, within the HPA's bounds, as the controller computes it.

    The controller multiplies each metric's usage ratio by the number of ready pods (a ratio within
    the tolerance keeps the current count) and takes the largest answer. `ready_pods` defaults to
    the current replica count. Value targets and unknown readings are left out; None when no
    metric can be computed.
    """
    pods = hpa.current_replicas if ready_pods is None else ready_pods
    wanted: list[int] = []
    for metric in hpa.metrics:
        ratio = usage_ratio(metric)
        if ratio is None:
            continue
        if abs(ratio - 1.0) <= TOLERANCE:
            wanted.append(hpa.current_replicas)
        else:
            wanted.append(math.ceil(ratio * pods))
    if not wanted:
        return None
    return max(hpa.min_replicas, min(hpa.max_replicas, max(wanted)))


def explain(hpa: HpaView | None, now: float, ready_pods: int | None = None) -> str:
    """One plain-words line saying what the HPA is doing and why, from its spec and status alone.

    `now` (epoch seconds) is the present, to date conditions; `ready_pods`, when the caller knows
    it, makes the recommended replica count match the controller's (it counts ready pods only).
    """
    if hpa is None:
        return "no HPA"
    conditions = {c.type: c for c in hpa.conditions}
    able = conditions.get("AbleToScale")
    active = conditions.get("ScalingActive")
    limited = conditions.get("ScalingLimited")
    if able is None and active is None and limited is None:
        return (
            f"waiting for the HPA controller's first sync "
            f"({hpa.current_replicas} replicas, min {hpa.min_replicas}, max {hpa.max_replicas})"
        )
    if able is not None and able.status == "False":
        return _cannot_scale(able, now)
    if active is not None and active.status == "False":
        return _inactive(active, now)

    current, desired = hpa.current_replicas, hpa.desired_replicas
    limit = limited.reason if limited is not None and limited.status == "True" else None
    wants = recommended_replicas(hpa, ready_pods)
    if desired > current:
        return _scaling_up(hpa, limit, wants)
    if desired < current:
        return _scaling_down(hpa, limit, wants)
    return _holding(hpa, able, limit, wants, ready_pods)


def _since(condition: HpaCondition, now: float) -> str:
    """' since 12:00:01' when the condition says since when it holds, else nothing.

    A moment rather than a duration, so the line stays the same from one refresh to the next (an
    event log can show each change once); a date is added when it is a day old or more.
    """
    if condition.since is None:
        return ""
    form = "%H:%M:%S" if now - condition.since < 86400 else "%Y-%m-%d %H:%M:%S"
    return " since " + time.strftime(form, time.localtime(condition.since))


def _detail(condition: HpaCondition) -> str:
    """The condition's reason and (single-line) message, as the controller wrote them."""
    message = _flat(condition.message)
    reason = _flat(condition.reason)
    return f"{reason}: {message}" if message else reason


def _cannot_scale(able: HpaCondition, now: float) -> str:
    """AbleToScale is False: the controller cannot read or change the target's scale."""
    if able.reason in _BACKOFF:
        return f"holding{_since(able, now)}: waiting after the last resize ({_detail(able)})"
    if able.reason == "FailedGetScale":
        return f"not scaling{_since(able, now)}: cannot read the target's scale ({_detail(able)})"
    if able.reason == "FailedUpdateScale":
        return f"not scaling{_since(able, now)}: the last resize failed ({_detail(able)})"
    return f"not scaling{_since(able, now)}: {_detail(able)}"


def _inactive(active: HpaCondition, now: float) -> str:
    """ScalingActive is False: autoscaling is off or no replica count could be computed."""
    since = _since(active, now)
    if active.reason == "ScalingDisabled":
        return f"not scaling{since}: autoscaling is disabled (the target has 0 replicas)"
    if active.reason in _RESOURCE_METRIC_FAILURES and _waits_for_metrics(active, now):
        return (
            f"waits for metrics{since}: no pod measured yet; metrics-server measures a pod "
            f"from its second sample, once a minute on Minikube ({_flat(active.reason)})"
        )
    if active.reason in _RESOURCE_METRIC_FAILURES:
        return f"not scaling{since}: no metrics ({_detail(active)}); {_resource_hint(active)}"
    hint = _pods_metric_hint(active) if active.reason == "FailedGetPodsMetric" else None
    if hint is not None:
        return f"not scaling{since}: {hint} ({_detail(active)})"
    if active.reason in ("FailedGetObjectMetric", "FailedGetExternalMetric"):
        kind = "Object" if active.reason == "FailedGetObjectMetric" else "External"
        return (
            f"not scaling{since}: the {kind} metric cannot be read ({_detail(active)}); "
            "is an adapter serving it?"
        )
    if active.reason.startswith("FailedGet") and active.reason.endswith("Metric"):
        return (
            f"not scaling{since}: no metrics ({_detail(active)}); "
            "is the custom or external metrics adapter running?"
        )
    return f"not scaling{since}: {_detail(active)}"


def _waits_for_metrics(active: HpaCondition, now: float) -> bool:
    """No pod measured yet, for less time than metrics-server takes to measure new pods."""
    young = active.since is None or now - active.since < METRICS_WAIT_SECONDS
    return young and any(words in active.message for words in _NOT_YET_MEASURED)


def _resource_hint(active: HpaCondition) -> str:
    """What to check, from upstream's error text (the reason alone does not say)."""
    message = active.message.lower()
    if "missing request" in message:
        return "a container the HPA measures sets no request for that resource"
    if "might be unready" in message:
        # Upstream's words when no pod has a sample yet: new pods, or a metrics pipeline that
        # has not scraped them.
        return "the pods may be too new to have metrics; if it lasts, is metrics-server running?"
    return "is metrics-server running?"


def _pods_metric_hint(active: HpaCondition) -> str | None:
    """What upstream's error for a Pods metric means, in words (the reason alone does not say);
    None for an error it does not know."""
    message = active.message
    name = ""
    if "unable to get metric " in message:
        name = message.split("unable to get metric ", 1)[1].split(":", 1)[0].strip()
    said = METRIC_WORDS.get(name, name) or "the metric"
    if "no metrics returned from custom metrics API" in message:
        return (
            f"no pod reports {said} yet: the pods are new, Prometheus has not scraped them, or "
            "their /metrics does not answer"
        )
    if "could not find the requested resource" in message:
        return "no adapter serves custom.metrics.k8s.io: install prometheus-adapter (README)"
    if "could not find the metric" in message:
        return (
            f"the metrics adapter does not serve {_flat(name)}: check the name in the HPA "
            "against the adapter's rules, or no pod has reported it yet"
        )
    if "might be unready" in message:
        return "no pod with a reading is running yet (all Pending)"
    if "must be positive" in message:
        return "the HPA's target is zero or below"
    return None


def _readings(metrics: Sequence[HpaMetric], *, with_target: bool, long: bool = False) -> str:
    return ", ".join(metric_reading(m, with_target=with_target, long=long) for m in metrics)


def _above_target(hpa: HpaView) -> list[HpaMetric]:
    """Metrics above their target by more than the tolerance."""
    return [
        m for m in hpa.metrics if (ratio := usage_ratio(m)) is not None and ratio > 1 + TOLERANCE
    ]


def _scaling_up(hpa: HpaView, limit: str | None, wants: int | None) -> str:
    above = _above_target(hpa)
    if hpa.current_replicas < hpa.min_replicas and not above:
        return f"scaling up to the minimum: {hpa.current_replicas} -> {hpa.desired_replicas}"
    reason = _readings(above or list(hpa.metrics), with_target=True, long=True)
    line = f"scaling up: {reason}, {hpa.current_replicas} -> {hpa.desired_replicas}"
    if limit == "TooManyReplicas":
        return f"{line} (capped at the maximum {hpa.max_replicas})"
    if limit == "ScaleUpLimit":
        extra = f"; wants {wants}" if wants is not None and wants > hpa.desired_replicas else ""
        return f"{line} (as fast as the scale-up policy allows{extra})"
    return line


def _scaling_down(hpa: HpaView, limit: str | None, wants: int | None) -> str:
    line = f"scaling down: {hpa.current_replicas} -> {hpa.desired_replicas}"
    if hpa.current_replicas > hpa.max_replicas:
        return f"{line} (above the maximum {hpa.max_replicas})"
    if hpa.metrics:
        line += f": {_readings(hpa.metrics, with_target=True)}"
    if limit == "TooFewReplicas":
        return f"{line} (stops at the minimum {hpa.min_replicas})"
    if limit == "ScaleDownLimit":
        extra = f"; wants {wants}" if wants is not None and wants < hpa.desired_replicas else ""
        return f"{line} (as fast as the scale-down policy allows{extra})"
    return line


def _holding(
    hpa: HpaView,
    able: HpaCondition | None,
    limit: str | None,
    wants: int | None,
    ready_pods: int | None,
) -> str:
    """Desired equals current: say what holds the count where it is."""
    current = hpa.current_replicas
    stabilised = able.reason if able is not None else None
    # A recommendation held back by a window is only news when it would move the count: at the
    # minimum the controller still reports ScaleDownStabilized for recommendations below it.
    if (
        stabilised == "ScaleDownStabilized"
        and (wants is None or wants < current)
        and (wants is not None or current > hpa.min_replicas)
    ):
        wanted = f"wants {wants}, " if wants is not None else ""
        return (
            f"scale-down waits for the {hpa.scale_down_window_seconds} s stabilisation window"
            f" ({wanted}keeps {current})"
        )
    if stabilised == "ScaleUpStabilized" and (wants is None or wants > current):
        wanted = f"wants {wants}, " if wants is not None else ""
        return (
            f"scale-up waits for the {hpa.scale_up_window_seconds} s stabilisation window"
            f" ({wanted}keeps {current})"
        )
    above = _above_target(hpa)
    if limit == "TooManyReplicas" or (current >= hpa.max_replicas and above):
        readings = _readings(above or list(hpa.metrics), with_target=True)
        return f"at maximum {hpa.max_replicas}" + (f": {readings}" if readings else "")
    if above and ready_pods is not None and ready_pods < current:
        # For a CPU scale-up the controller counts pods that are not Ready yet as idle, which
        # can bring the average back within the tolerance until they are Ready.
        waiting = current - ready_pods
        verbs = "is not Ready yet and counts" if waiting == 1 else "are not Ready yet and count"
        return (
            f"holding at {current}: {_readings(above, with_target=True)}, but {waiting} of the "
            f"{current} pods {verbs} as idle"
        )
    if limit in ("ScaleUpLimit", "ScaleDownLimit"):
        kind = "scale-up" if limit == "ScaleUpLimit" else "scale-down"
        wanted = f" (wants {wants})" if wants is not None and wants != current else ""
        return f"holding at {current}: the {kind} policy allows no change yet{wanted}"
    ratios = [r for m in hpa.metrics if (r := usage_ratio(m)) is not None]
    within = [
        m for m in hpa.metrics if (r := usage_ratio(m)) is not None and abs(r - 1) <= TOLERANCE
    ]
    if within and not above:
        return f"holding: within tolerance ({_readings(within, with_target=True)})"
    all_below = bool(ratios) and all(r < 1 - TOLERANCE for r in ratios)
    if limit == "TooFewReplicas" or (current <= hpa.min_replicas and all_below):
        readings = _readings(hpa.metrics, with_target=False)
        suffix = ", all below target" if all_below else ""
        return f"at minimum {hpa.min_replicas}" + (f": {readings}{suffix}" if readings else "")
    if not hpa.metrics:
        return f"holding at {current}"
    # Below target, yet one pod fewer would push a metric past it: the count is what it asks.
    needed = f" (the metrics still ask for {wants})" if wants == current else ""
    return f"holding at {current}: {_readings(hpa.metrics, with_target=True)}{needed}"
