"""The sandbox's layout holds: no import cycle inside `sandbox/`, and only the wiring at its top.

import-linter checks the layers and the independence of the API server, the kubelet and the
controllers (`pyproject.toml`); this test catches what a contract cannot name in advance: a
cycle between any two modules, counting imports inside functions and under `TYPE_CHECKING`,
which grimp (import-linter's graph) records like any other.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

TOP_LEVEL = {"sandbox.__main__", "sandbox.cluster", "sandbox.engine", "sandbox.pki"}
"""The modules beside the packages: the entry point, the wiring, the engine's command line (run
by the kubelet and checked by `__main__`) and the throwaway CA."""

PACKAGES = {"sandbox.apiserver", "sandbox.controllers", "sandbox.kubelet", "sandbox.store"}


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("sandbox", cache_dir=None)


def import_cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """Every strongly connected set of more than one module under `package` (Tarjan), sorted."""
    modules = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    inside = set(modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & inside) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1 or module in edges[module]:
                cycles.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_no_import_cycle_inside_the_sandbox() -> None:
    graph = _graph()
    cycles = import_cycles(graph, "sandbox")
    assert cycles == [], "import cycles inside sandbox/ (pass an interface down instead):\n" + (
        "\n".join(" <-> ".join(cycle) for cycle in cycles)
    )


def test_the_cycle_check_sees_imports_in_functions_and_type_checking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A back-call hidden in a function or under TYPE_CHECKING is still a cycle."""
    package = tmp_path / "layoutprobe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "parent.py").write_text("from layoutprobe import child, typed\n")
    (package / "child.py").write_text(
        "def call_back() -> None:\n    from layoutprobe import parent\n"
    )
    (package / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from layoutprobe import parent\n"
    )
    (package / "alone.py").write_text("import layoutprobe.child\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("layoutprobe", cache_dir=None)
    assert import_cycles(graph, "layoutprobe") == [
        ["layoutprobe.child", "layoutprobe.parent", "layoutprobe.typed"]
    ]


def test_only_the_wiring_sits_at_the_top() -> None:
    graph = _graph()
    top = {m for m in graph.modules if m.count(".") == 1}
    assert top - PACKAGES == TOP_LEVEL, (
        "a new module belongs in apiserver/, kubelet/, controllers/ or store/ "
        "(see docs/design.md), not beside them"
    )
