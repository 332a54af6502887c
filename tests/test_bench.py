"""The benchmark harness: complete JSON for a tiny build in seconds, traffic batches, interleaved rounds.

The statistics and the recommendation rule on synthetic timings: tests/test_stats.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline import traffic
from pipeline.bench import BENCH_JSON, BENCH_PNG, Measurement, accuracy, encoder_flops, recommend
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
        assert r["ci_ms"][0] <= r["p50_ms"] <= r["ci_ms"][1] and r["ci_rel_width"] >= 0 and r["spread_rel"] >= 0
    eager = [r for r in report["results"] if r["artifact"] == "eager"]
    assert all(r["speedup_vs_eager"] == 1.0 for r in eager)
    # the recommendation: decided on the primary shape, among the passing artifacts only, by the rule
    decision = report["decision"]
    assert decision["basis"] == "primary shape 2x16" and "interval" in decision["rule"]
    assert {c["artifact"] for c in decision["candidates"]} == {"onnx", "onnx-int8"}
    tied = [c for c in decision["candidates"] if c["tied"]]
    assert report["recommended"] in {c["artifact"] for c in tied} and report["recommended"] in decision["reason"]
    for c in decision["candidates"]:
        assert c["tied"] == (not c["slower_than"]) and c["samples"] == 3
    primary = [r for r in report["results"] if r["shape"] == [2, 16] and not r["artifact"].startswith("eager")]
    assert decision["lowest_median"] == min(primary, key=lambda r: r["p50_ms"])["artifact"]
    # the machine, the libraries and the noise seen
    assert report["threads"] == 1 and report["cpu"]["arch"] and "isa" in report["cpu"]
    assert report["versions"]["onnxruntime"] and report["versions"]["torch"]
    assert report["noise"]["rounds"] == 3 and report["noise"]["interleaved"] is True
    assert set(report["noise"]["ci_rel_width"]) >= {"onnx 2x16", "onnx-int8 1x8", "eager traffic/8"}
    # traffic mode, on by default with the recipe's texts: every artifact at every batch size
    t = report["traffic"]
    assert t["source"] == "validation.texts" and t["texts"] == 3 and t["sort_by_length"] is False
    assert [s["batch_size"] for s in t["sets"]] == [1, 8, 32] and [s["batches"] for s in t["sets"]] == [3, 1, 1]
    assert len(t["results"]) == 4 * 3
    for row in t["results"]:
        assert row["pass_ms"] > 0 and row["sentences_per_s"] > 0 and row["ci_ms"][0] <= row["pass_ms"]
    png = (tmp_path / "out" / "tiny" / BENCH_PNG).read_bytes()
    assert png.startswith(b"\x89PNG")
    card = (tmp_path / "out" / "tiny" / "package" / "README.md").read_text()
    assert "## Benchmark" not in card  # this build did not bench on build; `convert bench` leaves the package alone


def test_traffic_from_a_texts_file_decides_the_recommendation(tmp_path: Path, checkpoints: dict) -> None:
    texts = [f"the girl is carrying {'a baby ' * (i % 7)}on a plane" for i in range(20)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "texts.txt").write_text("\n".join(texts[:10]) + "\n\n" + "\n".join(texts[10:]) + "\n")
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          targets={"onnx": {"opset": 17}, "torchscript": {}},
                          bench={"shapes": [[1, 8]], "runs": 2, "warmup": 0, "threads": 1, "on_build": True,
                                 "traffic_batches": [1, 8], "texts_file": "data/texts.txt", "sort_by_length": True,
                                 "recommend_on": "traffic"})
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "tiny" / BENCH_JSON).read_text())
    t = report["traffic"]
    assert t["source"] == "bench.texts_file: data/texts.txt" and t["texts"] == 20 and t["sort_by_length"] is True
    assert [s["batches"] for s in t["sets"]] == [20, 3]
    assert [s["shapes"][-1][0] for s in t["sets"]] == [1, 4]  # the last batch holds what is left
    assert report["decision"]["basis"] == "one pass over the traffic texts at batch sizes 1, 8"
    assert report["recommended"] in {"onnx", "torchscript"}
    assert {c["accuracy"][0] for c in report["decision"]["candidates"]} == {0.0}  # both fp32-class
    manifest = json.loads((tmp_path / "out" / "tiny" / "package" / "manifest.json").read_text())
    assert manifest["recommended"] == report["recommended"]
    card = (tmp_path / "out" / "tiny" / "package" / "README.md").read_text()
    assert "## Benchmark" in card and "95% interval" in card and report["decision"]["reason"] in card
    assert "sentences/s" in card
    # a texts file that leaves the recipe's folder through a link is refused before anything loads
    (tmp_path / "data" / "texts.txt").unlink()
    (tmp_path / "data" / "texts.txt").symlink_to(tmp_path.parent / "elsewhere.txt")
    result = CliRunner().invoke(main, ["bench", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "bench.texts_file: 'data/texts.txt' leads outside the recipe's folder" in result.stderr
    (tmp_path / "data" / "texts.txt").unlink()
    result = CliRunner().invoke(main, ["bench", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "'data/texts.txt': no such file" in result.stderr


def test_traffic_batches_are_padded_to_their_own_longest_row(checkpoints: dict) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoints[("bert", "feature-extraction")])
    texts = ["hi", "a man is eating food on a plane at dawn and the passengers are asleep", "a baby",
             "the girl is carrying a baby", "hi", "a man is eating a piece of bread in the city"]
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    sets = traffic.traffic_sets(tokenizer, texts, [1, 4], sort_by_length=False, max_length=512)
    ones, fours = sets
    assert [b["input_ids"].shape for b in ones.batches] == [(1, n) for n in lengths]  # no padding at all
    assert [b["input_ids"].shape for b in fours.batches] == [(4, max(lengths[:4])), (2, max(lengths[4:]))]
    for batch in fours.batches:
        real = batch["attention_mask"].sum(axis=1)
        assert batch["input_ids"].shape[1] == real.max() and real.min() < real.max()  # padded, to its own longest
        assert batch["input_ids"].dtype == np.int64
    assert fours.describe()["padding_share"] > 0 and ones.describe()["padding_share"] == 0
    (ordered,) = traffic.traffic_sets(tokenizer, texts, [2], sort_by_length=True, max_length=512)
    rows = [int(n) for b in ordered.batches for n in b["attention_mask"].sum(axis=1)]
    assert rows == sorted(lengths, reverse=True)  # longest first: rows of a batch alike, little padding
    assert ordered.describe()["padding_share"] < traffic.traffic_sets(
        tokenizer, texts, [2], sort_by_length=False, max_length=512)[0].describe()["padding_share"]
    (cut,) = traffic.traffic_sets(tokenizer, texts, [8], sort_by_length=False, max_length=6)
    assert cut.batches[0]["input_ids"].shape == (6, 6)  # truncated at the model's limit


def test_rounds_interleave_artifacts_on_identical_batches() -> None:
    workloads = {"1x8": [{"input_ids": np.zeros((1, 8), dtype=np.int64)}],
                 "traffic/2": [{"input_ids": np.ones((2, 5), dtype=np.int64)},
                               {"input_ids": np.ones((1, 3), dtype=np.int64)}]}
    log: list[tuple[str, int]] = []

    def runner(name: str):  # noqa: ANN202
        return lambda inputs: log.append((name, id(inputs)))

    ticks = iter(range(10_000))
    samples = traffic.interleaved({n: runner(n) for n in "abc"}, workloads, rounds=3,
                                  clock=lambda: next(ticks) / 1000)
    assert {n: {k: len(v) for k, v in per.items()} for n, per in samples.items()} == \
        {n: {"1x8": 3, "traffic/2": 3} for n in "abc"}
    assert all(v == pytest.approx(1.0) for per in samples.values() for vs in per.values() for v in vs)  # a tick a pass
    names = [name for name, _ in log]
    # round 1: the 1x8 batch on a, b, c, then both traffic batches on a, b, c; round 2 starts at b, ...
    assert names[:9] == ["a", "b", "c", "a", "a", "b", "b", "c", "c"]
    assert names[9:12] == ["b", "c", "a"] and names[18:21] == ["c", "a", "b"]
    seen: dict[str, list[int]] = {}
    for name, ident in log:
        seen.setdefault(name, []).append(ident)
    assert seen["a"] == seen["b"] == seen["c"]  # every artifact ran the very same batches, in the same order


def test_accuracy_from_the_parity_report() -> None:
    def report(*cosines: float, gated: bool = True) -> dict:
        return {"batches": [{"outputs": [{"min_cosine": c, "gated": gated} for c in cosines]}]}

    assert accuracy(report(1.0, 1 - 1e-12)) == (0.0, 0.0)  # fp32 rounding: all alike
    assert accuracy(report(0.9999, 0.995)) == (1.0, 0.005)
    assert accuracy(report(0.9, gated=False)) == (2.0, 0.0)  # nothing gated: after every known one
    assert accuracy(report(1.0)) < accuracy(report(0.9999)) < accuracy(report(0.99))


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


def _identity_graph(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize(("env", "spinning"), [(None, "0"), ("session.intra_op.allow_spinning=1", "1"),
                                               ("session.x64quantprecision=1", "0")])
def test_onnxruntime_sessions_do_not_spin_idle_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            env: str | None, spinning: str) -> None:
    """Every session the pipeline opens (gate, bench, verify) leaves the cores to the next runtime when its run
    ends: idle spinning off by default (it cost the OpenVINO IR 3x at 1x128 in an interleaved bench), the
    environment's entries on top."""
    from pipeline.stages.onnx_generation import session

    if env is None:
        monkeypatch.delenv("CONVERT_ORT_SESSION_CONFIG", raising=False)
    else:
        monkeypatch.setenv("CONVERT_ORT_SESSION_CONFIG", env)
    opened = session(_identity_graph(tmp_path / "g.onnx"), threads=2)
    options = opened.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == spinning
    if env == "session.x64quantprecision=1":
        assert options.get_session_config_entry("session.x64quantprecision") == "1"
    assert opened.run(None, {"x": np.arange(3, dtype=np.float32)})[0].tolist() == [0.0, 1.0, 2.0]
