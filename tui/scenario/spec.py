"""Scenario files: timed steps and expectations with thresholds, parsed before anything runs.

A scenario is YAML (see `scenarios/*.yaml`)::

    name: pod-kill-under-load
    settings: {max_tokens: 16}
    steps:
      - sustained: {users: 6, duration: 60}   # runs in the background until it ends or stop_load
      - sleep: 5
      - kill: {pod: random}                   # grace 0; `evict` asks the Eviction API
      - wait_for: {ready_pods: 2, within: 60}
      - stop_load: {}
      - wait_for: {replicas_at_most: 2, within: auto}   # as long as the live HPA can take
    expect:
      - failures_below_percent: 1
      - recovery_below: 30

`parse_scenario` checks everything first and raises `ScenarioError` with every problem as
`FILE:LINE: what was expected`, so a bad file runs nothing. Lines come from pyyaml's node marks.
The steps and expectations in words (and `--dry-run`'s plan) are in `tui.scenario.words`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


class ScenarioError(ValueError):
    """A scenario file that cannot run; `problems` are its `FILE:LINE: ...` lines."""

    def __init__(self, problems: list[str]) -> None:
        """Every problem found, one line each."""
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Param:
    """One parameter of a step or an expectation: its type, bounds and default."""

    kind: type
    required: bool = True
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    auto: bool = False
    """Also takes `auto`: the bound computed from the live HPA when the run gets there."""


@dataclass(frozen=True)
class Entry:
    """One step or expectation of the file: its kind, its checked parameters, and its line."""

    kind: str
    params: tuple[tuple[str, Any], ...]
    line: int

    def get(self, name: str) -> Any:
        """A parameter's value (its default when the file left it out)."""
        return dict(self.params).get(name)


