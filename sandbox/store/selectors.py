"""Label and field selectors, parsed and matched as the API server does."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.store.apierrors import bad_request
from sandbox.store.resources import JSON


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector."""

    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether `labels` satisfy this clause."""
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!":
            return self.key not in labels
        if self.operator in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        # "!=" and "notin" match objects without the key, as Kubernetes does.
        return labels.get(self.key) not in self.values


_SET_RE = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    """Split a selector at commas outside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a label selector string (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`)."""
    if not text:
        return []
    requirements: list[Requirement] = []
    for clause in _split_selector(text):
        set_match = _SET_RE.match(clause)
        if set_match:
            values = tuple(v.strip() for v in set_match.group(3).split(",") if v.strip())
            requirements.append(Requirement(set_match.group(1), set_match.group(2), values))
        elif "!=" in clause:
            key, value = clause.split("!=", 1)
            requirements.append(Requirement(key.strip(), "!=", (value.strip(),)))
        elif "==" in clause or "=" in clause:
            key, value = clause.split("==", 1) if "==" in clause else clause.split("=", 1)
            requirements.append(Requirement(key.strip(), "=", (value.strip(),)))
        elif clause.startswith("!"):
            requirements.append(Requirement(clause[1:].strip(), "!"))
        elif re.fullmatch(r"[A-Za-z0-9./_-]+", clause):
            requirements.append(Requirement(clause, "exists"))
        else:
            raise bad_request(f"unable to parse requirement: {clause!r}")
    return requirements


def selector_from_label_selector(selector: JSON | None) -> list[Requirement]:
    """Requirements from a `LabelSelector` object (`matchLabels`, `matchExpressions`)."""
    if not selector:
        return []
    requirements = [
        Requirement(key, "=", (str(value),))
        for key, value in (selector.get("matchLabels") or {}).items()
    ]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expression in selector.get("matchExpressions") or []:
        requirements.append(
            Requirement(
                expression["key"],
                operators[expression["operator"]],
                tuple(expression.get("values") or ()),
            )
        )
    return requirements


def labels_match(requirements: Iterable[Requirement], labels: dict[str, str] | None) -> bool:
    """Whether labels satisfy every requirement."""
    present = labels or {}
    return all(requirement.matches(present) for requirement in requirements)


def _field(obj: JSON, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    return str(value)


def parse_field_selector(text: str | None) -> list[tuple[str, bool, str]]:
    """Parse a field selector into (path, equal, value) triples."""
    if not text:
        return []
    clauses: list[tuple[str, bool, str]] = []
    for clause in _split_selector(text):
        if "!=" in clause:
            path, value = clause.split("!=", 1)
            clauses.append((path.strip(), False, value.strip()))
        elif "=" in clause:
            path, value = clause.split("==", 1) if "==" in clause else clause.split("=", 1)
            clauses.append((path.strip(), True, value.strip()))
        else:
            raise bad_request(f"invalid selector: {clause!r}; can't understand {clause!r}")
    return clauses


def fields_match(clauses: Iterable[tuple[str, bool, str]], obj: JSON) -> bool:
    """Whether an object satisfies field selector clauses (any dotted path)."""
    return all((_field(obj, path) == value) == equal for path, equal, value in clauses)
