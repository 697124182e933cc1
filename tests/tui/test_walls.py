"""The walls inside `tui/` that import-linter cannot say: no import cycle, and every package of
`tui` is a layer of the layers contract (a package outside it would be unchecked).

The contracts themselves (the layers, only `tui.cockpit` imports Textual or Rich) are in
`pyproject.toml` and name packages, never modules; `lint-imports` checks them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp

from tests.import_graph import cycles, package_cycles

ROOT = Path(__file__).resolve().parents[2]
ENTRY_MODULES = {"tui.__main__"}
"""Top-level modules of `tui` that are not packages: only `python -m tui`'s entry."""


def layers_contract() -> list[str]:
    """The layers of the `tui` layers contract, each a package name (siblings split on `|`)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract.get("type") == "layers" and contract.get("containers") == ["tui"]:
            return [name.strip() for layer in contract["layers"] for name in layer.split("|")]
    raise AssertionError("no import-linter layers contract for tui")


def test_the_cycle_finder_finds_a_cycle() -> None:
    imports = {"tui.a": {"tui.b"}, "tui.b": {"tui.c"}, "tui.c": {"tui.a"}, "tui.d": {"tui.a"}}
    assert list(cycles(imports)) == [["tui.a", "tui.b", "tui.c"]]


def test_no_import_cycle_inside_tui() -> None:
    found = package_cycles(grimp.build_graph("tui", cache_dir=None), "tui")
    assert not found, f"import cycles inside tui/ (move what both need down a layer): {found}"


def test_every_package_of_tui_is_a_layer_and_every_layer_exists() -> None:
    packages = {path.parent.name for path in (ROOT / "tui").glob("*/__init__.py")}
    modules = {f"tui.{path.stem}" for path in (ROOT / "tui").glob("*.py")} - {"tui.__init__"}
    assert set(layers_contract()) == packages
    assert modules == ENTRY_MODULES, "a module of tui/ belongs in one of its packages"
