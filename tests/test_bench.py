"""The benchmark harness: complete JSON for a tiny build in seconds, and the recommendation rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.bench import BENCH_JSON, BENCH_PNG, Measurement, encoder_flops, recommend
from pipeline.cli import main
from tests.tiny import write_recipe


def _m(name: str, shape: tuple[int, int], p50: float) -> Measurement:
    return Measurement(artifact=name, shape=list(shape), p50_ms=p50, p90_ms=p50, throughput=0.0, gflops=0.0,
                       peak_extra_mb=None, file_mb=1.0)


def test_recommendation_is_the_fastest_passing_artifact_at_the_primary_shape() -> None:
    measured = [_m("eager", (8, 128), 160.0), _m("onnx", (8, 128), 60.0), _m("onnx-int8", (8, 128), 30.0),
                _m("onnx-optimized", (8, 128), 66.0), _m("onnx-optimized", (1, 128), 5.0),
                _m("onnx", (1, 128), 9.0)]
    assert recommend(measured, {"onnx", "onnx-int8", "onnx-optimized"}, (8, 128)) == "onnx-int8"
    assert recommend(measured, {"onnx", "onnx-optimized"}, (8, 128)) == "onnx"  # int8 failed its gate
    assert recommend(measured, {"onnx", "onnx-optimized"}, (1, 128)) == "onnx-optimized"  # primary shape rules
    assert recommend(measured, set(), (8, 128)) is None  # eager is never "recommended" as an artifact


def test_encoder_flops_from_the_config() -> None:
    from transformers import BertConfig, DistilBertConfig

    bert = BertConfig(hidden_size=384, num_hidden_layers=6, intermediate_size=1536)
    # 6 layers x (4·384² + 2·384·1536 + 2·128·384) multiply-adds per token, x 2 FLOPs, x 8·128 tokens
    assert encoder_flops(bert, 8, 128) == 2 * 8 * 128 * 6 * (4 * 384**2 + 2 * 384 * 1536 + 2 * 128 * 384)
    distil = DistilBertConfig(dim=32, n_layers=2, hidden_dim=37)
    assert encoder_flops(distil, 1, 10) == 2 * 10 * 2 * (4 * 32**2 + 2 * 32 * 37 + 2 * 10 * 32)


@pytest.fixture
def tiny_build(tmp_path: Path, checkpoints: dict) -> Path:
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          targets={"onnx": {"opset": 17, "variants": ["fp32", "int8"]}},
                          bench={"shapes": [[2, 16], [1, 8]], "runs": 3, "warmup": 1, "threads": 1})
    assert CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")]).exit_code == 0
    return recipe


def test_bench_command_writes_complete_json_and_a_chart(tmp_path: Path, tiny_build: Path) -> None:
    result = CliRunner().invoke(main, ["bench", str(tiny_build), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == json.loads((tmp_path / "out" / "tiny" / BENCH_JSON).read_text())
    assert report["settings"]["threads"] == 1 and report["settings"]["runs"] == 3
    artifacts = {r["artifact"] for r in report["results"]}
    assert artifacts == {"eager", "eager-sdpa", "onnx", "onnx-int8"}
    assert len(report["results"]) == 4 * 2
    for r in report["results"]:
        assert r["p50_ms"] > 0 and r["p90_ms"] >= r["p50_ms"] and r["throughput"] > 0 and r["gflops"] > 0
        assert r["file_mb"] > 0 and r["peak_extra_mb"] is not None
        assert r["shape"] in ([2, 16], [1, 8])
    eager = [r for r in report["results"] if r["artifact"] == "eager"]
    assert all(r["speedup_vs_eager"] == 1.0 for r in eager)
    primary = [r for r in report["results"] if r["shape"] == [2, 16] and not r["artifact"].startswith("eager")]
    assert report["recommended"] == min(primary, key=lambda r: r["p50_ms"])["artifact"]
    png = (tmp_path / "out" / "tiny" / BENCH_PNG).read_bytes()
    assert png.startswith(b"\x89PNG")


def test_bench_skips_artifacts_that_failed_their_gate(tmp_path: Path, checkpoints: dict) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          targets={"onnx": {"opset": 17, "variants": ["fp32", "int8"], "optional": ["int8"]}},
                          validation={"texts": ["a man is eating food.", "hi"], "shapes": [[1, 5]],
                                      "gates": {"onnx-int8": {"atol": 1e-9}}},
                          bench={"shapes": [[1, 8]], "runs": 2, "warmup": 0, "threads": 1, "on_build": True})
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["recommended"] == "onnx"
    report = json.loads((tmp_path / "out" / "tiny" / BENCH_JSON).read_text())
    assert {r["artifact"] for r in report["results"]} == {"eager", "eager-sdpa", "onnx"}


def test_bench_without_a_build_is_a_clear_error(tmp_path: Path, checkpoints: dict) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")])
    result = CliRunner().invoke(main, ["bench", str(recipe), "--out", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no build to measure" in result.stderr and "Traceback" not in result.output
