"""Many recipes: bounded parallel builds with a summary, and the plan as a GitHub Actions matrix."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.multi import MATRIX_LIMIT, github_matrix
from tests.tiny import write_recipe


@pytest.fixture
def recipes(tmp_path: Path, checkpoints: dict) -> Path:
    folder = tmp_path / "recipes"
    for i, arch in enumerate(("bert", "roberta", "distilbert")):
        write_recipe(folder / f"{i}-{arch}.yaml", checkpoints[(arch, "feature-extraction")], name=f"tiny-{arch}",
                     validation={"texts": ["a man is eating food.", "hi"], "shapes": [[1, 5]]})
    return folder


def test_build_a_folder_in_parallel_with_a_summary(tmp_path: Path, recipes: Path) -> None:
    write_recipe(recipes / "9-broken.yaml", recipes / "no-such-model", name="broken")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(recipes), "--out", str(out), "--jobs", "2", "--keep-going",
                                       "--json"])
    assert result.exit_code == 1, result.output
    rows = {Path(r["recipe"]).name: r for r in json.loads(result.stdout)}
    assert [rows[n]["status"] for n in sorted(rows)] == ["built", "built", "built", "failed"]
    assert "source.path: folder not found" in rows["9-broken.yaml"]["error"]
    assert result.stderr.strip().splitlines()[-1] == "error: 1 of 4 recipes failed: 9-broken.yaml"
    for arch in ("bert", "roberta", "distilbert"):
        assert (out / f"tiny-{arch}" / "package" / "manifest.json").is_file()
    # a second run reuses everything
    again = CliRunner().invoke(main, ["build", str(recipes / "0-bert.yaml"), str(recipes / "1-roberta.yaml"),
                                      "--out", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert [r["status"] for r in json.loads(again.stdout)] == ["reused", "reused"]


def test_without_keep_going_no_build_starts_after_a_failure(tmp_path: Path, recipes: Path) -> None:
    write_recipe(recipes / "0-a-broken.yaml", recipes / "no-such-model", name="broken")
    result = CliRunner().invoke(main, ["build", str(recipes), "--out", str(tmp_path / "out"), "--jobs", "1",
                                       "--json"])
    assert result.exit_code == 1
    statuses = [r["status"] for r in json.loads(result.stdout)]
    assert statuses == ["failed", "skipped", "skipped", "skipped"]


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def test_plan_changed_since_as_a_github_matrix(tmp_path: Path, checkpoints: dict) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(checkpoints[("bert", "feature-extraction")], repo / "models" / "bert")
    for name in ("a", "b"):
        write_recipe(repo / "recipes" / f"{name}.yaml", repo / "models" / "bert", name=name)
    write_recipe(repo / "recipes" / "c.yaml", repo / "models" / "other", name="c")
    (repo / "models" / "other").mkdir()
    (repo / "models" / "other" / "config.json").write_text("{}")
    (repo / "pipeline").mkdir()
    (repo / "pipeline" / "x.py").write_text("")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")

    def plan(*args: str) -> list[dict]:
        result = CliRunner().invoke(main, ["plan", str(repo / "recipes"), *args, "--format", "json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert [e["name"] for e in plan()] == ["a", "b", "c"]
    assert plan("--changed-since", "HEAD") == []
    write_recipe(repo / "recipes" / "a.yaml", repo / "models" / "bert", name="a", task="text-classification")
    (repo / "models" / "other" / "config.json").write_text('{"changed": 1}')
    assert [(e["name"], e["reason"]) for e in plan("--changed-since", "HEAD")] == [
        ("a", "recipe changed"), ("c", "source files changed")]
    (repo / "pipeline" / "x.py").write_text("# changed")
    assert {e["reason"] for e in plan("--changed-since", "HEAD")} == {"the tool changed (pipeline/x.py)"}

    result = CliRunner().invoke(main, ["plan", str(repo / "recipes"), "--format", "github-matrix"])
    matrix = json.loads(result.stdout)
    assert matrix == {"include": [{"name": n, "recipes": str(repo / "recipes" / f"{n}.yaml")} for n in "abc"]}

    bad = CliRunner().invoke(main, ["plan", str(repo / "recipes"), "--changed-since", "no-such-ref"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --changed-since no-such-ref: ")


def test_matrix_shards_beyond_the_github_limit() -> None:
    entries = [{"name": f"r{i}", "recipe": f"recipes/r{i}.yaml", "reason": ""} for i in range(600)]
    matrix = github_matrix(entries)
    assert len(matrix["include"]) == MATRIX_LIMIT == 256
    listed = [r for job in matrix["include"] for r in job["recipes"].split()]
    assert sorted(listed) == sorted(e["recipe"] for e in entries)  # each recipe exactly once
    assert max(len(job["recipes"].split()) for job in matrix["include"]) == 3
    assert len(github_matrix(entries[:256])["include"]) == 256
