"""Incremental builds: each step reruns exactly when its inputs change, and never trusts a half-written output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.tiny import build_ok, write_recipe

BASE = {"targets": {"onnx": {"opset": 17, "variants": ["fp32", "int8"]}},
        "validation": {"texts": ["a man is eating food.", "hi"], "shapes": [[1, 5], [3, 24]]}}


def _steps(data: dict) -> dict[str, str]:
    """What each step did: 'reused' or 'ran'."""
    reused = set(data["reused"])
    steps = {"golden": "golden", "onnx": "onnx", "parity:onnx": "parity:onnx",
             "parity:onnx-int8": "parity:onnx-int8", "package": "package"}
    return {k: "reused" if v in reused else "ran" for k, v in steps.items()}


ALL_REUSED = {"golden": "reused", "onnx": "reused", "parity:onnx": "reused", "parity:onnx-int8": "reused",
              "package": "reused"}

# (id, recipe edit, what reruns)
EDITS = [
    ("nothing", {}, ALL_REUSED),
    ("one tolerance", {"validation": {**BASE["validation"], "gates": {"onnx": {"atol": 1e-3}}}},
     {**ALL_REUSED, "parity:onnx": "ran", "package": "ran"}),
    ("the opset", {"targets": {"onnx": {**BASE["targets"]["onnx"], "opset": 18}}},
     {**ALL_REUSED, "onnx": "ran", "parity:onnx": "ran", "parity:onnx-int8": "ran", "package": "ran"}),
    ("the int8 settings", {"targets": {"onnx": {**BASE["targets"]["onnx"], "int8": {"per_channel": False}}}},
     {**ALL_REUSED, "onnx": "ran", "parity:onnx-int8": "ran", "package": "ran"}),  # fp32 graph bytes unchanged
    ("the texts", {"validation": {**BASE["validation"], "texts": ["a girl is carrying a baby", "hi"]}},
     {**ALL_REUSED, "golden": "ran", "parity:onnx": "ran", "parity:onnx-int8": "ran", "package": "ran"}),
    ("the publish repo", {"publish": {"repo": "org/other"}}, {**ALL_REUSED, "package": "ran"}),
]


@pytest.fixture
def first_build(tmp_path: Path, checkpoints: dict) -> tuple[Path, Path, Path]:
    folder = tmp_path / "model"
    shutil.copytree(checkpoints[("bert", "feature-extraction")], folder)
    recipe = write_recipe(tmp_path / "r.yaml", folder, **BASE)
    out = tmp_path / "out"
    data = build_ok(recipe, out)
    assert data["reused"] == []
    return recipe, out, folder


@pytest.mark.parametrize("edit,expected", [e[1:] for e in EDITS], ids=[e[0] for e in EDITS])
def test_a_recipe_edit_reruns_exactly_what_depends_on_it(first_build: tuple[Path, Path, Path], edit: dict,
                                                         expected: dict) -> None:
    recipe, out, folder = first_build
    write_recipe(recipe, folder, **{**BASE, **edit})
    data = build_ok(recipe, out)
    assert _steps(data) == expected
    stage = next(s for s in data["stages"] if s["stage"] == "onnx")
    assert stage["status"] == ("reused" if expected["onnx"] == "reused" else "built")
    manifest = json.loads((out / "tiny" / "package" / "manifest.json").read_text())
    assert manifest["recipe"]["validation"]["texts"] == (edit.get("validation") or BASE["validation"])["texts"]


def test_changed_source_weights_rebuild_everything(first_build: tuple[Path, Path, Path]) -> None:
    recipe, out, folder = first_build
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    key = next(iter(weights))
    weights[key] = weights[key] + 0.01
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    data = build_ok(recipe, out)
    assert _steps(data) == {k: "ran" for k in ALL_REUSED}


def test_a_tampered_stage_output_is_rebuilt_not_trusted(first_build: tuple[Path, Path, Path]) -> None:
    recipe, out, _ = first_build
    graph = out / "tiny" / "stages" / "onnx" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-10] + b"0123456789")
    data = build_ok(recipe, out)
    stage = next(s for s in data["stages"] if s["stage"] == "onnx")
    assert stage["status"] == "built" and stage["reason"] == "model.onnx changed on disk since it was built"


def test_force_and_force_stage(first_build: tuple[Path, Path, Path]) -> None:
    recipe, out, _ = first_build
    data = build_ok(recipe, out, "--force-stage", "onnx")
    assert next(s for s in data["stages"] if s["stage"] == "onnx")["reason"] == "forced"
    assert "golden" in data["reused"]
    assert build_ok(recipe, out, "--force")["reused"] == []
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(out), "--force-stage", "tflite"])
    assert result.exit_code == 2 and "tflite (this recipe builds: onnx)" in result.stderr


def test_a_killed_build_leaves_nothing_a_rerun_trusts(first_build: tuple[Path, Path, Path]) -> None:
    recipe, out, folder = first_build
    stages = out / "tiny" / "stages"
    # what a build killed mid-stage leaves: a temporary folder, never a renamed one
    half = stages / ".onnx.tmp-killed"
    half.mkdir()
    (half / "model.onnx").write_bytes(b"half a graph")
    # and a stage folder from an older build with its record missing
    shutil.rmtree(stages / "onnx")
    (stages / "onnx").mkdir()
    (stages / "onnx" / "model.onnx").write_bytes(b"not a finished output")
    data = build_ok(recipe, out)
    stage = next(s for s in data["stages"] if s["stage"] == "onnx")
    assert stage["status"] == "built" and stage["reason"] == "no finished output yet"
    assert not half.exists()
    assert (stages / "onnx" / "model.onnx").stat().st_size > 1000


def test_a_second_build_of_the_same_recipe_waits_for_the_first(first_build: tuple[Path, Path, Path]) -> None:
    import fcntl

    recipe, out, _ = first_build
    lock = (out / "tiny" / ".lock").open("a+")
    fcntl.flock(lock, fcntl.LOCK_EX)  # a build in progress
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "build", str(recipe), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    said = b""
    try:
        assert proc.stderr is not None
        # started: it resolves its source just before it takes the lock (a loaded machine can take longer
        # than any fixed sleep to import the pipeline). Read byte by byte from the pipe itself: a buffered
        # read would take lines that communicate() below, which reads the pipe, then never sees.
        while not (b"resolving" in said and said.endswith(b"\n")):
            byte = os.read(proc.stderr.fileno(), 1)
            if not byte:
                break
            said += byte
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()  # still waiting
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    stdout, stderr = proc.communicate(timeout=120)
    stderr = said.decode() + stderr
    assert proc.returncode == 0, stderr
    assert "waiting for the build running in" in stderr


def test_a_damaged_record_is_a_miss_reported_once(first_build: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from pipeline.steps import Records, Step

    recipe, out, _ = first_build
    (out / "tiny" / "stages" / "onnx" / "stage.json").write_text("{half a record", encoding="utf-8")
    data = build_ok(recipe, out)
    stage = next(s for s in data["stages"] if s["stage"] == "onnx")
    assert stage["status"] == "built" and stage["reason"] == "its record is damaged"
    assert "golden" in data["reused"]
    said: list[tuple[str, str]] = []
    records = Records(lambda step, message: said.append((step, message)))
    damaged = tmp_path / "r.json"
    damaged.write_text("[1, 2]", encoding="utf-8")
    key = Step("golden").key()
    assert records.reuse(damaged, key) == (None, "its record is damaged")
    assert records.reuse(damaged, key) == (None, "its record is damaged")
    assert len(said) == 1 and "damaged record" in said[0][1]  # reported once per build


def test_an_int8_setting_requantizes_and_regates_int8_only(first_build: tuple[Path, Path, Path]) -> None:
    """The exported graph and each variant are steps of their own: the fp32 graph is taken from the
    previous output (the same file, not exported again), int8 is quantized and gated again."""
    recipe, out, folder = first_build
    stage_dir = out / "tiny" / "stages" / "onnx"
    graph, int8 = stage_dir / "model.onnx", stage_dir / "model_quantized.onnx"
    before = graph.stat().st_ino, int8.read_bytes()
    write_recipe(recipe, folder, **{**BASE, "targets": {"onnx": {**BASE["targets"]["onnx"],
                                                                  "int8": {"per_channel": False}}}})
    data = build_ok(recipe, out)
    stage = next(s for s in data["stages"] if s["stage"] == "onnx")
    assert stage["status"] == "built" and stage["reused_parts"] == ["export"]
    assert graph.stat().st_ino == before[0]  # linked from the previous output: never exported again
    assert int8.read_bytes() != before[1]  # per-tensor weights: quantized again
    assert "parity:onnx" in data["reused"] and "parity:onnx-int8" not in data["reused"]
    # and back: the int8 graph of the first settings is made again, the graph still taken
    write_recipe(recipe, folder, **BASE)
    again = next(s for s in build_ok(recipe, out)["stages"] if s["stage"] == "onnx")
    assert again["reused_parts"] == ["export"] and int8.read_bytes() == before[1]
    assert build_ok(recipe, out, "--force-stage", "onnx")["stages"][0]["reused_parts"] == []  # forced: nothing taken
