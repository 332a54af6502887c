"""ONNX variants: each builds and is gated in task terms; a failed optional variant is reported, not packaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline import package
from pipeline.cli import main
from tests.coverage import record
from tests.tiny import build_ok, make_checkpoint, write_recipe

ALL = ["fp32", "optimized", "int8", "fp16"]


@pytest.mark.parametrize("arch,task", [("bert", "feature-extraction"), ("roberta", "text-classification"),
                                       ("distilbert", "feature-extraction"), ("xlm-roberta", "feature-extraction"),
                                       ("electra", "feature-extraction"), ("deberta-v2", "feature-extraction")])
def test_every_variant_builds_and_passes_its_gate(tmp_path: Path, checkpoints: dict, arch: str, task: str) -> None:
    checkpoint = checkpoints.get((arch, task)) or make_checkpoint(tmp_path / "checkpoint", arch, task)
    recipe = write_recipe(tmp_path / "r.yaml", checkpoint, task=task,
                          targets={"onnx": {"opset": 17, "variants": ALL}})
    data = build_ok(recipe, tmp_path / "out")
    pkg = Path(data["package_dir"])
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    assert set(manifest["artifacts"]) == {"onnx", "onnx-optimized", "onnx-int8", "onnx-fp16"}
    for name, file in [("onnx", "model.onnx"), ("onnx-optimized", "model_optimized.onnx"),
                       ("onnx-int8", "model_quantized.onnx"), ("onnx-fp16", "model_fp16.onnx")]:
        assert (pkg / "onnx" / file).is_file()
        assert manifest["artifacts"][name]["files"] == [f"onnx/{file}"]
    report = data["parity"]["artifacts"]
    int8_gate = report["onnx-int8"]["gate"]
    if task == "feature-extraction":  # lossy variants are gated in task terms, on the real texts
        assert int8_gate["min_pooled_cosine"] == 0.99 and int8_gate["atol"] is None
    else:
        assert int8_gate["min_argmax_agreement"] == 1.0 and int8_gate["atol"] == 0.1
    assert int8_gate["batches"] == "texts" and report["onnx"]["gate"]["batches"] == "all"
    # what consumers send is gated too where the gate is a cosine: long texts at max_seq_length, one batched
    # with short texts; the synthetic random-token batches are reported only. fp32 gates every batch but the
    # long ones (its elementwise atol measures fp32 accumulation over 256+ tokens, not a defect)
    golden = [g["batch"] for g in data["parity"]["golden"]]
    assert golden[-2:] == ["long_text", "long_with_short"]
    gated_int8 = {"texts", "long_text", "long_with_short"} if task == "feature-extraction" else {"texts"}
    for name, gated in (("onnx-int8", gated_int8), ("onnx", set(golden) - {"long_text", "long_with_short"})):
        assert [(b["batch"], o["gated"]) for b in report[name]["batches"] for o in b["outputs"]] == \
            [(b["batch"], b["batch"] in gated) for b in report[name]["batches"] for _ in b["outputs"]]
    graph = __import__("onnx").load(str(pkg / "onnx" / "model_quantized.onnx"))
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in graph.graph.node)
    for name in ("onnx-optimized", "onnx-int8", "onnx-fp16"):  # fp32 "onnx" rows: tests/test_encoders.py
        assert report[name]["passed"]
        record(arch, task, name, built=True, parity=True,
               note=None if name == "onnx-optimized" else "gated in task terms on the recipe's texts")


def test_a_lossy_variant_with_an_impossible_gate_fails_the_build(tmp_path: Path, checkpoints: dict) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          targets={"onnx": {"opset": 17, "variants": ["fp32", "int8"]}},
                          validation={"texts": ["a man is eating food.", "hi"], "shapes": [[1, 5]],
                                      "gates": {"onnx-int8": {"min_pooled_cosine": 1.0, "atol": 1e-9}}})
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(out)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: parity: onnx-int8: ")]
    assert any("pooled-embedding cosine" in e and "< 1.0" in e for e in errors), result.stderr
    assert any("> atol 1e-09" in e for e in errors)
    # gated on real texts only: the recipe's and the long ones (a cosine gate), never the synthetic batches
    assert all(any(f"({b})" in e for b in ("texts", "long_text", "long_with_short")) for e in errors)
    assert any("(long_text)" in e for e in errors) and any("(long_with_short)" in e for e in errors)
    assert not (out / "tiny" / "package").exists()


def test_a_failed_optional_variant_is_reported_and_left_out(tmp_path: Path, checkpoints: dict) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          targets={"onnx": {"opset": 17, "variants": ["fp32", "int8"], "optional": ["int8"]}},
                          validation={"texts": ["a man is eating food.", "hi"], "shapes": [[1, 5]],
                                      "gates": {"onnx-int8": {"atol": 1e-9}}})
    data = build_ok(recipe, tmp_path / "out")
    assert data["failures"] == [] and data["warnings"]
    assert all(w.startswith("onnx-int8: output ") and w.endswith("(optional: not packaged)")
               for w in data["warnings"])
    manifest = json.loads((Path(data["package_dir"]) / package.MANIFEST).read_text())
    assert set(manifest["artifacts"]) == {"onnx"}
    assert not (Path(data["package_dir"]) / "onnx" / "model_quantized.onnx").exists()
    assert data["parity"]["artifacts"]["onnx-int8"]["passed"] is False


def test_variant_names_are_checked(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", tmp_path, targets={"onnx": {"variants": ["fp32", "int4"]}})
    result = CliRunner().invoke(main, ["validate", str(recipe)])
    assert result.exit_code == 2
    assert ("targets.onnx.variants.1: input should be 'fp32', 'optimized', 'int8', 'fp16', 'int8-arm64', "
            "'int8-avx2', 'int8-avx512' or 'int8-avx512_vnni' (got 'int4')" in result.stderr)
