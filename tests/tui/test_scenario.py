"""Scenario files: every shipped one parses, every mistake names the file, the line and what was
expected, nothing runs on a bad file, and `--dry-run` prints the plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.sandbox.harness import ROOT
from tui.scenario.spec import EXPECTATIONS, STEPS, ScenarioError, load_scenario, parse_scenario
from tui.scenario.words import describe_expectation, describe_step, plan_text

SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))
HERE = Path("my.yaml")


def problems(text: str) -> list[str]:
    """The problems of a scenario text, asserting there are some."""
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, HERE)
    return caught.value.problems


def test_the_four_shipped_scenarios_parse() -> None:
    names = {path.stem for path in SHIPPED}
    assert {"poster", "pod-kill-under-load", "hpa-up-and-down", "rolling-update"} <= names
    for path in SHIPPED:
        scenario = load_scenario(path)
        assert scenario.name == path.stem
        assert scenario.steps
        assert scenario.expectations


def test_a_good_file_gives_typed_steps_with_their_lines_and_defaults() -> None:
    scenario = parse_scenario(
        "name: demo\n"
        "settings: {max_tokens: 8}\n"
        "steps:\n"
        "  - burst: {users: 4}\n"
        "  - sleep: 2\n"
        "  - sustained: {users: 3, duration: 10}\n"
        "  - evict:\n"
        "  - wait_for: {replicas_at_most: 2, within: 30}\n"
        "expect:\n"
        "  - ttft_p95_below: 1.5\n"
        "  - replicas_reach: {replicas: 3, within: 60}\n",
        HERE,
    )
    assert scenario.max_tokens == 8
    assert [(s.kind, s.line) for s in scenario.steps] == [
        ("burst", 4), ("sleep", 5), ("sustained", 6), ("evict", 7), ("wait_for", 8),
    ]  # fmt: skip
    burst, sleep, sustained, evict, wait = scenario.steps
    assert sustained.get("duration") == 10.0
    assert burst.get("chats_per_user") == 3  # the default
    assert burst.get("background") is False
    assert sleep.get("seconds") == 2.0
    assert isinstance(sleep.get("seconds"), float)
    assert evict.get("pod") == "random"
    assert wait.get("replicas_at_most") == 2
    assert wait.get("replicas") is None
    assert [(e.kind, e.line) for e in scenario.expectations] == [
        ("ttft_p95_below", 10), ("replicas_reach", 11),
    ]  # fmt: skip
    assert not scenario.needs_deployment_writes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "my.yaml:1: the file is empty: expected `name:` and `steps:`"),
        ("name: [x\n", "my.yaml:2: not valid YAML: expected ',' or ']'"),
        ("- a\n", "my.yaml:1: the scenario: expected a mapping, got a list"),
        ("steps:\n  - sleep: 1\n", "my.yaml:1: missing `name:` (a string)"),
        ("name: x\n", "my.yaml:1: missing `steps:` (a list of steps)"),
        ("name: x\nsteps: []\n", "my.yaml:2: steps: expected at least one step"),
        ("name: x\nsteps: {sleep: 1}\n", "my.yaml:2: step: expected a list, got a mapping"),
        ("name: x\nsteps:\n  - sleep: 1\nspeed: 3\n", "my.yaml:4: unknown key 'speed'"),
        ("name: x\nsteps:\n  - explode: {}\n", "my.yaml:3: step: unknown kind 'explode' "
         "(expected one of: burst, sustained"),
        ("name: x\nsteps:\n  - sleep: 1\n    kill: {}\n",
         "my.yaml:3: step: expected one `kind: parameters` entry"),
        ("name: x\nsteps:\n  - burst: {users: 0}\n",
         "my.yaml:3: burst users: expected at least 1, got 0"),
        ("name: x\nsteps:\n  - burst: {users: 65}\n",
         "my.yaml:3: burst users: expected at most 64, got 65"),
        ("name: x\nsteps:\n  - burst: {users: 2.5}\n",
         "my.yaml:3: burst users: expected a whole number, got 2.5"),
        ("name: x\nsteps:\n  - burst: {users: true}\n",
         "my.yaml:3: burst users: expected a whole number, got True"),
        ("name: x\nsteps:\n  - burst: {users: 2, background: maybe}\n",
         "my.yaml:3: burst background: expected true or false, got 'maybe'"),
        ("name: x\nsteps:\n  - sustained: {users: 4}\n",
         "my.yaml:3: sustained: missing 'duration' (a number)"),
        ("name: x\nsteps:\n  - sleep: soon\n",
         "my.yaml:3: sleep seconds: expected a number, got 'soon'"),
        ("name: x\nsteps:\n  - kill: {pod: random, force: yes}\n",
         "my.yaml:3: kill: unknown parameter 'force' (expected: pod)"),
        ("name: x\nsteps:\n  - kill: {pod: [a, b]}\n",
         "my.yaml:3: kill pod: expected a string, got a list"),
        ("name: x\nsteps:\n  - burst: {users: 2, users: 3}\n",
         "my.yaml:3: burst: 'users' is given twice"),
        ("name: x\nsteps:\n  - wait_for: {within: 5}\n",
         "my.yaml:3: wait_for: expected exactly one of replicas, replicas_at_most, ready_pods"),
        ("name: x\nsteps:\n  - wait_for: {replicas: 3, ready_pods: 2, within: 5}\n",
         "my.yaml:3: wait_for: expected exactly one of replicas, replicas_at_most, ready_pods, "
         "got replicas, ready_pods"),
        ("name: x\nsteps:\n  - sleep: 1\nexpect:\n  - ttft_p95_below: -1\n",
         "my.yaml:5: ttft_p95_below seconds: expected at least 0, got -1.0"),
        ("name: x\nsteps:\n  - sleep: 1\nexpect:\n  - no_failures_during: {step: rollout}\n",
         "my.yaml:5: no_failures_during step: expected one of rollout_restart, kill, evict, "
         "got 'rollout'"),
        ("name: x\nsteps:\n  - kill: {}\nexpect:\n  - failures_only_on_killed_pod: rollout\n",
         "my.yaml:5: failures_only_on_killed_pod step: expected one of kill, evict, "
         "got 'rollout'"),
        ("name: x\nsteps:\n  - kill: {}\nexpect:\n  - failures_only_on_killed_pod: {}\n",
         "my.yaml:5: failures_only_on_killed_pod: missing 'step' (a string)"),
        ("name: x\nsteps:\n  - evict: {}\nexpect:\n  - failures_only_on_killed_pod: kill\n",
         "my.yaml:5: failures_only_on_killed_pod: expected a kill step to judge, the steps have "
         "none"),
        ("name: x\nsteps:\n  - sleep: 1\nexpect:\n  - faster: 1\n",
         "my.yaml:5: expectation: unknown kind 'faster'"),
        ("name: x\nsettings: {max_tokens: 0}\nsteps:\n  - sleep: 1\n",
         "my.yaml:2: settings max_tokens: expected at least 1, got 0"),
    ],
)  # fmt: skip
def test_each_mistake_names_the_file_the_line_and_what_was_expected(
    text: str, expected: str
) -> None:
    found = problems(text)
    assert any(problem.startswith(expected) for problem in found), found


def test_every_problem_is_reported_in_the_order_of_the_file() -> None:
    found = problems(
        "name: x\n"
        "steps:\n"
        "  - burst: {users: 0}\n"
        "  - wait_for: {within: 5}\n"
        "  - sleep: soon\n"
        "expect:\n"
        "  - recovery_below: fast\n"
    )
    assert [p.split(":")[1] for p in found] == ["3", "4", "5", "7"]


def test_every_step_and_expectation_kind_has_words() -> None:
    minimal = {
        "burst": "{users: 2}", "sustained": "{users: 2, duration: 5}",
        "rate": "{per_second: 1, duration: 5}", "stop_load": "{}", "sleep": "1",
        "evict": "{pod: llm-backend-abc}", "kill": "{}", "rollout_restart": "{}",
        "scale": "{replicas: 3}", "wait_for": "{ready_pods: 2, within: 9}",
    }  # fmt: skip
    assert set(minimal) == set(STEPS)
    expectations = {
        "ttft_p95_below": "1", "e2e_p95_below": "2", "health_p50_below": "0.076",
        "failures_below_percent": "1", "failures_at_most": "0", "recovery_below": "30",
        "replicas_reach": "{replicas: 3, within: 60}",
        "replicas_return": "{replicas: 2, within: 60}",
        "failures_only_on_killed_pod": "kill",
        "no_failures_during": "rollout_restart",
    }  # fmt: skip
    assert set(expectations) == set(EXPECTATIONS)
    text = "name: all\nsteps:\n" + "".join(f"  - {k}: {v}\n" for k, v in minimal.items())
    text += "expect:\n" + "".join(f"  - {k}: {v}\n" for k, v in expectations.items())
    scenario = parse_scenario(text, HERE)
    assert scenario.needs_deployment_writes
    words = [describe_step(step) for step in scenario.steps]
    assert words[5] == "evict pod llm-backend-abc (Eviction API: the PodDisruptionBudget decides)"
    assert words[6] == "force-delete a random Ready pod (grace period 0)"
    assert "kubectl.kubernetes.io/restartedAt" in words[7]
    assert words[9] == "wait up to 9 s for Ready pods at least 2"
    said = [describe_expectation(e) for e in scenario.expectations]
    assert said[2] == "health check p50 below 76 ms"
    assert said[-2] == (
        "the only failed chats are those each kill step's pod held at the kill (running or "
        "queued there), none served by another pod"
    )
    assert said[-1] == "no failed chat during any rollout_restart step"
    plan = plan_text(scenario)
    for number, step in enumerate(scenario.steps, 1):
        assert f"{number:>2}. (line {step.line}) {describe_step(step)}" in plan
    assert "the cockpit's Role may not" in plan


def kube_llm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `kube-llm ARGS` as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "tui", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path: Path) -> None:
    # No kubeconfig at all: the dry run says what it assumed for the HPA and writes nothing.
    result = kube_llm(
        "scenario", "run", str(ROOT / "scenarios" / "poster.yaml"), "--dry-run",
        "--kubeconfig", str(tmp_path / "none"), "--report-dir", str(tmp_path / "reports"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    plan = plan_text(load_scenario(ROOT / "scenarios" / "poster.yaml"))
    assert result.stdout.startswith(plan + "\nbounds from the HPA:\n")
    assert "no HPA read (kubeconfig file not found" in result.stdout
    assert "assumed Kubernetes' default behaviour" in result.stdout
    assert "line 26: wait_for replicas_at_most 2, from 3: 3 -> 2 replicas: at most 465 s" in (
        result.stdout
    )
    assert not (tmp_path / "reports").exists()


def test_dry_run_of_several_files_plans_each_and_a_bad_one_runs_nothing(tmp_path: Path) -> None:
    shipped = sorted(str(path) for path in (ROOT / "scenarios").glob("*.yaml"))
    none = ("--kubeconfig", str(tmp_path / "none"), "--report-dir", str(tmp_path / "reports"))
    result = kube_llm("scenario", "run", *shipped, "--dry-run", *none)
    assert result.returncode == 0, result.stderr
    for path in shipped:
        assert f"scenario {Path(path).stem} ({path})" in result.stdout
    assert "WILL FAIL" not in result.stdout
    bad = tmp_path / "short.yaml"
    bad.write_text("name: short\nsteps:\n  - wait_for: {ready_pods: 2, within: auto}\n")
    refused = kube_llm("scenario", "run", shipped[0], str(bad), *none)
    assert refused.returncode == 2
    assert f"{bad}:3: wait_for: within: auto follows the HPA" in refused.stderr
    assert not (tmp_path / "reports").exists()


def test_dry_run_shows_a_fixed_wait_that_cannot_hold(tmp_path: Path) -> None:
    short = tmp_path / "short.yaml"
    short.write_text(
        "name: short\nsteps:\n  - sustained: {users: 1, duration: 5}\n  - stop_load: {}\n"
        "  - wait_for: {replicas_at_most: 2, within: 60}\n"
    )
    result = kube_llm(
        "scenario", "run", str(short), "--dry-run", "--kubeconfig", str(tmp_path / "none")
    )
    assert result.returncode == 0, result.stderr
    assert "line 5: wait_for WILL FAIL: 60 s is shorter than the HPA can possibly scale" in (
        result.stdout
    )


def test_a_bad_file_runs_nothing_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - burst: {users: 0}\n  - explode: {}\n")
    result = kube_llm("scenario", "run", str(bad), "--kubeconfig", str(tmp_path / "none"),
                      "--report-dir", str(tmp_path / "reports"))  # fmt: skip
    assert result.returncode == 2
    assert f"{bad}:3: burst users: expected at least 1, got 0" in result.stderr
    assert f"{bad}:4: step: unknown kind 'explode'" in result.stderr
    assert "Traceback" not in result.stderr
    # The kubeconfig was never read: the file's problems come first, and nothing was written.
    assert "kubeconfig" not in result.stderr
    assert not (tmp_path / "reports").exists()
    missing = kube_llm("scenario", "run", str(tmp_path / "nope.yaml"), "--dry-run")
    assert missing.returncode == 2
    assert f"{tmp_path / 'nope.yaml'}: cannot read it" in missing.stderr


def test_streaming_is_a_setting_and_a_bad_value_says_so(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    text = "name: plain\nsettings: {stream: false}\nsteps:\n  - burst: {users: 1}\n"
    scenario = parse_scenario(text, path)
    assert scenario.stream is False
    assert "whole replies (stream: false, no TTFT)" in plan_text(scenario)
    assert parse_scenario(text.replace("false", "true"), path).stream is True
    assert "streamed replies" in plan_text(
        parse_scenario(text.replace("{stream: false}", "{}"), path)
    )
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(text.replace("false", "sometimes"), path)
    assert raised.value.problems == [
        f"{path}:2: settings stream: expected true or false, got 'sometimes'"
    ]
