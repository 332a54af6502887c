"""CPU classes: the same file computed as another CPU class (ONEDNN_MAX_CPU_ISA in a child process), a file
offered only for the classes whose gate it passes, the long-text golden batches, and a recipe class the
machine cannot emulate refused in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline import batches, cpu, package, parity, regate
from pipeline.cli import main
from pipeline.gate import Gate, lossy_gate
from pipeline.stages import Artifact, ClassNumerics, get_stage, register_stage, unregister_stage
from pipeline.stages.openvino import OpenVinoExport
from tests.tiny import build_ok, write_recipe, write_sentence_transformers_files

pytestmark = pytest.mark.cpu_sensitive  # run again as each lower CPU class by `make test` (tests/cpu_passes.py)

VNNI = cpu.describe_flags("x86_64", {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}, "a VNNI CPU")
TEXTS = ["a man is eating food.", "hi", "the girl is carrying a baby on a plane at dawn"]  # write_recipe's
AVX2 = cpu.describe_flags("x86_64", {"avx2", "fma"}, "an AVX2-only CPU")

# computes one OpenVINO IR's outputs on the golden inputs and saves them (run in a child with ONEDNN_MAX_CPU_ISA)
RUN_IR = """
import sys, numpy as np
from pathlib import Path
from pipeline import parity
from pipeline.stages import Artifact, get_stage
stage_dir, file, golden, out = sys.argv[1:5]
artifact = Artifact("a", (file, file[:-4] + ".bin"), {"file": file, "weights": file[:-4] + ".bin"})
run = get_stage("openvino").runner(Path(stage_dir), artifact, threads=1)
inputs = parity.load_golden(Path(golden))
np.savez(out, **{name: run(feed)["last_hidden_state"] for name, feed in inputs.items()})
"""


def _outputs(stage_dir: Path, file: str, golden: Path, out: Path, isa: str | None) -> dict[str, np.ndarray]:
    """The IR's outputs on every golden batch, computed in a fresh process (with ``ONEDNN_MAX_CPU_ISA=isa``; without,
    as this process computes: its environment may cap it, as `make test`'s emulated pass does)."""
    import os

    env = {**os.environ, **({"ONEDNN_MAX_CPU_ISA": isa} if isa else {})}
    subprocess.run([sys.executable, "-c", RUN_IR, str(stage_dir), file, str(golden), str(out)], env=env, check=True)
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def ov_int8(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict) -> tuple[Path, dict]:
    """A tiny sentence-transformers BERT with OpenVINO fp32 and static int8 IRs, built for this machine's classes."""
    root = tmp_path_factory.mktemp("cpu-classes")
    checkpoint = root / "checkpoint"
    shutil.copytree(checkpoints[("bert", "feature-extraction")], checkpoint)
    write_sentence_transformers_files(checkpoint)
    recipe = write_recipe(root / "r.yaml", checkpoint, sentence_embedding={},
                          targets={"openvino": {"variants": ["fp32", "int8"]}})
    return root / "out" / "tiny", build_ok(recipe, root / "out")


def test_onednn_max_cpu_isa_in_a_child_process_changes_the_int8_numbers(ov_int8: tuple[Path, dict],
                                                                         tmp_path: Path) -> None:
    """The emulation itself: the same int8 IR compiled in a child process under a lower ISA computes other
    numbers than natively (oneDNN reads ONEDNN_MAX_CPU_ISA when the plugin loads); under the machine's own
    class it computes the same numbers bit for bit."""
    build_dir, _ = ov_int8
    stage_dir, file = build_dir / "stages" / "openvino", "openvino_model_qint8_quantized.xml"
    golden = build_dir / "golden" / package.GOLDEN_INPUTS
    native = _outputs(stage_dir, file, golden, tmp_path / "native.npz", None)
    own = _outputs(stage_dir, file, golden, tmp_path / "own.npz", cpu.CLASSES[cpu.current_class()].onednn_isa)
    assert all(np.array_equal(native[k], own[k]) for k in native)  # ONEDNN_MAX_CPU_ISA at its own class: a no-op
    # AVX (below every class): the kernels change on any AVX2 machine, so the variable reaches oneDNN
    avx = _outputs(stage_dir, file, golden, tmp_path / "avx.npz", "AVX")
    assert any(not np.array_equal(native[k], avx[k]) for k in native)


