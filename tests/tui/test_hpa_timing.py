"""`within: auto`: the HPA's pace from its spec, the bounds scenarios wait by, and fixed waits
that no cluster with that HPA could meet (issue 15's numbers for the minikube overlay)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kube_llm_data.hpa_policy import ScalingPolicy, ScalingRules, scale_limit
from tests.kustomize.manifests import one, rendered
from tests.sandbox.harness import ROOT
from tui.cluster.hpa_timing import go_duration_seconds, resolution_from_windows, timing_from
from tui.core.hpa_timing import HpaTiming, scale_bound
from tui.scenario.bounds import plan_lines, preflight, resolve, too_short
from tui.scenario.spec import AUTO, ScenarioError, load_scenario, parse_scenario


def hpa_spec(target: str) -> dict[str, Any]:
    """The HPA spec a tree renders."""
    spec: dict[str, Any] = one(rendered(target), "HorizontalPodAutoscaler", "llm-backend")["spec"]
    return spec


def minikube(sync: float = 15, resolution: float = 60) -> HpaTiming:
    return HpaTiming.from_spec(hpa_spec("minikube"), sync, resolution)


def test_minikube_scale_down_takes_the_window_then_a_pod_a_minute() -> None:
    # Issue 15: 3 -> 2 about 300 s, 6 -> 2 about 480 s (the window, then 3 more minutes).
    three = scale_bound(minikube(), 3, 2)
    assert three.lowest == 300 - 15  # the window may have begun one sync before the stop
    assert three.highest == 2 * 60 + 15 + 300 + 15 + 15
    six = scale_bound(minikube(), 6, 2)
    assert six.lowest == 300 - 15 + 3 * 60
    assert six.highest == 2 * 60 + 15 + 300 + 15 + 3 * (60 + 15) + 15
    assert "300 s scale-down stabilisation window" in six.explain()
    assert "3 more policy period(s) of 60 s" in six.explain()


def test_minikube_scale_up_waits_for_metrics_not_for_a_window() -> None:
    # Issue 15: "a scale-up can take about 75 s" with 60 s metrics; the bound allows two samples.
    up = scale_bound(minikube(), 2, 3)
    assert up.lowest == 0
    assert up.highest == 2 * 60 + 15 + 15
    # Pods 2 or 100 % per 15 s (Max): 2 -> 6 is 2 -> 4 -> 6, one more period.
    assert scale_bound(minikube(), 2, 6).lowest == 15
    assert scale_bound(minikube(), 2, 4).lowest == 0


def test_the_sandbox_overlay_is_quick() -> None:
    sandbox = HpaTiming.from_spec(hpa_spec("sandbox"), 5, 5)
    down = scale_bound(sandbox, 3, 2)
    assert down.lowest == 30 - 5
    assert down.highest == 2 * 5 + 5 + 30 + 5 + 5


def test_kubernetes_defaults_fill_what_the_spec_leaves_out() -> None:
    # A behaviour, even an empty one, gets the API's defaults (no behaviour at all is the
    # controller's legacy path: the next test).
    timing = HpaTiming.from_spec({"minReplicas": 1, "maxReplicas": 10, "behavior": {}}, 15, 15)
    assert timing.down.stabilization_window_seconds == 300
    assert timing.down.policies == (ScalingPolicy("Percent", 100, 15),)
    assert timing.up.policies == (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15))
    # Up: 4 pods or 100 % per 15 s, whichever is more: 1 -> 5 -> 10.
    assert scale_bound(timing, 1, 10).lowest == 15
    assert scale_bound(timing, 10, 1).lowest == 300 - 15


def test_an_hpa_without_behavior_takes_the_controllers_legacy_pace() -> None:
    # No spec.behavior: upstream's legacy path, up to max(2 x current, 4) replicas per sync,
    # no rate limit down, only the controller's 300 s downscale window.
    spec = {"minReplicas": 1, "maxReplicas": 10}
    legacy = HpaTiming.from_spec(spec, 15, 60)
    defaults = HpaTiming.from_spec({**spec, "behavior": {}}, 15, 60)
    # 2 -> 6: 2 -> 4 (max(4, 4)), then 4 -> 6 (max(8, 4) capped): one more sync. The default
    # behaviour (4 pods or 100 % per 15 s) does it in one period.
    assert scale_bound(defaults, 2, 6).lowest == 0
    up = scale_bound(legacy, 2, 6)
    assert up.lowest == 15
    assert up.highest == 2 * 60 + 15 + 15 + 15
    assert "1 more HPA sync(s) of 15 s" in up.explain()
    # Each step is one sync, whatever its period: 1 -> 4 -> 8 -> 10 is two more syncs.
    assert scale_bound(HpaTiming.from_spec(spec, 5, 60), 1, 10).lowest == 2 * 5
    assert scale_bound(HpaTiming.from_spec({**spec, "behavior": {}}, 5, 60), 1, 10).lowest == 15
    # Down: the window, then all the way at once.
    down = scale_bound(legacy, 10, 1)
    assert down.lowest == 300 - 15
    assert down.highest == 2 * 60 + 15 + 300 + 15 + 15
    words = " ".join(legacy.words())
    assert "no spec.behavior" in words
    assert "max(2 x current, 4) replicas per sync" in words
    assert "--horizontal-pod-autoscaler-downscale-stabilization" in words
    assert "no spec.behavior" not in " ".join(defaults.words())


HALF_PER_MINUTE = ScalingPolicy("Percent", 50, 60)
"""At most 50 % more or fewer pods per minute."""


@pytest.mark.parametrize(
    ("rules", "replicas", "up", "limit"),
    [
        # upstream rounds a Percent scale-up up and a scale-down down
        (ScalingRules(0, "Max", (HALF_PER_MINUTE,)), 3, True, 5),
        (ScalingRules(0, "Max", (HALF_PER_MINUTE,)), 3, False, 1),
        # Min picks the policy that changes the least, Max the most
        (ScalingRules(0, "Min", (ScalingPolicy("Pods", 1, 60), HALF_PER_MINUTE)), 6, False, 5),
        (ScalingRules(0, "Max", (ScalingPolicy("Pods", 1, 60), HALF_PER_MINUTE)), 6, False, 3),
        # Disabled allows no change: the limit is where the replicas are
        (ScalingRules(0, "Disabled", (ScalingPolicy("Pods", 1, 60),)), 6, False, 6),
    ],
)
def test_policy_limits_follow_upstream(
    rules: ScalingRules, replicas: int, up: bool, limit: int
) -> None:
    assert scale_limit(rules, replicas, up=up) == limit


def test_a_change_the_hpa_can_never_make_says_why() -> None:
    timing = minikube()
    assert scale_bound(timing, 2, 8).highest is None
    assert "maxReplicas is 6" in scale_bound(timing, 2, 8).explain()
    off = HpaTiming.from_spec({"behavior": {"scaleDown": {"selectPolicy": "Disabled"}}}, 15, 60)
    assert "disabled" in scale_bound(off, 3, 2).explain()
    assert too_short(600, scale_bound(off, 3, 2), 0) is not None


def test_a_fixed_wait_shorter_than_the_least_time_fails_and_says_by_how_much() -> None:
    bound = scale_bound(minikube(), 3, 2)
    why = too_short(90, bound, 0)
    assert why is not None
    assert "90 s is shorter than the HPA can possibly scale 3 -> 2 replicas: at least 285 s" in why
    assert "use within: auto or at least 465 s" in why
    assert too_short(90, bound, 200) is None  # 200 s since the stop: 85 s left at least
    assert too_short(90, bound, None) is None  # when the stop is unknown, nothing is claimed
    assert too_short(300, bound, 0) is None


def test_auto_is_the_highest_less_what_passed() -> None:
    bound = scale_bound(minikube(), 3, 2)
    assert resolve(AUTO, bound).seconds == 465
    assert resolve(AUTO, bound, 100).seconds == 365
    assert "3 -> 2 replicas: at most 465 s" in resolve(AUTO, bound, 100).words
    assert resolve(42.0, bound).seconds == 42


OLD_POSTER = """\
name: old-poster
steps:
  - sustained: {users: 10, duration: 120}
  - wait_for: {replicas: 3, within: 60}
  - stop_load: {}
  - sleep: 5
  - wait_for: {replicas_at_most: 2, within: 90}
