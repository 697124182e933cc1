"""Import cycles in a package, as grimp (import-linter's graph) records imports: at module level,
inside functions and under `TYPE_CHECKING` alike. `tests/tui/test_walls.py` and
`tests/sandbox/test_layout.py` both use it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Set

import grimp

__all__ = ["cycles", "package_cycles"]


def package_cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """Every import cycle among the modules of `package` (and the package itself), sorted."""
    modules = {m for m in graph.modules if m == package or m.startswith(package + ".")}
    edges = {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}
    return sorted(cycles(edges))


def cycles(imports: Mapping[str, Set[str]]) -> Iterator[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm), and modules
    that import themselves: each an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(imports.get(module, ())):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1 or module in imports.get(module, ()):
                found.append(sorted(group))

    for module in sorted(imports):
        if module not in index:
            visit(module)
    yield from found
