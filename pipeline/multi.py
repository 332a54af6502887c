"""Many recipes at once: a bounded pool of build processes, and the plan of what to (re)build.

Each recipe builds in its own ``convert build`` process (its own source load, its own lock), with
its thread count set so that jobs × threads ≤ cores. ``plan`` lists the recipes whose files, local
source or the tool itself changed since a git ref, shaped for a GitHub Actions matrix (sharded when
there are more recipes than a matrix holds). This module orchestrates; it builds nothing itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline import recipe as recipe_mod
from pipeline.errors import InputError
from pipeline.settings import THREADS_ENV

MATRIX_LIMIT = 256  # GitHub Actions: a matrix generates at most 256 jobs per workflow run
# Changes here change every build's output: every recipe is planned.
TOOL_PATHS = ("pipeline", "pyproject.toml")


def find_recipes(paths: Sequence[Path]) -> list[Path]:
    """Recipe files named directly, and every ``*.yaml``/``*.yml`` in folders named, in order, once."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            found.append(path)
    return list(dict.fromkeys(found))


@dataclass
class JobResult:
    recipe: str
    status: str  # "built", "reused", "failed"
    exit_code: int
    seconds: float
    reused: list[str]
    error: str | None
    pushed: bool = False


def build_many(recipes: Sequence[Path], out: Path, *, jobs: int = 1, keep_going: bool = False,
               extra_args: Sequence[str] = (), on_done: Callable[[JobResult], None] | None = None) -> list[JobResult]:
    """Build every recipe in a ``convert build`` subprocess, ``jobs`` at a time.

    Without ``keep_going``, no new build starts after one fails (running ones finish).
    """
    cores = os.cpu_count() or 1
    threads = max(1, cores // max(1, jobs))
    env = {**os.environ, THREADS_ENV: str(threads), "OMP_NUM_THREADS": str(threads)}
    failed = False
    results: list[JobResult] = []

    def one(recipe: Path) -> JobResult:
        nonlocal failed
        if failed and not keep_going:
            return JobResult(str(recipe), "skipped", 0, 0.0, [], "not started: an earlier build failed")
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "build", str(recipe), "--out", str(out),
                               "--json", *extra_args], capture_output=True, text=True, env=env)
        seconds = round(time.perf_counter() - start, 2)
        try:
            data = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except json.JSONDecodeError:
            data = {}
        if proc.returncode != 0:
            failed = True
            errors = [line.removeprefix("error: ") for line in proc.stderr.splitlines() if line.startswith("error:")]
            result = JobResult(str(recipe), "failed", proc.returncode, seconds, [],
                               errors[0] if errors else (proc.stderr.strip().splitlines() or ["failed"])[-1])
        else:
            stages = {s["stage"] for s in data.get("stages", [])}
            all_reused = stages and stages <= set(data.get("reused", [])) and "package" in data.get("reused", [])
            result = JobResult(str(recipe), "reused" if all_reused else "built", 0, seconds,
                               data.get("reused", []), None, pushed=bool(data.get("pushed")))
        if on_done:
            on_done(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(one, recipes))
    return results


def changed_files(since: str, cwd: Path) -> tuple[Path, set[Path]]:
    """The git top level, and the files changed between ``since`` and the working tree (untracked
    ones included), as absolute paths.

    Raises:
        InputError: git is missing, this is not a checkout, or ``since`` is not a known revision.
    """
    def git(*args: str, at: Path) -> str:
        return subprocess.run(["git", *args], cwd=at, capture_output=True, text=True, check=True).stdout

    try:
        top = Path(git("rev-parse", "--show-toplevel", at=cwd).strip())
        names = git("diff", "--name-only", since, "--", at=top) + git("ls-files", "--others", "--exclude-standard",
                                                                      at=top)
    except FileNotFoundError:
        raise InputError("--changed-since needs git, which is not installed") from None
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or "").strip().splitlines()
        raise InputError(f"--changed-since {since}: {detail[-1] if detail else 'git failed'}") from None
    return top, {(top / name).resolve() for name in names.splitlines() if name}


def plan(paths: Sequence[Path], *, changed_since: str | None = None, cwd: Path | None = None) -> list[dict[str, Any]]:
    """The recipes to build, each with why: all of them, or those changed since a git ref.

    A recipe is changed when its file changed, a file of its local source folder changed, or the
    tool itself (``pipeline/``, ``pyproject.toml``) changed.

    Raises:
        RecipeError: a recipe is invalid (a plan never hides a broken recipe).
        InputError: ``changed_since`` cannot be resolved.
    """
    recipes = [recipe_mod.load(p) for p in find_recipes(paths)]
    cwd = cwd or (recipes[0].folder if recipes else Path.cwd())  # the checkout the recipes live in
    if changed_since is None:
        return [_entry(r, "all recipes") for r in recipes]
    top, changed = changed_files(changed_since, cwd)
    tool = sorted(p for p in changed if any(p.is_relative_to(top / t) for t in TOOL_PATHS))
    out = []
    for r in recipes:
        assert r.path is not None
        if tool:
            out.append(_entry(r, f"the tool changed ({tool[0].relative_to(top)})"))
        elif r.path.resolve() in changed:
            out.append(_entry(r, "recipe changed"))
        elif r.source.path is not None and any(p.is_relative_to((r.folder / r.source.path).resolve())
                                               for p in changed):
            out.append(_entry(r, "source files changed"))
    return out


def _entry(recipe: recipe_mod.Recipe, reason: str) -> dict[str, Any]:
    return {"name": recipe.name, "recipe": str(recipe.path), "reason": reason}


def github_matrix(entries: list[dict[str, Any]], limit: int = MATRIX_LIMIT) -> dict[str, Any]:
    """``{"include": [...]}`` for ``strategy.matrix``; beyond ``limit`` recipes, each job gets a
    shard of several recipes (``recipes``: space-separated), so the matrix never exceeds the limit."""
    if len(entries) <= limit:
        return {"include": [{"name": e["name"], "recipes": e["recipe"]} for e in entries]}
    shards: list[list[dict[str, Any]]] = [[] for _ in range(limit)]
    for i, entry in enumerate(entries):
        shards[i % limit].append(entry)
    return {"include": [{"name": f"shard-{i + 1:03d}-of-{limit}", "recipes": " ".join(e["recipe"] for e in shard)}
                        for i, shard in enumerate(shards)]}


def summary_rows(results: Sequence[JobResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
