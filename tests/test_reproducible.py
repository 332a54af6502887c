"""Rebuilds are byte-identical (across processes, hash seeds and output folders), so re-running a
release for an unchanged recipe on a fresh runner commits nothing and leaves the tag alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline import package
from pipeline.cli import main
from tests.hub_server import HubServer
from tests.tiny import demo_shaped_recipe, write_recipe

SENTINEL = "hf_SENTINELtoken" + "y" * 20


def _convert(*args: str, seed: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}  # each build its own process and string hash seed
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.mark.slow
def test_a_release_rerun_rebuilds_byte_identical_and_pushes_nothing(tmp_path: Path, checkpoints: dict,
                                                                    hub: HubServer,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    repo = f"org/release-{uuid.uuid4().hex[:8]}"
    recipe = demo_shaped_recipe(tmp_path / "recipe" / "r.yaml", checkpoints[("bert", "feature-extraction")],
                                publish={"repo": repo, "tag": "v1"})
    first = _convert("build", str(recipe), "--out", str(tmp_path / "runner-1"), seed=1)
    assert first.returncode == 0, first.stderr
    pushed = _convert("push", str(recipe), "--out", str(tmp_path / "runner-1"), "--json", seed=1)
    assert pushed.returncode == 0, pushed.stderr
    commits, head, tag = hub.state.commits(repo), hub.state.head(repo), hub.state.repos[repo].tags["v1"]
    assert json.loads(pushed.stdout)["changed"] is True and tag == head

    # a fresh runner: new process, another hash seed, another output folder, no cache
    second = _convert("build", str(recipe), "--out", str(tmp_path / "runner-2"), seed=2023)
    assert second.returncode == 0, second.stderr
    manifests = [(tmp_path / runner / "tiny" / "package" / package.MANIFEST) for runner in ("runner-1", "runner-2")]
    one, two = (json.loads(m.read_text()) for m in manifests)
    assert set(one["artifacts"]) == {"onnx", "onnx-optimized", "onnx-int8", "onnx-int8-avx2", "onnx-int8-avx512_vnni",
                                     "torchscript", "torch_export", "bettertransformer"}
    differing = sorted(f for f in one["files"] if one["files"][f] != two["files"].get(f))
    assert differing == [] and one["files"].keys() == two["files"].keys()
    # no benchmark ran, so nothing in the manifest depends on time: the whole file is the same
    assert manifests[0].read_bytes() == manifests[1].read_bytes()
    # nothing says where it was built: no checkout, virtualenv or output path in any file (zip archives
    # such as model.pt and model.pt2 opened entry by entry, as their debug records are compressed)
    package_dir = tmp_path / "runner-2" / "tiny" / "package"
    local = [str(Path(__file__).resolve().parent.parent).encode(), sys.prefix.encode(), str(tmp_path).encode()]
    for path in package_dir.rglob("*"):
        if path.is_file():
            blobs = ([zipfile.ZipFile(path).read(n) for n in zipfile.ZipFile(path).namelist()]
                     if zipfile.is_zipfile(path) else [path.read_bytes()])
            assert not any(place in blob for place in local for blob in blobs), path

    again = _convert("push", str(recipe), "--out", str(tmp_path / "runner-2"), "--json", seed=7)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changed"] is False
    assert "tag v1: already on" in " ".join(json.loads(again.stdout)["operations"])
    # the release job's other form: build and push in one command, on a third fresh runner
    third = _convert("build", str(recipe), "--out", str(tmp_path / "runner-3"), "--push", seed=99)
    assert third.returncode == 0, third.stderr
    assert (hub.state.commits(repo), hub.state.head(repo), hub.state.repos[repo].tags["v1"]) == (commits, head, tag)


def test_torch_jit_archives_do_not_depend_on_what_the_process_compiled_before(tmp_path: Path,
                                                                              checkpoints: dict) -> None:
    """torch.jit numbers the types it compiles per process (``___torch_mangle_N``): a trace made after
    other modules were compiled (here: this test process's earlier tests, then the first build) must
    still give the bytes of one made in a fresh process."""
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          targets={"bettertransformer": {}, "torchscript": {}})
    hashes = []
    for out in ("in-process-1", "in-process-2"):
        result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / out), "--json"])
        assert result.exit_code == 0, result.output
        hashes.append(json.loads((tmp_path / out / "tiny" / "package" / package.MANIFEST).read_text())["files"])
    fresh = _convert("build", str(recipe), "--out", str(tmp_path / "fresh"), seed=11)
    assert fresh.returncode == 0, fresh.stderr
    hashes.append(json.loads((tmp_path / "fresh" / "tiny" / "package" / package.MANIFEST).read_text())["files"])
    for name in ("torchscript/model.pt", "bettertransformer/model.pt"):
        assert hashes[0][name] == hashes[1][name] == hashes[2][name], name
