"""Publishing against the loopback Hub with the real huggingface_hub client: one atomic commit, a
tag, idempotent re-pushes, stale parents, dry runs, verification, consumers, and the token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline import cpu, package
from pipeline.cli import main
from tests.hub_server import HubServer
from tests.tiny import write_recipe

SENTINEL = "hf_SENTINELtoken" + "x" * 20


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    return SENTINEL


def _repo() -> str:
    return f"org/tiny-{uuid.uuid4().hex[:8]}"


def _built(tmp_path: Path, checkpoints: dict, repo: str, task: str = "feature-extraction", **extra: object) -> Path:
    arch = "bert"
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[(arch, task)], task=task,
                          publish={"repo": repo, "tag": "v1", "private": True}, **extra)
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    return recipe


def _push(recipe: Path, tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["push", str(recipe), "--out", str(tmp_path / "out"), "--json", *extra])


def test_push_is_one_commit_with_a_tag_and_a_repush_makes_none(tmp_path: Path, checkpoints: dict,
                                                                hub: HubServer, token: str) -> None:
    repo = _repo()
    recipe = _built(tmp_path, checkpoints, repo, targets={"onnx": {"opset": 17, "variants": ["fp32", "int8"]}})
    result = _push(recipe, tmp_path)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["changed"] is True and data["tag"] == "v1"
    state = hub.state
    assert state.commits(repo) == 2  # the repo's initial commit + exactly one commit with every file
    assert state.repos[repo].private is True
    assert state.repos[repo].tags["v1"] == state.head(repo) == data["commit"]
    manifest = json.loads((tmp_path / "out" / "tiny" / "package" / package.MANIFEST).read_text())
    remote = state.files(repo)
    assert set(remote) == {".gitattributes", package.MANIFEST, *package.all_files(manifest)}
    assert remote["onnx/model_quantized.onnx"] == (tmp_path / "out/tiny/package/onnx/model_quantized.onnx").read_bytes()
    card = remote["README.md"].decode()
    assert card.startswith("---\n") and "pipeline_tag: feature-extraction" in card and "model-index" in card
    assert f'ORTModelForFeatureExtraction.from_pretrained("{repo}", subfolder="onnx"' in card

    again = _push(recipe, tmp_path)
    assert again.exit_code == 0 and json.loads(again.stdout)["changed"] is False
    assert state.commits(repo) == 2
    assert "tag v1: already on" in " ".join(json.loads(again.stdout)["operations"])


def test_a_changed_package_replaces_files_and_needs_a_new_tag(tmp_path: Path, checkpoints: dict,
                                                               hub: HubServer, token: str) -> None:
    repo = _repo()
    recipe = _built(tmp_path, checkpoints, repo, targets={"onnx": {"opset": 17, "variants": ["fp32", "int8"]}})
    assert _push(recipe, tmp_path).exit_code == 0
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          publish={"repo": repo, "tag": "v1"}, targets={"onnx": {"opset": 17}})
    assert CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")]).exit_code == 0
    result = _push(recipe, tmp_path)
    assert result.exit_code == 1
    assert "tag 'v1' already points to" in result.stderr and "bump publish.tag" in result.stderr
    assert "onnx/model_quantized.onnx" not in hub.state.files(repo)  # the commit landed; deletions included
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          publish={"repo": repo, "tag": "v2"}, targets={"onnx": {"opset": 17}})
    assert CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")]).exit_code == 0
    result = _push(recipe, tmp_path)
    assert result.exit_code == 0, result.output
    assert set(hub.state.repos[repo].tags) == {"v1", "v2"}


def test_dry_run_writes_nothing_and_lists_the_operations(tmp_path: Path, checkpoints: dict,
                                                         hub: HubServer, token: str) -> None:
    repo = _repo()
    recipe = _built(tmp_path, checkpoints, repo)
    before = len(hub.state.log)
    result = CliRunner().invoke(main, ["push", str(recipe), "--out", str(tmp_path / "out"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert repo not in hub.state.repos
    assert all(method in ("GET", "HEAD") for method, _, _ in hub.state.log[before:])
    assert f"create repo {repo} (private)" in result.stdout
    assert "add onnx/model.onnx" in result.stdout and "tag v1 -> the new commit" in result.stdout


def test_a_stale_parent_is_a_clear_error_and_writes_nothing(tmp_path: Path, checkpoints: dict,
                                                            hub: HubServer, token: str) -> None:
    repo = _repo()
    recipe = _built(tmp_path, checkpoints, repo)
    hub.state.create(repo, private=True)
    original = hub.state.head(repo)
    # someone else commits between our read of the head and our commit
    hub.state.before_commit = lambda repo_id: hub.state.tamper(repo_id, "other.txt", b"someone else's change")
    try:
        result = _push(recipe, tmp_path)
    finally:
        hub.state.before_commit = None
    assert result.exit_code == 1
    assert f"{repo}@main changed while pushing (its head is no longer {original[:12]}): nothing was written" \
        in result.stderr
    assert set(hub.state.files(repo)) == {".gitattributes", "other.txt"}
    assert not hub.state.repos[repo].tags


def test_refuses_a_package_that_failed_or_was_modified(tmp_path: Path, checkpoints: dict,
                                                       hub: HubServer, token: str) -> None:
    repo = _repo()
    recipe = _built(tmp_path, checkpoints, repo)
    graph = tmp_path / "out" / "tiny" / "package" / "onnx" / "model.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    result = _push(recipe, tmp_path)
    assert result.exit_code == 1 and "files do not match the manifest: onnx/model.onnx: changed" in result.stderr
    assert repo not in hub.state.repos
    build = tmp_path / "out" / "tiny" / "build.json"
    build.write_text(json.dumps({**json.loads(build.read_text()), "passed": False, "failures": ["x"]}))
    result = _push(recipe, tmp_path)
    assert result.exit_code == 1 and "the last build failed its parity gate" in result.stderr


def test_no_token_is_a_clear_error(tmp_path: Path, checkpoints: dict, hub: HubServer,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    repo = _repo()
    recipe = _built(tmp_path, checkpoints, repo)
    result = _push(recipe, tmp_path)
    assert result.exit_code == 1 and "no Hub token: set HF_TOKEN" in result.stderr


def test_verify_passes_then_catches_a_tampered_file_and_a_tampered_manifest(tmp_path: Path, checkpoints: dict,
                                                                           hub: HubServer, token: str) -> None:
    repo = _repo()
    recipe = _built(tmp_path, checkpoints, repo, task="text-classification")
    assert _push(recipe, tmp_path).exit_code == 0
    ok = CliRunner().invoke(main, ["verify", f"{repo}@v1"])
    assert ok.exit_code == 0, ok.output
    assert "golden outputs reproduced by onnx" in ok.stdout
    assert f"re-gated on: {cpu.summary()}" in ok.stdout  # the verifying machine's instruction set

    graph = bytearray(hub.state.files(repo)["onnx/model.onnx"])
    graph[-5] ^= 0xFF
    hub.state.tamper(repo, "onnx/model.onnx", bytes(graph))
    bad = CliRunner().invoke(main, ["verify", repo])
    assert bad.exit_code == 1
    assert "onnx/model.onnx: sha256 differs from the manifest (tampered or corrupted)" in bad.stderr

    manifest = json.loads(hub.state.files(repo, "v1")[package.MANIFEST])
    manifest["recipe"]["validation"]["gates"] = {"onnx": {"atol": 1.0}}  # a looser gate, hash left as it was
    hub.state.tamper(repo, package.MANIFEST, json.dumps(manifest).encode())
    hub.state.tamper(repo, "onnx/model.onnx", hub.state.files(repo, "v1")["onnx/model.onnx"])
    bad = CliRunner().invoke(main, ["verify", repo])
    assert bad.exit_code == 1 and "recipe_sha256 does not match its recipe (edited manifest)" in bad.stderr
    pinned = CliRunner().invoke(main, ["verify", f"{repo}@v1", "--manifest-sha256", "0" * 64])
    assert pinned.exit_code == 1 and "is not the expected" in pinned.stderr


CONSUMER = r"""
import json, sys
import numpy as np
from huggingface_hub import snapshot_download
folder = snapshot_download(sys.argv[1], revision="v1")
golden_in = np.load(f"{folder}/golden_inputs.npz")
golden_out = np.load(f"{folder}/golden_outputs.npz")
feed = {k.split("/", 1)[1]: golden_in[k] for k in golden_in.files if k.startswith("texts/")}
expected = golden_out["texts/" + sys.argv[3]]

