"""Label and field selectors, parsed and matched as the API server does."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.store.apierrors import ApiError, bad_request
from sandbox.store.resources import JSON


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector."""

    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether `labels` satisfy this clause."""
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!":
            return self.key not in labels
        if self.operator in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        if self.operator in ("gt", "lt"):
            # As upstream: a label that is not an integer matches neither.
            try:
                have, bound = int(labels[self.key]), int(self.values[0])
            except (KeyError, ValueError):
                return False
            return have > bound if self.operator == "gt" else have < bound
        # "!=" and "notin" match objects without the key, as Kubernetes does.
        return labels.get(self.key) not in self.values


# The label selector grammar of k8s.io/apimachinery/pkg/labels/selector.go: a lexer that
# splits identifiers at whitespace and at the symbols below, and a parser of
# `[!]key [op value | in|notin (v1, v2)]` clauses separated by commas.
_SYMBOLS = frozenset("=!(),<>")
_SYMBOL_TOKENS = frozenset({"!", "!=", "(", ")", ",", "=", "==", ">", "<"})
_OPERATORS = {"=": "=", "==": "=", "!=": "!=", "in": "in", "notin": "notin", ">": "gt", "<": "lt"}
_END = ("end", "end of string")


def _lex(text: str) -> list[tuple[str, str]]:
    """(kind, literal) tokens: kind is "id", "in", "notin", a symbol, or "end"."""
    tokens: list[tuple[str, str]] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char in " \t\r\n":
            index += 1
        elif char in _SYMBOLS:
            symbol = char
            index += 1
            while index < len(text) and symbol + text[index] in _SYMBOL_TOKENS:
                symbol += text[index]
                index += 1
            tokens.append((symbol, symbol))
        else:
            begin = index
            while (
                index < len(text) and text[index] not in _SYMBOLS and text[index] not in " \t\r\n"
            ):
                index += 1
            word = text[begin:index]
            tokens.append((word if word in ("in", "notin") else "id", word))
    tokens.append(_END)
    return tokens


def _invalid(message: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {message}")


def _check_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if (
        not name
        or len(name) > 63
        or not _QUALIFIED.fullmatch(name)
        or ("/" in key and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)))
    ):
        raise _invalid(
            f"invalid label key {key!r}: name part must consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )


def _check_value(value: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise _invalid(
            f"invalid label value: {value!r}: a valid label must be an empty string or consist "
            "of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character"
        )


_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.position = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.position]

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.position]
        self.position = min(self.position + 1, len(self.tokens) - 1)
        return token

    def requirements(self) -> list[Requirement]:
        found: list[Requirement] = []
        while True:
            kind, literal = self.peek()
            if kind == "end":
                return found
            if kind not in ("id", "!"):
                raise _invalid(f"found '{literal}', expected: !, identifier, or 'end of string'")
            found.append(self.requirement())
            kind, literal = self.take()
            if kind == "end":
                return found
            if kind != ",":
                raise _invalid(f"found '{literal}', expected: ',' or 'end of string'")
            if self.peek()[0] not in ("id", "!"):
                raise _invalid(f"found '{self.peek()[1]}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        kind, literal = self.take()
        negated = kind == "!"
        if negated:
            kind, literal = self.take()
        if kind != "id":
            raise _invalid(f"found '{literal}', expected: identifier")
        _check_key(literal)
        key = literal
        if self.peek()[0] in ("end", ","):
            return Requirement(key, "!" if negated else "exists")
        if negated:
            raise _invalid(f"found '{self.peek()[1]}', expected: ',' or 'end of string'")
        kind, literal = self.take()
        operator = _OPERATORS.get(kind)
        if operator is None:
            raise _invalid(f"found '{literal}', expected: {', '.join(_OPERATORS)}")
        values = self.value_set() if operator in ("in", "notin") else self.exact_value()
        for value in values:
            _check_value(value)
        if operator in ("gt", "lt") and not re.fullmatch(r"-?[0-9]+", values[0]):
            raise _invalid(f"for 'Gt', 'Lt' operators, the value must be an integer: {values}")
        return Requirement(key, operator, values)

    def exact_value(self) -> tuple[str, ...]:
        if self.peek()[0] in ("end", ","):
            return ("",)
        kind, literal = self.take()
        if kind != "id":
            raise _invalid(f"found '{literal}', expected: identifier")
        return (literal,)

    def value_set(self) -> tuple[str, ...]:
        kind, literal = self.take()
        if kind != "(":
            raise _invalid(f"found '{literal}' expected: '('")
        values: list[str] = []
        expect_value = True
        while True:
            kind, literal = self.take()
            if kind == ")":
                if expect_value and values:
                    values.append("")
                return tuple(values) or ("",)
            if kind == "id" and expect_value:
                values.append(literal)
                expect_value = False
            elif kind == ",":
                if expect_value:
                    values.append("")
                expect_value = True
            else:
                raise _invalid(f"found '{literal}', expected: ',', ')' or identifier")


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a label selector string as the API server does; 400 for one it refuses."""
    if not text:
        return []
    return _Parser(text).requirements()


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
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "/pods": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "/events": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "/namespaces": ("status.phase",),
    "/nodes": ("spec.unschedulable",),
    "/secrets": ("type",),
    "apps/replicasets": ("status.replicas",),
}
"""The field labels each resource supports beyond `metadata.name` and `metadata.namespace`
(every resource has those), from the field label conversion functions Kubernetes registers
per kind (`pkg/apis/core/v1/conversion.go`, `pkg/apis/apps/v1/conversion.go`), by `group/plural`."""


def parse_field_selector(
    text: str | None, resource: str | None = None
) -> list[tuple[str, bool, str]]:
    """Parse a field selector into (path, equal, value) triples; with `resource` (`group/plural`)
    a field that resource does not support is a 400, as the API server answers."""
    if not text:
        return []
    clauses: list[tuple[str, bool, str]] = []
    for clause in (part.strip() for part in text.split(",") if part.strip()):
        if "!=" in clause:
            path, value = clause.split("!=", 1)
            clauses.append((path.strip(), False, value.strip()))
        elif "=" in clause:
            path, value = clause.split("==", 1) if "==" in clause else clause.split("=", 1)
            clauses.append((path.strip(), True, value.strip()))
        else:
            raise bad_request(f"invalid selector: {clause!r}; can't understand {clause!r}")
    if resource is not None:
        supported = ("metadata.name", "metadata.namespace", *FIELD_LABELS.get(resource, ()))
        for path, _equal, _value in clauses:
            if path not in supported:
                raise bad_request(f"field label not supported: {path}")
    return clauses


def fields_match(clauses: Iterable[tuple[str, bool, str]], obj: JSON) -> bool:
    """Whether an object satisfies field selector clauses (any dotted path)."""
    return all((_field(obj, path) == value) == equal for path, equal, value in clauses)
