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

from tests.import_graph import package_cycles

TOP_LEVEL = {
    "sandbox.__main__",
    "sandbox.cluster",
    "sandbox.engine",
    "sandbox.pki",
    "sandbox.credential",
}
"""The modules beside the packages: the entry point, the wiring, the engine's command line (run
by the kubelet and checked by `__main__`), the throwaway CA, and the kubeconfig's exec
credential plugin (run by kubectl and the clients)."""

PACKAGES = {
    "sandbox.apiserver",
    "sandbox.controllers",
    "sandbox.kubelet",
    "sandbox.kubeproxy",
    "sandbox.store",
}


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("sandbox", cache_dir=None)


def test_no_import_cycle_inside_the_sandbox() -> None:
    graph = _graph()
    cycles = package_cycles(graph, "sandbox")
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
    assert package_cycles(graph, "layoutprobe") == [
        ["layoutprobe.child", "layoutprobe.parent", "layoutprobe.typed"]
    ]


def test_only_the_wiring_sits_at_the_top() -> None:
    graph = _graph()
    top = {m for m in graph.modules if m.count(".") == 1}
    assert top - PACKAGES == TOP_LEVEL, (
        "a new module belongs in apiserver/, kubelet/, controllers/ or store/ "
        "(see docs/design.md), not beside them"
    )
