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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every `slow` mark says why, and put the modules that hold slow tests first.

    Under xdist each module is one unit of work, handed out in this order (with
    `--no-loadscope-reorder`), so the long modules start at once instead of last, when the
    other workers would sit idle waiting for them. Within a module the order is unchanged.
    """
    for item in items:
        for mark in item.iter_markers("slow"):
            if not mark.kwargs.get("reason"):
                raise pytest.UsageError(
                    f"{item.nodeid}: say why it is slow: pytest.mark.slow(reason=...)"
                )
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
