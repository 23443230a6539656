"""Fails when modules of the given packages import each other in a circle.

A package's `__init__` re-exporting its own modules is not a cycle of concern; every other edge is,
including function-local imports (grimp sees them). Imports under `if TYPE_CHECKING:` are left out:
they never run. Usage: python .ci/import_cycles.py policies [portal ...]
"""

from __future__ import annotations

import sys

import grimp


def strongly_connected(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def edges(module: str) -> list[str]:
        return sorted(
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            if imported in modules and not _is_parent(imported, module)
        )

    def visit(start: str) -> None:  # iterative Tarjan: no recursion limit on long chains
        nonlocal counter
        work = [(start, iter(edges(start)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(edges(child))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def _is_parent(package: str, module: str) -> bool:
    """A module importing its own package's `__init__` (e.g. a relative `from . import x`)."""
    return module.startswith(package + ".")


def main(packages: list[str]) -> int:
    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True)
    modules = {module for package in packages for module in graph.find_descendants(package) | {package}}
    cycles = strongly_connected(graph, modules)
    for component in cycles:
        print(f"import cycle among {len(component)} modules:")
        for module in component:
            inside = sorted(m for m in graph.find_modules_directly_imported_by(module) if m in component)
            print(f"  {module} -> {', '.join(inside)}")
    if cycles:
        return 1
    print(f"no import cycles in {', '.join(packages)} ({len(modules)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["policies"]))
