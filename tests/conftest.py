"""Settings for every test: one time zone, so times on screen and in reports match everywhere.

Also how the suite is ordered and checked for `make test`, which runs it in two passes: the
tests marked `serial` alone, then the rest in parallel with pytest-xdist (`-n 4 --dist
loadfile`: each module stays on one worker, so a module-scoped sandbox starts once).
"""

import os
import time

import pytest

os.environ["TZ"] = "UTC"
time.tzset()


# The modules that take longest on one worker, longest first (per-module sums of
# `--durations=0` in the parallel pass, docs/testing.md "Measured"). Under `--dist loadfile`
# each module is one unit of work and the pass ends when the last worker does, so these start
# first; a module missing here only starts later, it still runs.
LONGEST_FIRST = (
    "tests/packaging/test_wheel.py",
    "tests/tui/test_loadcmd.py",
    "tests/tui/test_app.py",
    "tests/web/test_browser.py",
    "tests/tui/test_scenario_sandbox_faults.py",
    "tests/tui/test_compare.py",
    "tests/tui/test_scenario_sandbox.py",
    "tests/tui/test_scenario_sandbox_verdicts.py",
    "tests/sandbox/test_kubectl_paths.py",
    "tests/backend/test_streaming.py",
    "tests/sandbox/test_conformance.py",
    "tests/tui/test_scenario_sandbox_auto.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every `slow` mark says why, and put the longest modules first.

    Under xdist each module is one unit of work, handed out in this order (with
    `--no-loadscope-reorder`): first LONGEST_FIRST in its order, then the other modules that
    hold slow tests, then the rest. So the long modules start at once instead of last, when the
    other workers would sit idle waiting for them. Within a module the order is unchanged.
    """
    for item in items:
        for mark in item.iter_markers("slow"):
            if not mark.kwargs.get("reason"):
                raise pytest.UsageError(
                    f"{item.nodeid}: say why it is slow: pytest.mark.slow(reason=...)"
                )
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    rank = {config.rootpath / module: place for place, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: (rank.get(item.path, len(rank)), item.path not in slow_files))