expect:
  - replicas_reach: {replicas: 3, within: 60}
  - replicas_return: {replicas: 2, within: 90}
"""


def test_the_old_fixed_poster_fails_preflight_on_minikube_and_passes_on_the_sandbox() -> None:
    scenario = parse_scenario(OLD_POSTER, Path("old.yaml"))
    found = preflight(scenario, minikube(), 2)
    assert [(line, what) for line, what, _ in found] == [
        (10, "replicas_return"),
        (7, "wait_for"),
    ]
    assert "at least 280 s" in found[1][2]  # 285 s less the 5 s sleep after the stop
    assert preflight(scenario, HpaTiming.from_spec(hpa_spec("sandbox"), 5, 5), 2) == []


def test_the_shipped_scenarios_hold_on_both_profiles() -> None:
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        scenario = load_scenario(path)
        for timing in (minikube(), HpaTiming.from_spec(hpa_spec("sandbox"), 15, 5)):
            assert preflight(scenario, timing, 2) == [], path
            assert not [line for line in plan_lines(scenario, timing) if "WILL FAIL" in line]


def test_auto_parses_where_the_hpa_decides_and_nowhere_else(tmp_path: Path) -> None:
    text = "name: a\nsteps:\n  - wait_for: {replicas_at_most: 2, within: auto}\n"
    assert parse_scenario(text, tmp_path / "a.yaml").steps[0].get("within") == AUTO
    for bad, words in [
        ("  - wait_for: {ready_pods: 2, within: auto}\n", "within: auto follows the HPA"),
        ("  - wait_for: {replicas: 2, within: soon}\n", "expected a number or auto, got 'soon'"),
        ("  - rollout_restart: {within: auto}\n", "expected a number, got 'auto'"),
    ]:
        with pytest.raises(ScenarioError) as raised:
            parse_scenario("name: a\nsteps:\n" + bad, tmp_path / "a.yaml")
        assert words in str(raised.value)


def test_the_metrics_resolution_is_read_from_pod_metrics_windows() -> None:
    assert go_duration_seconds("1m0.5s") == 60.5
    assert go_duration_seconds("5.012s") == pytest.approx(5.012)
    assert go_duration_seconds("250ms") == 0.25
    assert go_duration_seconds("soon") is None
    assert resolution_from_windows([{"window": "59.8s"}, {"window": "12s"}]) == 60
    assert resolution_from_windows([{"window": "x"}]) is None
    hpa = {"metadata": {"name": "llm-backend"}, "spec": hpa_spec("minikube")}
    read = timing_from(
        hpa, [{"window": "1m0s"}], sync_seconds=15, sync_given=False, resolution_seconds=None
    )
    assert read.resolution_seconds == 60
    assert any("the pods' metrics.k8s.io windows" in line for line in read.words())
    assert any("Kubernetes' default" in line for line in read.words())
    assumed = timing_from(hpa, None, sync_seconds=5, sync_given=True, resolution_seconds=None)
    assert assumed.resolution_seconds == 60
    assert assumed.resolution_assumed
    assert not read.resolution_assumed
    assert any("assumed" in line for line in assumed.words())
    assert any("--hpa-sync-seconds" in line for line in assumed.words())
