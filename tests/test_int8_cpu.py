"""int8 files per instruction set, each gated with the numbers its CPU computes, and the CPU record.

Nothing here depends on the machine's own instruction set: the numerics tests pin onnxruntime's
kernel path (exact U8U8 through ``session.x64quantprecision=1``) or use graphs that are exact on
every CPU, and the CPU record is tested on given /proc/cpuinfo flags.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import cpu, package
from pipeline.build import _artifacts
from pipeline.stages import get_stage
from pipeline.stages.onnx import EXACT_INT8_SESSION, ort_runner
from tests.tiny import build_ok, write_recipe

AVX2 = {"avx2", "fma", "sse4_2"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl"}

pytestmark = pytest.mark.cpu_sensitive  # run again as each lower CPU class by `make test` (tests/cpu_passes.py)


@pytest.mark.parametrize("machine,flags,isa,preset,exact", [
    ("x86_64", AVX2, ["avx2", "fma"], "avx2", False),
    ("x86_64", AVX512, ["avx2", "fma", "avx512f", "avx512bw"], "avx512", False),
    ("x86_64", AVX512 | {"avx512_vnni"}, ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"], "avx512_vnni", True),
    ("x86_64", AVX2 | {"avx_vnni"}, ["avx2", "fma", "avx_vnni"], "avx512_vnni", True),  # Alder Lake: VNNI, no AVX-512
    ("x86_64", AVX512 | {"avx512_vnni", "amx_tile", "amx_int8"},
     ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_tile", "amx_int8"], "avx512_vnni", True),
    ("aarch64", {"fp", "asimd", "asimddp", "i8mm"}, ["asimd", "dotprod", "i8mm"], "arm64", True),
    ("riscv64", {"rv64imafdc"}, [], None, False),
])
def test_the_cpu_record_names_the_instruction_set_and_its_int8_preset(machine: str, flags: set[str], isa: list[str],
                                                                      preset: str | None, exact: bool) -> None:
    record = cpu.describe_flags(machine, flags, "Some CPU")
    assert (record["isa"], record["int8_preset"], record["exact_u8s8"]) == (isa, preset, exact)
    assert "model" not in cpu.numerics_record(record)  # machines of one kind share the numerics record
    assert cpu.summary(record).endswith("U8S8 exact" if exact else "U8S8 may saturate (no VNNI)")


def test_this_machine_is_described() -> None:
    record = cpu.current()
    assert record["arch"] in ("x86_64", "arm64") and record["int8_preset"] is not None


def _weight_types(graph_path: Path) -> set[int]:
    import onnx

    graph = onnx.load(str(graph_path)).graph
    inits = {i.name: i for i in graph.initializer}
    return {inits[n.input[1]].data_type for n in graph.node if n.op_type == "MatMulInteger" and n.input[1] in inits}


def test_per_cpu_int8_files_are_named_and_gated_for_their_cpu(tmp_path: Path, checkpoints: dict) -> None:
    import onnx

    variants = ["fp32", "int8", "int8-arm64", "int8-avx2", "int8-avx512", "int8-avx512_vnni"]
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          targets={"onnx": {"opset": 17, "variants": variants}})
    data = build_ok(recipe, tmp_path / "out")
    pkg = Path(data["package_dir"])
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    files = {"onnx-int8": ("model_quantized.onnx", onnx.TensorProto.INT8),  # 7-bit: the same on every CPU
             "onnx-int8-arm64": ("model_qint8_arm64.onnx", onnx.TensorProto.INT8),
             "onnx-int8-avx2": ("model_quint8_avx2.onnx", onnx.TensorProto.UINT8),
             "onnx-int8-avx512": ("model_qint8_avx512.onnx", onnx.TensorProto.INT8),
             "onnx-int8-avx512_vnni": ("model_qint8_avx512_vnni.onnx", onnx.TensorProto.INT8)}
    for name, (file, weight_type) in files.items():  # sentence-transformers' names, each its own artifact
        assert manifest["artifacts"][name]["files"] == [f"onnx/{file}"]
        assert _weight_types(pkg / "onnx" / file) == {weight_type}, name
        report = data["parity"]["artifacts"][name]
        assert report["passed"] and report["gate"]["min_pooled_cosine"] == 0.99
        numerics = manifest["artifacts"][name]["metadata"]["numerics"]
        exact_everywhere = name in ("onnx-int8", "onnx-int8-avx2", "onnx-int8-avx512")
        assert numerics["reduce_range"] is (name in ("onnx-int8", "onnx-int8-avx512"))
        assert (numerics["exact_on"] == "every CPU") is exact_everywhere, name
        # a file whose exactness needs VNNI or ARM64 is gated with the numbers such a CPU computes, and says so
        assert ("session.x64quantprecision=1" in report["compared"]) is not exact_everywhere, name
        assert ("session_config" in numerics) is not exact_everywhere
        # per CPU class: the same figures on every class (computed as today), offered where U8S8 cannot saturate
        classes = manifest["artifacts"][name]["cpu_classes"]
        assert list(classes) == cpu.emulable()
        for cpu_class, entry in classes.items():
            assert entry["passed"] and entry["worst"] == classes[cpu.current_class()]["worst"]
            assert entry["offered"] is (exact_everywhere or cpu.CLASSES[cpu_class].exact_u8s8), (name, cpu_class)
    assert manifest["gated_on"] == cpu.numerics_record()
    card = (pkg / "README.md").read_text()
    assert f"Gated on: {cpu.summary(cpu.numerics_record())}." in card
    assert "### int8 files and CPUs" in card
    assert "| `onnx-int8-avx512_vnni` | `onnx/model_qint8_avx512_vnni.onnx` | qint8 | x86-64 with AVX-512 VNNI" in card


def test_int8_numerics_are_pinned_not_left_to_the_machine(tmp_path: Path, checkpoints: dict) -> None:
    """U8U8 (QUInt8 weights) and 7-bit QInt8 weights compute the same numbers on every CPU: the
    build CPU's native kernels equal onnxruntime's exact path bit for bit. A full-range QInt8 graph
    (VNNI/ARM64 file) is run by its artifact runner with exact arithmetic whatever this CPU has
    (natively where U8S8 is exact, through the U8U8 path elsewhere: the same bits)."""
    import onnx

    variants = ["fp32", "int8", "int8-avx2", "int8-avx512", "int8-avx512_vnni"]
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          targets={"onnx": {"opset": 17, "variants": variants}})
    onnx_dir = Path(build_ok(recipe, tmp_path / "out")["package_dir"]) / "onnx"
    rng = np.random.default_rng(3)
    feed = {"input_ids": rng.integers(5, 90, size=(3, 21)), "attention_mask": np.ones((3, 21), dtype=np.int64),
            "token_type_ids": np.zeros((3, 21), dtype=np.int64)}
    for file in ("model_quantized.onnx", "model_quint8_avx2.onnx", "model_qint8_avx512.onnx"):
        native = ort_runner(onnx_dir / file)(feed)
        exact = ort_runner(onnx_dir / file, session_config=EXACT_INT8_SESSION)(feed)
        for key in native:
            assert np.array_equal(native[key], exact[key]), (file, key)
    for file in ("model_quantized.onnx", "model_qint8_avx512.onnx"):
        graph = onnx.load(str(onnx_dir / file)).graph
        weights = [onnx.numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
        # 7-bit weights: a VPMADDUBSW pair sum stays within int16 (255 * 64 * 2 = 32640 < 32767)
        assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64, file

    record = json.loads((tmp_path / "out" / "tiny" / "stages" / "onnx" / "stage.json").read_text())
    vnni = next(a for a in _artifacts(record) if a.name == "onnx-int8-avx512_vnni")
    runner = get_stage("onnx").runner(tmp_path / "out" / "tiny" / "stages" / "onnx", vnni)
    exact = ort_runner(onnx_dir / "model_qint8_avx512_vnni.onnx", session_config=EXACT_INT8_SESSION)(feed)
    for key, value in runner(feed).items():
        assert np.array_equal(value, exact[key]), key
