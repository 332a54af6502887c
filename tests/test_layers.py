"""The package's structure: layers that import-linter enforces, and targets known only to their own modules."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from pipeline.stages import registered_stages

REPO = Path(__file__).resolve().parent.parent


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module but its docstrings, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_module_outside_the_stages_names_a_target() -> None:
    """A new target is one module: nothing outside pipeline/stages/ switches on a target's name."""
    names = set(registered_stages())
    found = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        if (REPO / "pipeline" / "stages") in path.parents:
            continue
        for line, value in _string_literals(path):
            words = set(re.findall(r"[A-Za-z0-9_.-]+", value))
            for word in words & names:
                found.append(f"{path.relative_to(REPO)}:{line}: {word!r} in {value!r}")
    assert not found, "\n".join(found)


def test_every_import_points_down_the_layers() -> None:
    """pyproject.toml's import-linter contracts hold (function-level imports included)."""
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_no_import_cycles_and_no_function_level_sibling_imports() -> None:
    """Read with ast: no cycle among pipeline modules counting every import, and below the CLI no
    function-level import of a pipeline module except fastpath_module (it imports torch at its top)."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "import_structure.py"), "--list"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "import cycles (every import, typing ones too): 0" in proc.stdout, proc.stdout
    listed = [line.strip() for line in proc.stdout.splitlines() if line.startswith("  pipeline/")]
    below_cli = [line for line in listed if not line.startswith("pipeline/cli.py")]
    assert all(line.endswith("pipeline.stages.fastpath_module") for line in below_cli), below_cli