def test_an_int8_file_computed_as_avx2_on_a_vnni_cpu_gives_other_numbers(minilm_folder: Path, tmp_path: Path) -> None:
    """On a VNNI CPU, ONEDNN_MAX_CPU_ISA=AVX2 runs the static int8 IR with the kernels an AVX2-only CPU gets:
    all-MiniLM-L6-v2's IR computes other numbers there (measured: worst pooled cosine 0.9873 vs 0.9904)."""
    if "avx512_vnni" not in cpu.emulable():
        pytest.skip(f"needs a VNNI CPU to emulate AVX2 on: this one is {cpu.current_class()} ({cpu.summary()}); "
                    "the AVX2 figures themselves are gated natively here")
    recipe = write_recipe(tmp_path / "r.yaml", minilm_folder, name="minilm", sentence_embedding={},
                          targets={"openvino": {"variants": ["int8"]}}, validation={"cpu_classes": ["avx2"]})
    data = build_ok(recipe, tmp_path / "out")
    stage_dir = tmp_path / "out" / "minilm" / "stages" / "openvino"
    golden = tmp_path / "out" / "minilm" / "golden" / package.GOLDEN_INPUTS
    file = "openvino_model_qint8_quantized.xml"
    native = _outputs(stage_dir, file, golden, tmp_path / "native.npz", None)
    avx2 = _outputs(stage_dir, file, golden, tmp_path / "avx2.npz", "AVX2")
    assert any(not np.array_equal(native[k], avx2[k]) for k in native)
    records = data["parity"]["artifacts"]["openvino-int8"]["cpu_classes"]
    assert records["avx2"]["how"].startswith("ONEDNN_MAX_CPU_ISA=AVX2")
    print("openvino-int8 worst pooled cosine: native", data["parity"]["artifacts"]["openvino-int8"]["batches"],
          "avx2", records["avx2"]["by_batch"])


# A stage that stands for OpenVINO on a machine claiming more classes than it has: its "avx2" numbers are
# computed in a child process whose environment perturbs its outputs (PERTURB), so a gate threshold between the
# two figures fails the file on that class alone. (The test above shows oneDNN's ISA reaching a child likewise.)
PERTURB = "CONVERT_TEST_PERTURB_OUTPUTS"
PERTURB_LONG = "CONVERT_TEST_PERTURB_LONG_INPUTS"  # only batches of 64+ tokens: a file that long inputs break


PROBE_ENV = "CONVERT_TEST_PROBE_STAGE"  # set: this module registers the probe when imported (regate's child)


class ProbeStage(OpenVinoExport):
    """OpenVINO's IRs (named as OpenVINO names them), worse in a child process with PERTURB set."""

    def gate_for(self, artifact: str, task: str) -> Gate:
        return lossy_gate(task) if artifact == "openvino-int8" else self.default_gate

    def class_numerics(self, artifact: Artifact, cpu_class: str) -> ClassNumerics:
        if artifact.metadata.get("variant") == "int8" and cpu_class == "avx2":
            return ClassNumerics(how="perturbed in a child process", env={PERTURB: "0.05"})
        return ClassNumerics(how="natively")

    def runner(self, stage_dir: Path, artifact: Artifact, threads: int | None = None) -> Any:
        import os

        run, scale = super().runner(stage_dir, artifact, threads), float(os.environ.get(PERTURB, "0"))
        scale_long = float(os.environ.get(PERTURB_LONG, "0"))

        def perturbed(feed: dict) -> dict:
            out = run(feed)
            scale_ = scale_long if feed["input_ids"].shape[1] >= 64 else scale
            rng = np.random.default_rng(0)
            return {k: v + scale_ * np.abs(v).mean() * rng.standard_normal(v.shape).astype(v.dtype)
                    for k, v in out.items()}

        return perturbed


if os.environ.get(PROBE_ENV):  # in the child process that re-gates the probe's files (pipeline/regate.py)
    register_stage("openvino_probe")(ProbeStage)