import onnxruntime as ort
session = ort.InferenceSession(f"{folder}/onnx/model.onnx", providers=["CPUExecutionProvider"])
names = {i.name for i in session.get_inputs()}
plain = session.run([sys.argv[3]], {k: v for k, v in feed.items() if k in names})[0]

import torch
import optimum.onnxruntime as ortm
from transformers import AutoTokenizer
model = getattr(ortm, sys.argv[2]).from_pretrained(folder, subfolder="onnx", file_name="model.onnx")
tokenizer = AutoTokenizer.from_pretrained(folder)
with torch.inference_mode():
    out = model(**{k: torch.from_numpy(v) for k, v in feed.items() if k in names})

# torch.jit.load: inputs and outputs in the order the manifest records
meta = json.load(open(f"{folder}/manifest.json"))["artifacts"]["torchscript"]["metadata"]
module = torch.jit.load(f"{folder}/torchscript/model.pt")
with torch.inference_mode():
    traced = module(*[torch.from_numpy(feed[n]) for n in meta["inputs"]])
traced = dict(zip(meta["outputs"], traced))[sys.argv[3]].numpy()
print(json.dumps({"plain": float(np.abs(plain - expected).max()),
                  "optimum": float(np.abs(getattr(out, sys.argv[3]).numpy() - expected).max()),
                  "torchscript": float(np.abs(traced - expected).max()),
                  "tokenizer": type(tokenizer).__name__}))
