"""Push faults injected by the loopback Hub: transient errors are retried where that is safe, and a
push that cannot finish leaves the repo's files and tags exactly as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline import hub as hub_mod
from pipeline import package
from pipeline.cli import main
from tests.hub_server import HubServer
from tests.test_hub import SENTINEL, _built, _push, _repo


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_mod, "BACKOFF_S", 0.01)
    monkeypatch.setenv("HF_TOKEN", SENTINEL)


@pytest.fixture
def built(tmp_path: Path, checkpoints: dict) -> tuple[Path, str]:
    repo = _repo()
    return _built(tmp_path, checkpoints, repo, targets={"onnx": {"opset": 17, "variants": ["fp32", "int8"]}}), repo


def _manifest(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "tiny" / "package" / package.MANIFEST).read_text())


def _assert_published(hub: HubServer, repo: str, tmp_path: Path, commits: int = 2) -> None:
    state = hub.state
    assert state.commits(repo) == commits  # the initial commit + exactly one commit of ours
    remote = state.files(repo)
    pkg = tmp_path / "out" / "tiny" / "package"
    for rel in [*package.all_files(_manifest(tmp_path)), package.MANIFEST]:
        assert remote[rel] == (pkg / rel).read_bytes(), rel
    assert state.repos[repo].tags["v1"] == state.head(repo)


# (method, path pattern, status: 0 drops the connection, times)
TRANSIENT = [
    ("POST", r"/api/repos/create", 503, 2),
    ("GET", r"/api/models/org/[^/]+/revision/main$", 0, 1),
    ("POST", r"/preupload/", 500, 2),
    ("POST", r"/preupload/", 0, 1),
    ("POST", r"\.git/info/lfs/objects/batch", 502, 1),
    ("PUT", r"/lfs-upload/", 500, 2),
    ("PUT", r"/lfs-upload/", 0, 1),
    ("POST", r"/commit/main", 503, 2),
    ("POST", r"/commit/main", 0, 1),
    ("GET", r"/refs", 500, 1),
    ("POST", r"/tag/", 502, 1),
]


@pytest.mark.parametrize("method,pattern,status,times", TRANSIENT,
                         ids=[f"{m}-{p.strip('/$').split('/')[-1]}-{s or 'drop'}x{n}" for m, p, s, n in TRANSIENT])
def test_transient_faults_are_retried_into_one_commit(tmp_path: Path, built: tuple[Path, str], hub: HubServer,
                                                      method: str, pattern: str, status: int, times: int) -> None:
    recipe, repo = built
    hub.state.inject(method, pattern.replace("org/[^/]+", repo), status, times)
    before = len(hub.state.log)
    result = _push(recipe, tmp_path)
    assert result.exit_code == 0, result.output
    injected = [entry for entry in hub.state.log[before:] if entry[2] == status]
    assert len(injected) >= times  # the faults really happened
    _assert_published(hub, repo, tmp_path)


def test_a_commit_whose_answer_is_lost_is_found_not_made_twice(tmp_path: Path, built: tuple[Path, str],
                                                               hub: HubServer) -> None:
    recipe, repo = built
    hub.state.create(repo, private=True)
    hub.state.drop_after_commit = 1  # the commit lands, the client sees a dropped connection
    result = CliRunner().invoke(main, ["push", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "the commit had landed before its answer was lost" in result.stderr
    _assert_published(hub, repo, tmp_path)


def test_a_failing_commit_step_publishes_nothing(tmp_path: Path, built: tuple[Path, str], hub: HubServer) -> None:
    recipe, repo = built
    hub.state.create(repo, private=True)
    hub.state.tamper(repo, "keep.txt", b"earlier content")
    hub.state.repos[repo].tags["v0"] = hub.state.head(repo)
    files, head, tags = hub.state.files(repo), hub.state.head(repo), dict(hub.state.repos[repo].tags)
    hub.state.inject("POST", rf"/api/models/{repo}/commit/main", 500, times=hub_mod.RETRIES)
    result = _push(recipe, tmp_path)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{repo}: the commit failed (500" in result.stderr
    assert hub.state.files(repo) == files and hub.state.head(repo) == head and hub.state.repos[repo].tags == tags
    # nothing was changed, so the next push (the Hub healthy again) publishes and tags as usual
    assert _push(recipe, tmp_path).exit_code == 0
    assert hub.state.repos[repo].tags["v1"] == hub.state.head(repo) != head


def test_a_connection_that_keeps_failing_is_a_clear_error(tmp_path: Path, built: tuple[Path, str],
                                                         hub: HubServer) -> None:
    recipe, repo = built
    hub.state.create(repo, private=True)
    head = hub.state.head(repo)
    hub.state.inject("POST", rf"/api/models/{repo}/commit/main", 0, times=hub_mod.RETRIES)
    result = _push(recipe, tmp_path)
    assert result.exit_code == 1
    assert "the commit failed: connection failed" in result.stderr and "nothing was written" in result.stderr
    assert hub.state.head(repo) == head and not hub.state.repos[repo].tags


def test_a_failing_tag_keeps_the_commit_and_a_second_push_tags_it(tmp_path: Path, built: tuple[Path, str],
                                                                  hub: HubServer) -> None:
    recipe, repo = built
    hub.state.inject("POST", rf"/api/models/{repo}/tag/", 500, times=hub_mod.RETRIES)
    result = _push(recipe, tmp_path)
    assert result.exit_code == 1 and "tagging v1 failed (HTTP 500); the commit" in result.stderr
    assert hub.state.commits(repo) == 2 and not hub.state.repos[repo].tags
    again = _push(recipe, tmp_path)
    assert again.exit_code == 0 and json.loads(again.stdout)["changed"] is False
    _assert_published(hub, repo, tmp_path)
