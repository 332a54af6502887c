"""A large graph's weights leave torch's ONNX exporter as external data (pipeline/stages/onnx_weights.py):
the same graph, with the same initializers, only stored beside it; reproducible; built, gated and varied
like any ONNX graph. The BERT-large-sized figure it exists for is benchmarks/scale.py's (README, "Scale")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.stages import onnx_common
from pipeline.stages.onnx_weights import WEIGHTS_INFIX, weights_outside
from tests.tiny import build_ok, write_recipe


def _export(checkpoint: Path, out: Path, min_bytes: int | None) -> list[Path]:
    from optimum.exporters.onnx import onnx_export_from_model
    from transformers import AutoModel

    model = AutoModel.from_pretrained(checkpoint).eval()
    if min_bytes is None:
        onnx_export_from_model(model, output=out, opset=17, task="feature-extraction", do_validation=False)
        return []
    with weights_outside(min_bytes) as written:
        onnx_export_from_model(model, output=out, opset=17, task="feature-extraction", do_validation=False)
    return written


def _storage_cleared(model):  # type: ignore[no-untyped-def]
    """``model`` (its external data loaded) with every tensor's storage markers removed."""
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        tensor.ClearField("data_location")
        del tensor.external_data[:]
    return model


def test_the_weights_leave_as_external_data_and_the_graph_is_the_same(tmp_path: Path, checkpoints: dict) -> None:
    import onnx

    checkpoint = checkpoints[("bert", "feature-extraction")]
    _export(checkpoint, tmp_path / "inline", None)
    written = _export(checkpoint, tmp_path / "outside", 0)
    assert written == [tmp_path / "outside" / "model.onnx"]  # torch's encoder got the graph without its weights
    files = sorted(p.name for p in (tmp_path / "outside").glob("model.onnx*"))
    assert files == ["model.onnx", "model.onnx_data"]  # optimum gathered them and deleted the per-weight files
    assert not list((tmp_path / "outside").glob(f"*{WEIGHTS_INFIX}*"))
    graph = onnx.load(str(tmp_path / "outside" / "model.onnx"), load_external_data=False).graph
    assert graph.initializer and all(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer)
    inline = onnx.load(str(tmp_path / "inline" / "model.onnx"))
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in inline.graph.initializer)
    outside = onnx.load(str(tmp_path / "outside" / "model.onnx"))  # its external data loaded
    # the same nodes, inputs, initializers (names, order, types, bytes): only where the bytes live differs
    assert _storage_cleared(outside).SerializeToString() == _storage_cleared(inline).SerializeToString()


def test_below_the_size_the_export_is_untouched_and_above_it_reproducible(tmp_path: Path, checkpoints: dict) -> None:
    checkpoint = checkpoints[("bert", "feature-extraction")]
    _export(checkpoint, tmp_path / "inline", None)
    assert _export(checkpoint, tmp_path / "below", 2**40) == []
    assert (tmp_path / "below" / "model.onnx").read_bytes() == (tmp_path / "inline" / "model.onnx").read_bytes()
    for run in ("a", "b"):
        _export(checkpoint, tmp_path / run, 0)
    for name in ("model.onnx", "model.onnx_data"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_build_over_the_size_gates_and_varies_the_external_data_graph(tmp_path: Path, checkpoints: dict,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          targets={"onnx": {"opset": 17, "variants": ["fp32", "optimized", "int8"]}})
    inline = Path(build_ok(recipe, tmp_path / "inline")["package_dir"])
    monkeypatch.setattr(onnx_common, "EXTERNAL_WEIGHTS_BYTES", 0)  # a tiny model stands in for a 1 GiB one
    data = build_ok(recipe, tmp_path / "out")
    report = data["parity"]["artifacts"]
    assert all(report[name]["passed"] for name in ("onnx", "onnx-optimized", "onnx-int8"))
    pkg = Path(data["package_dir"])
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["artifacts"]["onnx"]["files"] == ["onnx/model.onnx", "onnx/model.onnx_data"]
    assert manifest["artifacts"]["onnx-int8"]["files"] == ["onnx/model_quantized.onnx"]
    # the variants are made from the graph with its weights inside: the same bytes as from a one-file export
    for file in ("model_optimized.onnx", "model_quantized.onnx"):
        assert (pkg / "onnx" / file).read_bytes() == (inline / "onnx" / file).read_bytes(), file