@pytest.fixture
def probe_stage(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The probe, registered for one test only: other modules' tests see the stages the package ships."""
    monkeypatch.setenv(PROBE_ENV, "1")
    register_stage("openvino_probe")(ProbeStage)
    yield ProbeStage
    unregister_stage("openvino_probe")


def _probe_recipe(root: Path, checkpoint: Path, gate: float | None, bench: bool = False) -> Path:
    gates = {"openvino-int8": {"min_pooled_cosine": gate}} if gate is not None else {}
    extra: dict[str, Any] = {"bench": {"shapes": [[1, 16]], "runs": 2, "warmup": 0, "on_build": True,
                                       "traffic_batches": []}} if bench else {}
    return write_recipe(root / "r.yaml", checkpoint, sentence_embedding={}, **extra,
                        targets={"openvino_probe": {"variants": ["fp32", "int8"]}},
                        validation={"cpu_classes": ["avx2", "avx512", "avx512_vnni"], "gates": gates,
                                    "texts": ["a man is eating food.", "hi", "the girl is carrying a baby"],
                                    "shapes": [[3, 24]]})


def test_a_file_failing_only_as_avx2_is_not_offered_there(probe_stage: Any, tmp_path: Path, checkpoints: dict,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "current", lambda: VNNI)  # the classes this machine would emulate with VNNI
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)  # uncapped (make test's emulated pass caps it)
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(checkpoints[("bert", "feature-extraction")], checkpoint)
    write_sentence_transformers_files(checkpoint)
    first = build_ok(_probe_recipe(tmp_path / "a", checkpoint, None), tmp_path / "a" / "out")
    records = first["parity"]["artifacts"]["openvino-int8"]["cpu_classes"]
    avx2, native = records["avx2"]["worst"], records["avx512_vnni"]["worst"]
    assert avx2 < native and records["avx512"]["worst"] == native  # computed otherwise in the child
    threshold = (avx2 + native) / 2
    assert avx2 < threshold < native

    data = build_ok(_probe_recipe(tmp_path / "b", checkpoint, threshold, bench=True), tmp_path / "b" / "out")
    pkg = Path(data["package_dir"])
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    int8 = manifest["artifacts"]["openvino-int8"]["cpu_classes"]
    assert (int8["avx2"]["offered"], int8["avx512"]["offered"], int8["avx512_vnni"]["offered"]) == (False, True, True)
    assert not int8["avx2"]["passed"] and any("pooled-embedding cosine" in f for f in int8["avx2"]["failures"])
    assert all(r["offered"] for r in manifest["artifacts"]["openvino"]["cpu_classes"].values())
    by_class = manifest["recommended_by_class"]
    assert set(by_class) == {"avx2", "avx512", "avx512_vnni"}
    assert by_class["avx2"] == "openvino"  # the only file offered there
    assert by_class["avx512"] in ("openvino", "openvino-int8")
    card = (pkg / package.CARD).read_text()
    assert "## Which file suits which CPU" in card
    row = next(line for line in card.splitlines() if line.startswith("| `openvino-int8` | **no**"))
    assert f"pooled cosine {avx2:.4f}" in row and row.count("yes: pooled cosine") == 2
    assert "`avx2`: `openvino`" in card
    parity_json = json.loads((pkg / package.PARITY).read_text())
    assert parity_json["artifacts"]["openvino-int8"]["cpu_classes"]["avx2"]["worst"] == avx2


def test_lossy_gates_see_long_texts_at_max_seq_length(ov_int8: tuple[Path, dict], checkpoints: dict) -> None:
    """The golden batches end with long texts at max_seq_length, truncated as the tokenizer truncates, and a
    long text batched with short ones; a lossy gate gates them, the fp32 one reports them."""
    from transformers import AutoTokenizer

    build_dir, data = ov_int8
    golden = {g["batch"]: g for g in data["parity"]["golden"]}
    record = json.loads((build_dir / "package" / package.MANIFEST).read_text())["sentence_transformers"]
    length = record["max_seq_length"] or parity.long_length(None)
    tokenizer = AutoTokenizer.from_pretrained(checkpoints[("bert", "feature-extraction")])
    length = min(length, tokenizer.model_max_length)
    assert golden["long_text"]["shape"] == [batches.LONG_ROWS, length] and golden["long_text"]["padded_tokens"] == 0
    assert golden["long_with_short"]["shape"][1] == length and golden["long_with_short"]["padded_tokens"] > 0
    assert len(tokenizer(batches.long_text())["input_ids"]) > 1300  # far past any max_seq_length
    inputs = parity.load_golden(build_dir / "golden" / package.GOLDEN_INPUTS)
    want = tokenizer([batches.long_text()], truncation=True, max_length=length, return_tensors="np")["input_ids"]
    assert np.array_equal(inputs["long_text"]["input_ids"][:1], want)
    reports = data["parity"]["artifacts"]
    for name, gated in (("openvino-int8", True), ("openvino", False)):
        rows = [o for b in reports[name]["batches"] if b["batch"] in batches.LONG_BATCHES for o in b["outputs"]]
        assert rows and all(o["gated"] is gated for o in rows)