Step = Entry
"""A step: `kind` is one of `STEPS`."""
Expectation = Entry
"""An expectation: `kind` is one of `EXPECTATIONS`."""


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario file."""

    path: Path
    name: str
    description: str
    steps: tuple[Step, ...]
    expectations: tuple[Expectation, ...] = ()
    max_tokens: int = 64
    stream: bool = True
    """False: the load asks for whole replies (`stream: false`), so there is no TTFT."""
    ready_timeout: float = 60.0
    first_chat_wait: float = 15.0
    recovery_wait: float = 60.0
    """After the steps, how long each kill's replacement may take to be Ready before the
    record is taken."""

    @property
    def needs_deployment_writes(self) -> bool:
        """Whether a step patches the Deployment (rollout restart, scale): the cockpit's Role
        may not, so such a scenario needs another context."""
        return any(step.kind in {"rollout_restart", "scale"} for step in self.steps)


_USERS = Param(int, minimum=1, maximum=64, help="simulated users at once")
_WITHIN = Param(float, minimum=0.1, maximum=3600, help="seconds", auto=True)

AUTO = "auto"
"""`within: auto`: as long as the live HPA can take (`tui.core.hpa_timing`)."""

STEPS: dict[str, dict[str, Param]] = {
    "burst": {
        "users": _USERS,
        "chats_per_user": Param(int, False, 3, 1, 100),
        "background": Param(bool, False, False),
    },
    "sustained": {"users": _USERS, "duration": Param(float, minimum=0.1, maximum=600)},
    "rate": {
        "per_second": Param(float, minimum=0.01, maximum=50),
        "duration": Param(float, minimum=0.1, maximum=600),
        "users": Param(int, False, 64, 1, 64),
    },
    "stop_load": {},
    "sleep": {"seconds": Param(float, minimum=0, maximum=3600)},
    "evict": {"pod": Param(str, False, "random")},
    "kill": {"pod": Param(str, False, "random")},
    "rollout_restart": {"within": Param(float, False, 180.0, 1, 3600)},
    "scale": {"replicas": Param(int, minimum=0, maximum=100)},
    "wait_for": {
        "replicas": Param(int, False, None, 0, 100, help="HPA current replicas at least"),
        "replicas_at_most": Param(int, False, None, 0, 100, help="HPA current replicas at most"),
        "ready_pods": Param(int, False, None, 0, 100, help="Ready pods at least"),
        "within": _WITHIN,
    },
}
"""Each step kind and its parameters. `sleep: 5` may give its one parameter bare."""

EXPECTATIONS: dict[str, dict[str, Param]] = {
    "ttft_p95_below": {"seconds": Param(float, minimum=0)},
    "e2e_p95_below": {"seconds": Param(float, minimum=0)},
    "health_p50_below": {"seconds": Param(float, minimum=0)},
    "failures_below_percent": {"percent": Param(float, minimum=0, maximum=100)},
    "failures_at_most": {"count": Param(int, minimum=0)},
    "recovery_below": {"seconds": Param(float, minimum=0)},
    "replicas_reach": {"replicas": Param(int, minimum=1, maximum=100), "within": _WITHIN},
    "replicas_return": {"replicas": Param(int, minimum=0, maximum=100), "within": _WITHIN},
    "no_failures_during": {"step": Param(str, choices=("rollout_restart", "kill", "evict"))},
    "failures_only_on_killed_pod": {"step": Param(str, choices=("kill", "evict"))},
}
"""Each expectation and its parameters; a bare value is the first parameter."""

WAIT_CONDITIONS = ("replicas", "replicas_at_most", "ready_pods")

SETTINGS: dict[str, Param] = {
    "max_tokens": Param(int, False, 64, 1, 1024),
    "stream": Param(bool, False, True),
    "ready_timeout": Param(float, False, 60.0, 1, 600),
    "first_chat_wait": Param(float, False, 15.0, 0, 300),
    "recovery_wait": Param(float, False, 60.0, 0, 600),
}

_TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}


class _Reader:
    """Walks the node tree, collecting problems with their lines instead of stopping."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[tuple[int, str]] = []
        """(line, words) pairs, so they can be reported in the order of the file."""
        self._constructor = SafeConstructor()

    def problem(self, node: Node, message: str) -> None:
        self.at(node.start_mark.line + 1, message)

    def at(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    def error(self) -> ScenarioError:
        ordered = sorted(self.problems, key=lambda problem: problem[0])
        return ScenarioError([f"{self.path}:{line}: {words}" for line, words in ordered])

    def scalar(self, node: Node, param: Param, what: str) -> Any:
        if not isinstance(node, ScalarNode):
            self.problem(node, f"{what}: expected {_TYPE_WORDS[param.kind]}, got a {_shape(node)}")
            return None
        try:
            value = self._constructor.construct_object(node)
        except ConstructorError as error:
            self.problem(node, f"{what}: {error.problem}")
            return None
        if param.auto and value == AUTO:
            return value
        wanted = param.kind
        ok = isinstance(value, wanted) and not (wanted is not bool and isinstance(value, bool))
        if wanted is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            words = _TYPE_WORDS[wanted] + (" or auto" if param.auto else "")
            self.problem(node, f"{what}: expected {words}, got {value!r}")
            return None
        if param.minimum is not None and value < param.minimum:
            self.problem(node, f"{what}: expected at least {param.minimum:g}, got {value!r}")
            return None
        if param.maximum is not None and value > param.maximum:
            self.problem(node, f"{what}: expected at most {param.maximum:g}, got {value!r}")
            return None
        if param.choices and value not in param.choices:
            self.problem(node, f"{what}: expected one of {', '.join(param.choices)}, got {value!r}")
            return None
        return value

    def mapping(self, node: Node, what: str) -> list[tuple[ScalarNode, Node]] | None:
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what}: expected a mapping, got a {_shape(node)}")
            return None
        pairs: list[tuple[ScalarNode, Node]] = []
        seen: set[str] = set()
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                self.problem(key, f"{what}: keys must be plain names")
                continue
            if key.value in seen:
                self.problem(key, f"{what}: {key.value!r} is given twice")
                continue
            seen.add(key.value)
            pairs.append((key, value))
        return pairs

    def params(
        self, node: Node, spec: dict[str, Param], what: str
    ) -> tuple[tuple[str, Any], ...] | None:
        """A step's or expectation's parameters: a mapping, or one bare value for the first."""
        if isinstance(node, ScalarNode) and spec and node.tag != "tag:yaml.org,2002:null":
            first = next(iter(spec))
            value = self.scalar(node, spec[first], f"{what} {first}")
            values = {first: value}
            if value is None:
                return None
        elif isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            values = {}
        else:
            pairs = self.mapping(node, what)
            if pairs is None:
                return None
            values = {}
            for key, value_node in pairs:
                if key.value not in spec:
                    allowed = ", ".join(spec) or "no parameters"
                    self.problem(
                        key, f"{what}: unknown parameter {key.value!r} (expected: {allowed})"
                    )
                    continue
                values[key.value] = self.scalar(value_node, spec[key.value], f"{what} {key.value}")
            if any(v is None for v in values.values()):
                return None
        result: list[tuple[str, Any]] = []
        for name, param in spec.items():
            if name in values:
                result.append((name, values[name]))
            elif param.required:
                self.problem(node, f"{what}: missing {name!r} ({_TYPE_WORDS[param.kind]})")
                return None
            else:
                result.append((name, param.default))
        return tuple(result)

    def entries(
        self, node: Node, table: dict[str, dict[str, Param]], what: str
    ) -> list[tuple[str, tuple[tuple[str, Any], ...], int]]:
        """A list of one-key mappings (`- kind: params`), each checked against `table`."""
        found: list[tuple[str, tuple[tuple[str, Any], ...], int]] = []
        if not isinstance(node, SequenceNode):
            self.problem(node, f"{what}: expected a list, got a {_shape(node)}")
            return found
        for item in node.value:
            if not isinstance(item, MappingNode) or len(item.value) != 1:
                self.problem(
                    item,
                    f"{what}: expected one `kind: parameters` entry, one of: {', '.join(table)}",
                )
                continue
            key, value = item.value[0]
            if not isinstance(key, ScalarNode) or key.value not in table:
                name = key.value if isinstance(key, ScalarNode) else "?"
                self.problem(
                    key, f"{what}: unknown kind {name!r} (expected one of: {', '.join(table)})"
                )
                continue
            params = self.params(value, table[key.value], key.value)
            if params is not None:
                found.append((key.value, params, key.start_mark.line + 1))
        return found


