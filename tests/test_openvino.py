"""The openvino target: fp32, int8-weights and static int8 IRs, each gated, each loaded by its real consumers
(optimum-intel's OVModelFor<Task>, plain openvino, ``convert verify`` through the loopback Hub), rebuilt
byte for byte in another process, reused part by part, and refused in one line without the extra."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline import cpu, package, parity
from pipeline.cli import main
from pipeline.stages.openvino import OV_CLASSES, VARIANT_FILES
from tests.coverage import record
from tests.hub_server import HubServer
from tests.test_hub import SENTINEL
from tests.tiny import build_ok, class_promise, make_checkpoint, write_recipe, write_sentence_transformers_files

VARIANTS = ["fp32", "int8-weights", "int8"]
ARTIFACTS = {"openvino": "fp32", "openvino-int8-weights": "int8-weights", "openvino-int8": "int8"}

pytestmark = pytest.mark.cpu_sensitive  # run again as each lower CPU class by `make test` (tests/cpu_passes.py)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict) -> tuple[Path, Path, dict]:
    """A tiny sentence-transformers BERT (mean pooling, Normalize) built with every OpenVINO variant."""
    import shutil

    root = tmp_path_factory.mktemp("openvino")
    checkpoint = root / "checkpoint"
    shutil.copytree(checkpoints[("bert", "feature-extraction")], checkpoint)
    write_sentence_transformers_files(checkpoint)
    recipe = write_recipe(root / "recipe" / "r.yaml", checkpoint, sentence_embedding={},
                          targets={"openvino": {"variants": VARIANTS}},
                          publish={"repo": f"org/ov-{uuid.uuid4().hex[:8]}", "tag": "v1", "private": True})
    data = build_ok(recipe, root / "out")
    return recipe, root / "out", data


def _golden(pkg: Path) -> tuple[dict, dict]:
    return (parity.load_golden(pkg / package.GOLDEN_INPUTS), parity.load_golden(pkg / package.GOLDEN_OUTPUTS))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_every_variant_is_gated_and_optimum_intel_and_openvino_load_it(built: tuple[Path, Path, dict]) -> None:
    import openvino as ov
    import torch
    from optimum.intel import OVModelForFeatureExtraction

    _, _, data = built
    pkg = Path(data["package_dir"])
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    assert set(manifest["artifacts"]) == set(ARTIFACTS)
    assert sorted(p.name for p in (pkg / "openvino").iterdir()) == sorted(
        f for xml in VARIANT_FILES.values() for f in (xml, xml.replace(".xml", ".bin")))  # no openvino_config.json
    report = data["parity"]["artifacts"]
    assert report["openvino"]["gate"]["atol"] == 1e-4 and report["openvino"]["gate"]["batches"] == "all"
    for lossy in ("openvino-int8-weights", "openvino-int8"):  # as the ONNX int8 variant: pooled cosine on the texts
        assert report[lossy]["gate"]["min_pooled_cosine"] == 0.99 and report[lossy]["gate"]["batches"] == "texts"
    for name in ARTIFACTS:
        meta = manifest["artifacts"][name]["metadata"]
        assert report[name]["passed"]
        assert meta["outputs"] == ["last_hidden_state", "sentence_embedding"]
        assert meta["compile"]["INFERENCE_PRECISION_HINT"] == "f32" and meta["compile"]["PERFORMANCE_HINT"] == "LATENCY"
        assert meta["compiled"]["PERFORMANCE_HINT"] == "LATENCY" and "float32" in meta["compiled"][
            "INFERENCE_PRECISION_HINT"]
        assert meta["compiled_on"]["arch"] and "isa" in meta["compiled_on"]
        # gated once per CPU class this machine can emulate; the lossy IRs computed as each class computes them
        classes = manifest["artifacts"][name]["cpu_classes"]
        assert list(classes) == cpu.emulable(), classes
        for cpu_class, entry in classes.items():
            assert entry["metric"] == ("min_cosine" if name == "openvino" else "min_pooled_cosine")
            assert entry["offered"] == entry["passed"] and set(entry["by_batch"]) >= {"texts", "long_text"}
            emulated = name != "openvino" and cpu_class != cpu.current_class()
            assert entry["how"].startswith("ONEDNN_MAX_CPU_ISA=") is emulated, entry["how"]
    assert set(manifest["recommended_by_class"]) == set(cpu.emulable())
    xml = (pkg / "openvino" / VARIANT_FILES["int8"]).read_text()
    assert "FakeQuantize" in xml and "'matmul': 0.8" in xml  # static int8, SmoothQuant alpha 0.8
    assert 'element_type="u8"' in (pkg / "openvino" / VARIANT_FILES["int8-weights"]).read_text()  # INT8_ASYM

    inputs, outputs = _golden(pkg)
    hints = {"INFERENCE_PRECISION_HINT": "f32"}
    for name, variant in ARTIFACTS.items():
        model = OVModelForFeatureExtraction.from_pretrained(pkg, subfolder="openvino", file_name=VARIANT_FILES[variant],
                                                            ov_config=hints)
        for batch in ("texts", "synthetic_3x24"):
            feed = {k: torch.from_numpy(v) for k, v in inputs[batch].items()}
            got = model(**feed).last_hidden_state.numpy()
            want = outputs[batch]["last_hidden_state"]
            mask = inputs[batch]["attention_mask"].astype(bool)
            if variant == "fp32":
                np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
            elif (promise := class_promise(manifest, name)) is None or promise["offered"]:
                # the lossy variants' gate where the package offers them for this CPU class, mean-pooled as
                # sentence-transformers pools
                pooled = [(x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True) for x in (got, want)]
                assert _cosines(*pooled).min() >= 0.99
            else:  # not offered for this CPU class: the manifest says why
                assert not promise["passed"] and promise["worst"] < 0.99, promise
        record("bert", "sentence-embeddings", name, built=True, parity=True,
               consumer="OVModelForFeatureExtraction" if variant == "fp32"
               else "OVModelForFeatureExtraction (gated in task terms on the recipe's texts)")
    # openvino alone: the shipped golden inputs through the compiled fp32 IR give the pooled embedding
    compiled = ov.Core().compile_model(str(pkg / "openvino" / VARIANT_FILES["fp32"]), "CPU",
                                       {"INFERENCE_NUM_THREADS": 1, **hints})
    result = compiled({i.get_any_name(): inputs["texts"][i.get_any_name()] for i in compiled.inputs})
    np.testing.assert_allclose(result["sentence_embedding"], outputs["texts"]["sentence_embedding"], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(result["sentence_embedding"], axis=-1), 1.0, atol=1e-5)
    record("bert", "sentence-embeddings", "openvino", built=True, parity=True,
           consumer="openvino.Core().compile_model (sentence_embedding output)")
    card = (pkg / package.CARD).read_text()
    assert "### OpenVINO files and CPUs" in card and 'subfolder="openvino"' in card and "VNNI" in card


def test_convert_verify_reruns_every_openvino_artifact_from_the_hub(built: tuple[Path, Path, dict], hub: HubServer,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    recipe, out, _ = built
    pushed = CliRunner().invoke(main, ["push", str(recipe), "--out", str(out), "--json"])
    assert pushed.exit_code == 0, pushed.output
    repo = json.loads(pushed.stdout)["repo_id"]
    ok = CliRunner().invoke(main, ["verify", f"{repo}@v1"])
    assert ok.exit_code == 0, ok.output
    reproduced = ok.stdout.split("golden outputs reproduced by ", 1)[1].split(")", 1)[0]
    assert set(reproduced.split(", ")) == set(ARTIFACTS), ok.stdout
    for name in ARTIFACTS:
        record("bert", "sentence-embeddings", name, built=True, parity=True, consumer="convert verify (pushed package)")
    # the weights the runner reads are hashed like every file: a flipped byte fails verification, nothing runs
    weights = bytearray(hub.state.files(repo)["openvino/openvino_model.bin"])
    weights[-3] ^= 0xFF
    hub.state.tamper(repo, "openvino/openvino_model.bin", bytes(weights))
    bad = CliRunner().invoke(main, ["verify", repo])
    assert bad.exit_code == 1 and "openvino/openvino_model.bin: sha256 differs from the manifest" in bad.stderr


@pytest.mark.parametrize("task", ["text-classification", "token-classification", "question-answering", "fill-mask"])
def test_each_encoder_task_loads_with_its_ovmodel_class(tmp_path: Path, checkpoints: dict, task: str) -> None:
    import torch
    from optimum import intel

    checkpoint = checkpoints.get(("bert", task)) or make_checkpoint(tmp_path / "checkpoint", "bert", task)
    recipe = write_recipe(tmp_path / "r.yaml", checkpoint, task=task, targets={"openvino": {}})
    pkg = Path(build_ok(recipe, tmp_path / "out")["package_dir"])
    inputs, outputs = _golden(pkg)
    model = getattr(intel, OV_CLASSES[task]).from_pretrained(pkg, subfolder="openvino", file_name=VARIANT_FILES["fp32"],
                                                              ov_config={"INFERENCE_PRECISION_HINT": "f32"})
    for batch in inputs:
        got = model(**{k: torch.from_numpy(v) for k, v in inputs[batch].items()})
        for name, want in outputs[batch].items():
            np.testing.assert_allclose(getattr(got, name).numpy(), want, atol=1e-4, rtol=1e-4)
    record("bert", task, "openvino", built=True, parity=True, consumer=OV_CLASSES[task])


def test_a_rebuild_in_another_process_is_byte_identical_and_says_nothing_local(
        built: tuple[Path, Path, dict], tmp_path: Path) -> None:
    """Another process, string hash seed, output folder and HOME: the same bytes, no local path in any file,
    and nothing written to HOME (openvino-telemetry's client id) or sent."""
    import openvino as ov

    recipe, out, _ = built
    # in this process, after more OpenVINO nodes were made (its name counter moved): the same bytes too
    for _ in range(3):
        ov.Core().read_model(str(out / "tiny" / "package" / "openvino" / VARIANT_FILES["fp32"]))
    build_ok(recipe, tmp_path / "o1", "--force")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PYTHONHASHSEED": "2027", "HOME": str(home)}
    env.pop("CI", None)
    second = subprocess.run([sys.executable, "-m", "pipeline.cli", "build", str(recipe), "--out", str(tmp_path / "o2")],
                            capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0, second.stderr
    one, two, three = (json.loads((o / "tiny" / "package" / package.MANIFEST).read_text())
                       for o in (out, tmp_path / "o1", tmp_path / "o2"))
    assert one["files"] == two["files"] == three["files"]
    assert not (home / "intel").exists()  # no ~/intel/openvino_ga_cid, no consent file
    local = [str(Path(__file__).resolve().parent.parent), sys.prefix, str(out.parent), str(tmp_path)]
    for path in (tmp_path / "o2" / "tiny" / "package" / "openvino").iterdir():
        blob = path.read_bytes()
        assert not any(place.encode() in blob for place in local), path


def test_an_int8_setting_requantizes_int8_only_and_new_texts_recalibrate(tmp_path: Path, checkpoints: dict) -> None:
    checkpoint = checkpoints[("bert", "feature-extraction")]
    texts = ["a man is eating food.", "hi", "the girl is carrying a baby on a plane at dawn"]
    targets = {"openvino": {"variants": ["fp32", "int8"], "int8": {"smooth_quant_alpha": 0.8}}}
    recipe = write_recipe(tmp_path / "r.yaml", checkpoint, targets=targets,
                          validation={"texts": texts, "shapes": [[1, 5]]})
    out = tmp_path / "out"
    build_ok(recipe, out)
    int8 = out / "tiny" / "stages" / "openvino" / VARIANT_FILES["int8"]
    before = int8.read_bytes()
    assert build_ok(recipe, out)["reused"][:2] == ["golden", "openvino"]  # unchanged: the stage is reused whole
    targets["openvino"]["int8"]["smooth_quant_alpha"] = 0.5
    write_recipe(recipe, checkpoint, targets=targets, validation={"texts": texts, "shapes": [[1, 5]]})
    stage = build_ok(recipe, out)["stages"][0]
    assert stage["status"] == "built" and stage["reused_parts"] == ["fp32"] and int8.read_bytes() != before
    (tmp_path / "calibration.txt").write_text("a plane is taking off over the city\n\nthe passengers are asleep\n")
    targets["openvino"]["int8"]["calibration_file"] = "calibration.txt"
    write_recipe(recipe, checkpoint, targets=targets, validation={"texts": texts, "shapes": [[1, 5]]})
    stage = build_ok(recipe, out)["stages"][0]
    assert stage["status"] == "built" and stage["reused_parts"] == ["fp32"]
    (tmp_path / "calibration.txt").write_text("a man is eating food\n")  # the file's texts are in the fingerprint
    assert build_ok(recipe, out)["stages"][0]["reused_parts"] == ["fp32"]


@pytest.mark.parametrize("command", ["validate", "build"])
def test_without_the_extra_a_recipe_asking_for_openvino_is_refused_in_one_line(
        tmp_path: Path, checkpoints: dict, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: importing it raises ImportError
    monkeypatch.setitem(sys.modules, "nncf", None)
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          targets={"onnx": {"opset": 17}, "openvino": {"variants": ["fp32", "int8"]}})
    args = [command, str(recipe)] + (["--out", str(tmp_path / "out")] if command == "build" else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith(f"error: {recipe}:9:5: targets.openvino: needs the optional extra 'openvino' "
                               "(openvino, nncf not installed): pip install 'pipeline-convert[openvino]'"), lines[0]
    assert not (tmp_path / "out" / "tiny" / "stages").exists()  # refused before anything was loaded or built


def test_a_calibration_file_outside_the_recipe_folder_is_refused(tmp_path: Path, checkpoints: dict) -> None:
    (tmp_path / "texts.txt").write_text("a man is eating food\n")
    recipe = write_recipe(tmp_path / "recipe" / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          targets={"openvino": {"variants": ["int8"], "int8": {"calibration_file": "../texts.txt"}}})
    result = CliRunner().invoke(main, ["validate", str(recipe)])
    assert result.exit_code == 2, result.output
    assert "targets.openvino.int8.calibration_file: '../texts.txt' leaves its folder" in result.stderr


def test_verify_refuses_a_manifest_whose_openvino_weights_lie_outside_the_artifact(
        built: tuple[Path, Path, dict]) -> None:
    """The .bin a runner opens (metadata ``weights``) is checked like ``file``: inside the repo and listed
    (so hashed) by its own artifact, before anything runs."""
    from pipeline import manifest_schema

    pkg = Path(built[2]["package_dir"])
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    manifest_schema.manifest(manifest)  # as shipped: accepted
    for weights, says in (("../../../x.bin", "artifacts.openvino.metadata.weights '../../../x.bin' leaves"),
                          ("openvino_model_int8_weights.bin", "a file the artifact does not list")):
        manifest["artifacts"]["openvino"]["metadata"]["weights"] = weights
        with pytest.raises(manifest_schema.RepoProblem, match=re.escape(says)):
            manifest_schema.manifest(manifest)
