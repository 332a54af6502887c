"""Count the package's import cycles and its function-level imports of sibling pipeline modules.

Reads pipeline/**/*.py with ``ast`` (nothing is imported or run). An import inside a function body
is a *function-level* import; one under ``if TYPE_CHECKING:`` is a *typing* import (never run).
Cycles are the strongly connected components of the module graph with more than one module,
counted once with every import (module level, function level and typing) as an edge, and once
with the imports that run at import time only.

    python benchmarks/import_structure.py            # summary
    python benchmarks/import_structure.py --list     # every function-level sibling import
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pipeline"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _targets(node: ast.Import | ast.ImportFrom, here: str, known: dict[str, Path]) -> list[str]:
    """The pipeline modules an import statement imports (``from pkg import mod`` names the module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    base = node.module or ""
    if node.level:  # relative import
        package = here if known[here].name == "__init__.py" else here.rsplit(".", 1)[0]
        for _ in range(node.level - 1):
            package = package.rsplit(".", 1)[0]
        base = f"{package}.{base}" if base else package
    if base.split(".")[0] != PACKAGE:
        return []
    found = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
    return found if len(found) == len(node.names) else [*found, base]


def imports(known: dict[str, Path]) -> list[tuple[str, str, str, int]]:
    """(importer, imported, kind, line) with kind ``module``, ``function`` or ``typing``."""
    out = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def visit(node: ast.AST, kind: str, name: str = name) -> None:
            for child in ast.iter_child_nodes(node):
                child_kind = kind
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    child_kind = "function" if kind != "typing" else kind
                elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    for sub in child.body:
                        visit(ast.Module(body=[sub], type_ignores=[]), "typing")
                    for sub in child.orelse:
                        visit(ast.Module(body=[sub], type_ignores=[]), kind)
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in _targets(child, name, known):
                        if target != name:
                            out.append((name, target, child_kind, child.lineno))
                visit(child, child_kind)

        visit(tree, "module")
    return out


def cycles(edges: set[tuple[str, str]], nodes: list[str]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    graph: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a in graph and b in graph:
            graph[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for n in nodes:
        if n not in index:
            strong(n)
    return found


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list every function-level sibling import")
    args = parser.parse_args()
    known = modules()
    found = imports(known)
    # importing a submodule runs its package's __init__ first: an edge to the package too
    def edges(kinds: set[str]) -> set[tuple[str, str]]:
        out = set()
        for a, b, kind, _ in found:
            if kind in kinds:
                out.add((a, b))
                out.update((a, p) for p in _parents(b) if p != a and not a.startswith(p + "."))
        return out

    every = cycles(edges({"module", "function", "typing"}), list(known))
    runtime = cycles(edges({"module", "function"}), list(known))
    at_import = cycles(edges({"module"}), list(known))
    function_level = [(a, b, line) for a, b, kind, line in found if kind == "function"]
    outside_cli = [f for f in function_level if f[0] != "pipeline.cli"]
    print(f"modules: {len(known)}")
    print(f"import cycles (every import, typing ones too): {len(every)}"
          + "".join(f"\n  {' <-> '.join(c)}" for c in every))
    print(f"import cycles (imports that run): {len(runtime)}")
    print(f"import cycles (module-level imports only): {len(at_import)}")
    print(f"function-level imports of pipeline modules: {len(function_level)} "
          f"({len(outside_cli)} outside pipeline/cli.py, the top layer)")
    print(f"typing-only imports of pipeline modules: {sum(1 for f in found if f[2] == 'typing')}")
    if args.list:
        for a, b, line in function_level:
            print(f"  {known[a].relative_to(ROOT)}:{line}  {b}")


if __name__ == "__main__":
    main()