"""


@pytest.mark.parametrize("task,ort_class,output", [("feature-extraction", "ORTModelForFeatureExtraction",
                                                    "last_hidden_state"),
                                                   ("text-classification", "ORTModelForSequenceClassification",
                                                    "logits")])
def test_round_trip_consumers_in_a_fresh_process(tmp_path: Path, checkpoints: dict, hub: HubServer, token: str,
                                                 task: str, ort_class: str, output: str) -> None:
    repo = _repo()
    recipe = _built(tmp_path, checkpoints, repo, task=task, targets={"onnx": {"opset": 17}, "torchscript": {}})
    assert _push(recipe, tmp_path).exit_code == 0
    env = {**os.environ, "HF_HOME": str(tmp_path / "consumer-home")}
    env.pop("HF_TOKEN")  # a consumer of a private repo would need one; this loopback Hub serves reads openly
    proc = subprocess.run([sys.executable, "-c", CONSUMER, repo, ort_class, output], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["plain"] < 1e-4 and result["optimum"] < 1e-4 and result["torchscript"] < 1e-4
    assert result["tokenizer"].endswith("TokenizerFast")


def test_build_push_and_the_token_never_leaks(tmp_path: Path, checkpoints: dict, hub: HubServer, token: str) -> None:
    repo = _repo()
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("roberta", "feature-extraction")],
                          publish={"repo": repo, "tag": "v1"})
    out = tmp_path / "out"
    outputs = []
    for args in (["--debug", "build", str(recipe), "--out", str(out), "--push"],
                 ["--debug", "push", str(recipe), "--out", str(out), "--dry-run"],
                 ["--debug", "verify", repo],
                 ["--debug", "push", str(recipe), "--out", str(out), "--revision", "no-such-branch"]):
        result = CliRunner().invoke(main, args)
        outputs.append(result.output + (result.stderr or ""))
        if result.exception and not isinstance(result.exception, SystemExit):
            outputs.append(repr(result.exception))
    assert "pushed" in outputs[0] and "is up to date" in outputs[1] or "already holds" in outputs[1] \
        or "tag v1: already on" in outputs[1]
    assert "has no branch 'no-such-branch'" in outputs[3]
    assert any(h == f"Bearer {SENTINEL}" for h in hub.state.auth_headers)  # it was used...
    for text in outputs:
        assert SENTINEL not in text  # ...and never printed
    for path in [*out.rglob("*"), *Path(os.environ["HF_HOME"]).rglob("*")]:
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert SENTINEL.encode() not in path.read_bytes(), path


def test_create_pr_leaves_main_and_tags_alone(tmp_path: Path, checkpoints: dict, hub: HubServer, token: str) -> None:
    repo = _repo()
    recipe = _built(tmp_path, checkpoints, repo)
    hub.state.create(repo, private=True)
    main_head = hub.state.head(repo)
    result = _push(recipe, tmp_path, "--create-pr")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["changed"] is True and data["pr_url"].endswith(f"/{repo}/discussions/1")
    assert any("not set on a pull request" in op for op in data["operations"])
    assert hub.state.head(repo) == main_head and not hub.state.repos[repo].tags  # main untouched, no tag
    pr = hub.state.repos[repo].branches["refs/pr/1"]
    assert pr == data["commit"] and package.MANIFEST in hub.state.files(repo, pr)


def test_push_to_a_branch(tmp_path: Path, checkpoints: dict, hub: HubServer, token: str) -> None:
    from huggingface_hub import HfApi

    repo = _repo()
    recipe = _built(tmp_path, checkpoints, repo)
    hub.state.create(repo, private=True)
    HfApi(token=token).create_branch(repo, branch="staging")
    main_head = hub.state.head(repo)
    result = _push(recipe, tmp_path, "--revision", "staging")
    assert result.exit_code == 0, result.output
    assert hub.state.head(repo) == main_head  # main untouched
    assert hub.state.head(repo, "staging") == json.loads(result.stdout)["commit"]
    assert hub.state.repos[repo].tags["v1"] == hub.state.head(repo, "staging")
