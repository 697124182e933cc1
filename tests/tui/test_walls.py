"""The import-linter contract that keeps Textual out of the cockpit's services lists every one.

The contract names its modules one by one, so a new service module would be unchecked until
someone added it; this test fails the moment a module of `tui/` is in neither group.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

UI_MODULES = {"tui", "tui.__main__", "tui.app", "tui.cli", "tui.keys", "tui.messages", "tui.run"}
"""The modules that may import Textual: the app, its keys and messages, and what starts it."""
UI_PACKAGES = ("tui.widgets", "tui.screens")


def tui_modules() -> set[str]:
    """Every module of the `tui` package, dotted."""
    modules = set()
    for path in (ROOT / "tui").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules.add(".".join(parts))
    return modules


def services_contract() -> set[str]:
    """The source modules of the contract that forbids Textual."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for contract in config["tool"]["importlinter"]["contracts"]:
        if "textual" in contract.get("forbidden_modules", []):
            return set(contract["source_modules"])
    raise AssertionError("no import-linter contract forbids textual")


def test_every_tui_module_is_ui_or_under_the_no_textual_contract() -> None:
    services = services_contract()
    unlisted = sorted(
        module
        for module in tui_modules()
        if module not in UI_MODULES
        and not module.startswith(UI_PACKAGES)
        and module not in services
    )
    assert not unlisted, f"add these to the no-Textual contract in pyproject.toml: {unlisted}"


def test_the_contract_names_only_modules_that_exist() -> None:
    assert services_contract() <= tui_modules()