def _shape(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return f"value {node.value!r}"


def _check_steps(reader: _Reader, steps: list[Step]) -> None:
    """What only the whole list shows: waits that name no condition, needless stops."""
    for step in steps:
        conditions = [name for name in WAIT_CONDITIONS if step.get(name) is not None]
        if step.kind == "wait_for" and len(conditions) != 1:
            reader.at(
                step.line,
                f"wait_for: expected exactly one of {', '.join(WAIT_CONDITIONS)}"
                + (f", got {', '.join(conditions)}" if conditions else ""),
            )
        elif step.kind == "wait_for" and step.get("within") == AUTO and "ready_pods" in conditions:
            reader.at(
                step.line,
                "wait_for: within: auto follows the HPA, so it needs replicas or "
                "replicas_at_most; give ready_pods a number of seconds",
            )


def parse_scenario(text: str, path: Path) -> Scenario:
    """The scenario in `text` (from `path`, for messages); `ScenarioError` lists every problem."""
    reader = _Reader(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ScenarioError([f"{path}:{line}: not valid YAML: {error.problem}"]) from None
    except yaml.YAMLError as error:
        raise ScenarioError([f"{path}:1: not valid YAML: {error}"]) from None
    if root is None:
        raise ScenarioError([f"{path}:1: the file is empty: expected `name:` and `steps:`"])
    pairs = reader.mapping(root, "the scenario")
    if pairs is None:
        raise reader.error()
    known = {"name", "description", "settings", "steps", "expect"}
    nodes: dict[str, Node] = {}
    for key, value in pairs:
        if key.value not in known:
            reader.problem(key, f"unknown key {key.value!r} (expected: {', '.join(sorted(known))})")
        else:
            nodes[key.value] = value
    text_param = Param(str)
    name = reader.scalar(nodes["name"], text_param, "name") if "name" in nodes else None
    if "name" not in nodes:
        reader.problem(root, "missing `name:` (a string)")
    description = ""
    if "description" in nodes:
        description = reader.scalar(nodes["description"], text_param, "description") or ""
    settings: dict[str, Any] = {k: p.default for k, p in SETTINGS.items()}
    if "settings" in nodes:
        checked = reader.params(nodes["settings"], SETTINGS, "settings")
        settings.update(dict(checked or ()))
    steps: list[Step] = []
    if "steps" not in nodes:
        reader.problem(root, "missing `steps:` (a list of steps)")
    else:
        steps = [Step(k, p, line) for k, p, line in reader.entries(nodes["steps"], STEPS, "step")]
        if not steps and not reader.problems:
            reader.problem(nodes["steps"], "steps: expected at least one step")
        _check_steps(reader, steps)
    expectations: list[Expectation] = []
    if "expect" in nodes:
        expectations = [
            Expectation(k, p, line)
            for k, p, line in reader.entries(nodes["expect"], EXPECTATIONS, "expectation")
        ]
    for expectation in expectations:
        wanted = expectation.get("step")
        if expectation.kind == "failures_only_on_killed_pod" and not any(
            step.kind == wanted for step in steps
        ):
            reader.at(
                expectation.line,
                f"{expectation.kind}: expected a {wanted} step to judge, the steps have none",
            )
    if reader.problems:
        raise reader.error()
    return Scenario(
        path=path,
        name=str(name),
        description=str(description),
        steps=tuple(steps),
        expectations=tuple(expectations),
        max_tokens=settings["max_tokens"],
        stream=settings["stream"],
        ready_timeout=settings["ready_timeout"],
        first_chat_wait=settings["first_chat_wait"],
        recovery_wait=settings["recovery_wait"],
    )


def load_scenario(path: Path) -> Scenario:
    """Read and parse a scenario file; `ScenarioError` when it cannot be read or is bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError([f"{path}: cannot read it: {error}"]) from None
    return parse_scenario(text, path)


__all__ = [
    "AUTO",
    "EXPECTATIONS",
    "STEPS",
    "WAIT_CONDITIONS",
    "Expectation",
    "Scenario",
    "ScenarioError",
    "Step",
    "load_scenario",
    "parse_scenario",
]