def test_a_file_that_long_texts_push_under_its_gate_does_not_pass(probe_stage: Any, tmp_path: Path,
                                                                   checkpoints: dict,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A lossy file right on the recipe's short texts and wrong on long inputs (the probe perturbs batches of
    64+ tokens) fails its gate at the long-text batches; the synthetic batches would not have caught it."""
    monkeypatch.setenv(PERTURB_LONG, "0.2")
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(checkpoints[("bert", "feature-extraction")], checkpoint)
    write_sentence_transformers_files(checkpoint)
    recipe = write_recipe(tmp_path / "r.yaml", checkpoint, sentence_embedding={},
                          targets={"openvino_probe": {"variants": ["int8"]}},
                          validation={"texts": TEXTS, "shapes": [[3, 24]]})
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: parity: openvino-int8: ")]
    assert errors and all("(long_text)" in e or "(long_with_short)" in e for e in errors), result.stderr
    assert any("(long_text)" in e and "pooled-embedding cosine" in e for e in errors)
    assert not (tmp_path / "out" / "tiny" / "package").exists()


@pytest.mark.parametrize(("record", "asked", "ok"), [(AVX2, ["avx2"], True), (AVX2, ["avx512_vnni"], False),
                                                    (AVX2, ["avx2", "avx512"], False), (VNNI, ["avx512"], True)])
def test_a_cpu_class_the_machine_cannot_emulate_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            record: dict, asked: list[str], ok: bool) -> None:
    monkeypatch.setattr(cpu, "current", lambda: record)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    recipe = write_recipe(tmp_path / "r.yaml", tmp_path, validation={"cpu_classes": asked})
    result = CliRunner().invoke(main, ["validate", str(recipe)])
    if ok:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith(f"error: {recipe}:") and "validation.cpu_classes" in lines[0]
    assert "cannot compute as a CPU of that class" in lines[0] and "it can emulate avx2" in lines[0]


def test_the_classes_are_data_and_a_machine_emulates_only_those_at_or_below_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert list(cpu.CLASSES) == ["avx2", "avx512", "avx512_vnni"]
    assert cpu.emulable(VNNI) == ["avx2", "avx512", "avx512_vnni"] and cpu.emulable(AVX2) == ["avx2"]
    assert cpu.emulation_env("avx2", VNNI) == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert cpu.emulation_env("avx512", VNNI) == {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    assert cpu.emulation_env("avx512_vnni", VNNI) == {}
    assert cpu.CLASSES["avx2"].ort_session_config == {"session.x64quantprecision": "1"}
    assert cpu.CLASSES["avx512_vnni"].ort_session_config == {}
    avx_vnni = cpu.describe_flags("x86_64", {"avx2", "fma", "avx_vnni"})  # VNNI without AVX-512
    assert cpu.emulable(avx_vnni) == ["avx2", "avx512_vnni"]
    assert cpu.emulable(cpu.describe_flags("arm64", {"asimd"})) == []
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # a process capped at AVX2 (make test's emulated pass)
    assert cpu.current_class(VNNI) == "avx2" and cpu.emulable(VNNI) == ["avx2"]
    assert cpu.emulation_env("avx2", VNNI) == {}


def test_onnxruntime_files_record_per_class_figures(tmp_path: Path, checkpoints: dict) -> None:
    """onnxruntime files are gated as before; each class gets their figures, and a full-range QInt8 file is not
    offered where U8S8 can saturate (no VNNI)."""
    stage = get_stage("onnx")
    full = Artifact("onnx-int8-avx512_vnni", ("m.onnx",), {"numerics": {"session_config": {}, "kernels": "U8S8"}})
    seven = Artifact("onnx-int8", ("m.onnx",), {"numerics": {"kernels": "U8S8, 7-bit weights"}})
    assert stage.class_numerics(full, "avx2").not_for and stage.class_numerics(full, "avx512").not_for
    assert stage.class_numerics(full, "avx512_vnni").not_for is None
    assert all(stage.class_numerics(seven, c).not_for is None and not stage.class_numerics(seven, c).env
               for c in cpu.CLASSES)
    report = parity.ArtifactParity("x", {}, "", [], [])
    assert regate.record(report, parity.Gate(min_pooled_cosine=0.99), stage.class_numerics(full, "avx2"))["offered"] \
        is False


@pytest.mark.parametrize(("flags", "passes"), [
    ({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}, ["avx512", "avx2"]),
    ({"avx2", "fma", "avx512f", "avx512bw"}, ["avx2"]),
    ({"avx2", "fma", "avx_vnni"}, ["avx2"]),  # AVX-VNNI without AVX-512: its AVX-512 class cannot be emulated
    ({"avx2", "fma"}, []),
])
def test_make_test_repeats_the_cpu_sensitive_tests_as_each_lower_class(flags: set[str], passes: list[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import cpu_passes

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert cpu_passes.lower_classes(cpu.describe_flags("x86_64", flags)) == passes
    env = cpu_passes.env_for("avx2")
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2" and env["CONVERT_ORT_SESSION_CONFIG"] == "session.x64quantprecision=1"
