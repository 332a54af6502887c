"""Hub sources through the loopback Hub: a build downloads the pinned commit (safetensors only), the
manifest records the resolved commit, and publishing from a floating ref needs explicit consent."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline import package
from pipeline.cli import main
from tests.hub_server import HubServer
from tests.test_hub import SENTINEL
from tests.tiny import write_recipe


@pytest.fixture
def source_repo(tmp_path: Path, checkpoints: dict, hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A tiny BERT checkpoint on the loopback Hub, with a pickle beside its safetensors; (repo, commit)."""
    from huggingface_hub import HfApi

    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    folder = tmp_path / "upload"
    shutil.copytree(checkpoints[("bert", "feature-extraction")], folder)
    (folder / "pytorch_model.bin").write_bytes(b"a pickle that must never be downloaded")
    repo = f"org/src-{uuid.uuid4().hex[:8]}"
    api = HfApi(token=SENTINEL)
    api.create_repo(repo, exist_ok=True)
    info = api.upload_folder(repo_id=repo, folder_path=folder, commit_message="checkpoint")
    return repo, info.oid


def _recipe(tmp_path: Path, source: dict, publish_repo: str) -> Path:
    return write_recipe(tmp_path / "r.yaml", None, source=source, publish={"repo": publish_repo, "tag": "v1"})


def test_a_pinned_hub_source_builds_and_publishes(tmp_path: Path, source_repo: tuple[str, str],
                                                  hub: HubServer) -> None:
    repo, commit = source_repo
    recipe = _recipe(tmp_path, {"model": repo, "revision": commit}, f"{repo}-onnx")
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out"), "--push"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "tiny" / "package" / package.MANIFEST).read_text())
    assert manifest["source"] == {"kind": "hub", "id": repo, "revision": commit, "fingerprint": commit}
    downloads = [path for method, path, _ in hub.state.log if method == "GET" and f"/{repo}/resolve/" in path]
    assert any(p.endswith("/model.safetensors") for p in downloads)
    assert not any(p.endswith(".bin") for p in downloads)  # pickles are never fetched
    card = hub.state.files(f"{repo}-onnx")["README.md"].decode()
    assert f"base_model: {repo}" in card


def test_a_floating_revision_builds_but_publishes_only_with_consent(tmp_path: Path, source_repo: tuple[str, str],
                                                                    hub: HubServer) -> None:
    repo, commit = source_repo
    target = f"{repo}-onnx"
    recipe = _recipe(tmp_path, {"model": repo, "revision": "main"}, target)
    out = tmp_path / "out"
    assert CliRunner().invoke(main, ["build", str(recipe), "--out", str(out)]).exit_code == 0
    manifest = json.loads((out / "tiny" / "package" / package.MANIFEST).read_text())
    assert manifest["source"]["revision"] == commit  # the resolved commit, not "main"
    refused = CliRunner().invoke(main, ["push", str(recipe), "--out", str(out)])
    assert refused.exit_code == 1
    assert "the source revision 'main' is a branch or tag (resolved to " + commit in refused.stderr
    assert "source.allow_floating_revision: true" in refused.stderr
    assert target not in hub.state.repos

    recipe = _recipe(tmp_path, {"model": repo, "revision": "main", "allow_floating_revision": True}, target)
    assert CliRunner().invoke(main, ["build", str(recipe), "--out", str(out)]).exit_code == 0
    pushed = CliRunner().invoke(main, ["push", str(recipe), "--out", str(out)])
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(hub.state.files(target)[package.MANIFEST])["source"]["revision"] == commit


def test_an_unknown_revision_is_one_line(tmp_path: Path, source_repo: tuple[str, str]) -> None:
    repo, _ = source_repo
    recipe = _recipe(tmp_path, {"model": repo, "revision": "f" * 40}, f"{repo}-onnx")
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert f"r.yaml:4:13: source.revision: {repo} has no revision '{'f' * 40}'" in errors[0]
    assert not (tmp_path / "out").exists()
