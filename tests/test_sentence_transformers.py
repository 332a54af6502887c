"""sentence-transformers as the package's consumer: ``SentenceTransformer(package, backend=…)`` loads the
shipped file (no export on the fly), builds the Transformer → Pooling → (Normalize) and ``max_seq_length``
the build recorded, and its ``encode()`` matches eager sentence-transformers on the source checkpoint, on
short texts and on texts longer than ``max_seq_length`` (so truncation must agree). From the package
folder, and from the loopback Hub after a push.

Tiny checkpoints cover both ways a package becomes a sentence-transformers repo: files copied from a
sentence-transformers checkpoint, and files written from the recipe's ``sentence_embedding`` for a plain
one; mean and cls pooling, Normalize on and off. The real all-MiniLM-L6-v2 runs under ``slow``.
One build per model (module-scoped fixtures).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from pipeline import package
from pipeline.cli import main
from tests import coverage
from tests.hub_server import HubServer
from tests.tiny import (
    WORDS,
    build_ok,
    class_promise,
    make_checkpoint,
    make_sentence_transformers_checkpoint,
    write_recipe,
    write_sentence_transformers_files,
)

# (backend, file in the package, target that builds it): torch loads the shipped source weights.
CASES = [
    ("torch", "model.safetensors", None),
    ("onnx", "onnx/model.onnx", "onnx"),
    ("onnx", "onnx/model_quantized.onnx", "onnx"),
    ("openvino", "openvino/openvino_model.xml", "openvino"),
    ("openvino", "openvino/openvino_model_int8_weights.xml", "openvino"),
    ("openvino", "openvino/openvino_model_qint8_quantized.xml", "openvino"),
]
TARGETS: dict[str, dict[str, Any]] = {"onnx": {"opset": 17, "variants": ["fp32", "int8"]},
                                      "openvino": {"variants": ["fp32", "int8-weights", "int8"]}}
FP32_COSINE = 0.9999
TINY_LENGTH = 24  # the tiny models' max_seq_length: shorter than their 128 positions, so truncation shows
SHORT = ["a man is eating food.", "hi", "the girl is carrying a baby on a plane at dawn"]
TINY_LONG = " ".join(WORDS[i % len(WORDS)] for i in range(300))  # ~300 tokens, far over TINY_LENGTH


def _targets() -> dict[str, dict[str, Any]]:
    return {target: TARGETS[target] for _, _, target in CASES if target}


def _case_id(case: tuple[str, str, str | None]) -> str:
    return f"{case[0]}:{case[1]}"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Hub but the loopback one; the folder tests use none (the Hub test lifts this for its loads)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _threshold(pkg: Path, file: str) -> tuple[float, str]:
    """fp32 files: cosine ≥ 0.9999; a lossy file: its artifact's own gate (from the package's parity.json)."""
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    artifact = next((name for name, entry in manifest["artifacts"].items() if file in entry["files"]), None)
    if artifact is None:
        assert file in manifest["source_weights"]["files"]
        return FP32_COSINE, "source weights"
    gate = json.loads((pkg / package.PARITY).read_text())["artifacts"][artifact]["gate"]
    lossy = gate.get("min_pooled_cosine") or gate.get("min_cosine")
    return (lossy, artifact) if lossy else (FP32_COSINE, artifact)


def _load(model: str, backend: str, file: str, caplog: pytest.LogCaptureFixture, **extra: Any) -> Any:
    """``SentenceTransformer(model, backend=…)`` loading ``file``; asserts it logged no export and found
    modules.json."""
    from sentence_transformers import SentenceTransformer

    kwargs = {} if backend == "torch" else {"model_kwargs": {"file_name": file}}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        loaded = SentenceTransformer(model, backend=backend, device="cpu", **kwargs, **extra)
    assert "Exporting" not in caplog.text and "No modules.json" not in caplog.text, caplog.text
    return loaded


def _check(loaded: Any, reference: Any, record: dict[str, Any], texts: list[str], long: str,
           threshold: float) -> np.ndarray:
    """The same modules, pooling and max_seq_length as the recorded ones and the reference's, and
    embeddings within ``threshold`` cosine of the reference's; returns the cosines, ``long``'s last.

    ``texts`` are encoded in one batch, as the gate ran them, and ``long`` on its own: dynamic int8
    quantizes activations with one scale per batch, so a lossy file's error depends on its batch mates
    (all-MiniLM-L6-v2's int8 file: worst 0.9899 with the long text in the texts' batch, under its 0.99 gate)."""
    assert [type(m).__name__ for m in loaded] == record["modules"] == [type(m).__name__ for m in reference]
    assert loaded[1].get_config_dict()["pooling_mode"] == reference[1].get_config_dict()["pooling_mode"]
    assert loaded.max_seq_length == reference.max_seq_length == record["max_seq_length"]
    got = np.concatenate([loaded.encode(texts, batch_size=len(texts)), loaded.encode([long])])
    want = np.concatenate([reference.encode(texts, batch_size=len(texts)), reference.encode([long])])
    cos = _cosines(got, want)
    assert cos.min() >= threshold, (cos, threshold)
    if "Normalize" in record["modules"]:
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    return cos


# --- tiny checkpoints -------------------------------------------------------------------------------------

# (pooling, normalize, how the package gets its sentence-transformers files)
TINY = [("mean", True, "copied"), ("cls", False, "copied"), ("mean", False, "written"), ("cls", True, "written")]


def _tiny_reference(checkpoint: Path, pooling: str, normalize: bool) -> Any:
    """Eager sentence-transformers for the checkpoint: its own files, or (a plain checkpoint) the modules
    the recipe asks for, put together by hand."""
    from sentence_transformers import SentenceTransformer, models

    if (checkpoint / "modules.json").is_file():
        return SentenceTransformer(str(checkpoint), device="cpu")
    transformer = models.Transformer(str(checkpoint), max_seq_length=TINY_LENGTH)
    modules = [transformer, models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode=pooling)]
    return SentenceTransformer(modules=[*modules, *([models.Normalize()] if normalize else [])], device="cpu")


_TINY: dict[tuple[str, bool, str], dict[str, Any]] = {}  # one build per tiny model, shared by the fixtures


def _tiny(param: tuple[str, bool, str], factory: pytest.TempPathFactory) -> dict[str, Any]:
    if param in _TINY:
        return _TINY[param]
    pooling, normalize, how = param
    work = factory.mktemp(f"st-{pooling}-{normalize}-{how}")
    if how == "copied":  # an Apache-2.0 sentence-transformers checkpoint: its weights ship by default
        checkpoint = make_sentence_transformers_checkpoint(work / "checkpoint", pooling, normalize,
                                                           max_seq_length=TINY_LENGTH, license="apache-2.0")
        section: dict[str, Any] = {}
        extra: dict[str, Any] = {}
    else:  # a plain checkpoint without a license: the recipe says how to pool, and to ship the weights
        checkpoint = make_checkpoint(work / "checkpoint", "bert", "feature-extraction")
        section = {"pooling": pooling, "normalize": normalize, "max_seq_length": TINY_LENGTH}
        extra = {"package": {"source_weights": True}}
    repo = f"org/st-{uuid.uuid4().hex[:8]}"
    recipe = write_recipe(work / "recipe.yaml", checkpoint, sentence_embedding=section, targets=_targets(),
                          publish={"repo": repo, "tag": "v1"}, **extra)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        data = build_ok(recipe, work / "out")
    pkg = Path(data["package_dir"])
    _TINY[param] = {"pkg": pkg, "data": data, "recipe": recipe, "out": work / "out", "repo": repo, "how": how,
                    "pooling": pooling,
                    "reference": _tiny_reference(checkpoint, pooling, normalize),
                    "record": json.loads((pkg / package.MANIFEST).read_text())["sentence_transformers"]}
    return _TINY[param]


@pytest.fixture(scope="module", params=TINY, ids=lambda p: f"{p[0]}-{'norm' if p[1] else 'raw'}-{p[2]}")
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _tiny(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory, hub: HubServer) -> dict[str, Any]:
    """The first tiny package (mean pooling, Normalize, files copied), pushed to the loopback Hub at v1."""
    import huggingface_hub.constants

    built = _tiny(TINY[0], tmp_path_factory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_TOKEN", "hf_" + "t" * 34)
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        result = CliRunner().invoke(main, ["push", str(built["recipe"]), "--out", str(built["out"]), "--json"])
    assert result.exit_code == 0, result.output
    assert built["repo"] in hub.state.repos
    return built


def _assert_left_out_for_its_gate(data: dict[str, Any], file: str, target: str) -> None:
    """A package file that is absent is an optional variant whose gate failed on this CPU class: the build's
    report says so (its failures are pooled-cosine ones) and warned."""
    outputs = json.loads((Path(data["build_dir"]) / "stages" / target / "stage.json").read_text())["outputs"]
    artifact = next(name for name, out in outputs.items() if Path(file).name in out["files"])
    report = data["parity"]["artifacts"][artifact]
    assert not report["passed"] and any(w.startswith(f"{artifact}: ") for w in data["warnings"])
    assert all("pooled-embedding cosine" in f and "< 0.99" in f for f in report["failures"]), report["failures"]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_a_tiny_package_loads_in_sentence_transformers_as_built(tiny: dict[str, Any], case: tuple,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    backend, file, target = case
    pkg, record = tiny["pkg"], tiny["record"]
    origin = {"copied": "copied from the checkpoint", "written": "written from sentence_embedding"}[tiny["how"]]
    assert record["origin"] == origin and record["max_seq_length"] == TINY_LENGTH
    assert tiny["reference"][1].get_config_dict()["pooling_mode"] == tiny["pooling"]
    assert file in _files(pkg)
    if not (pkg / file).is_file():
        _assert_left_out_for_its_gate(tiny["data"], file, target)
        return
    before = _files(pkg)
    loaded = _load(str(pkg), backend, file, caplog)
    threshold, _ = _threshold(pkg, file)
    _check(loaded, tiny["reference"], record, SHORT, TINY_LONG, threshold)
    assert _files(pkg) == before  # nothing exported into the package
    if target is not None:
        coverage.record("bert", "feature-extraction", target, built=True, parity=True,
                        consumer=f"sentence-transformers (backend {backend}: fp32 and int8 files)")


def test_the_written_files_are_what_sentence_transformers_reads(tiny: dict[str, Any]) -> None:
    """The package's sentence-transformers files: copied byte for byte, or written from the recipe as
    sentence-transformers' own format; every one listed and hashed in the manifest."""
    pkg, record = tiny["pkg"], tiny["record"]
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    for rel in [*record["files"], *manifest["source_weights"]["files"]]:
        assert rel in manifest["files"], rel
    assert manifest["source_weights"]["shipped"] and manifest["source_weights"]["files"] == ["model.safetensors"]
    checkpoint = tiny["recipe"].parent / "checkpoint"
    assert (pkg / "model.safetensors").read_bytes() == (checkpoint / "model.safetensors").read_bytes()
    if tiny["how"] == "copied":
        for rel in record["files"]:
            assert (pkg / rel).read_bytes() == (checkpoint / rel).read_bytes(), rel
    else:
        modules = json.loads((pkg / "modules.json").read_text())
        assert [m["type"].rsplit(".", 1)[1] for m in modules] == record["modules"]
        assert json.loads((pkg / "sentence_bert_config.json").read_text())["max_seq_length"] == TINY_LENGTH
    card = (pkg / package.CARD).read_text()
    assert "library_name: sentence-transformers" in card and "- sentence-transformers" in card
    for backend, file, _ in CASES:
        line = (f'SentenceTransformer("{tiny["repo"]}", backend="{backend}")' if backend == "torch" else
                f'SentenceTransformer("{tiny["repo"]}", backend="{backend}", model_kwargs={{"file_name": "{file}"}})')
        assert line in card, line


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_a_pushed_tiny_package_loads_from_the_hub(pushed: dict[str, Any], case: tuple, hub: HubServer,
                                                  tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the loopback Hub (HF_ENDPOINT, tests/conftest.py) and nothing else
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert os.environ["HF_ENDPOINT"].startswith("http://127.0.0.1:")
    backend, file, _ = case
    served = len(hub.state.log)
    loaded = _load(pushed["repo"], backend, file, caplog, revision="v1", cache_folder=str(tmp_path / "cache"))
    assert any(path.endswith("/" + file) for _, path, _ in hub.state.log[served:])  # from the loopback Hub
    threshold, _ = _threshold(pushed["pkg"], file)
    _check(loaded, pushed["reference"], pushed["record"], SHORT, TINY_LONG, threshold)


def test_a_module_folder_linked_outside_the_checkpoint_is_refused(tmp_path: Path) -> None:
    checkpoint = make_sentence_transformers_checkpoint(tmp_path / "checkpoint", max_seq_length=TINY_LENGTH)
    outside = tmp_path / "outside"
    shutil.move(str(checkpoint / "1_Pooling"), outside)
    (checkpoint / "1_Pooling").symlink_to(outside, target_is_directory=True)
    recipe = write_recipe(tmp_path / "r.yaml", checkpoint, targets=_targets())
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "1_Pooling" in errors[0] and "outside its folder" in errors[0], result.stderr
    assert not (tmp_path / "out" / "tiny" / "package").exists()


def test_weights_without_a_known_license_are_not_shipped_unless_the_recipe_says_so(tmp_path: Path) -> None:
    checkpoint = make_sentence_transformers_checkpoint(tmp_path / "checkpoint", license="other")
    recipe = write_recipe(tmp_path / "r.yaml", checkpoint, targets={"onnx": {"opset": 17}}, validation={
        "texts": SHORT, "shapes": [[1, 5]]})
    pkg = Path(build_ok(recipe, tmp_path / "out")["package_dir"])
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    assert not (pkg / "model.safetensors").exists()
    assert manifest["source_weights"] == {"shipped": False, "files": [], "reason": (
        "auto: license 'other' is not one known to allow redistribution (set package.source_weights: true if its "
        "terms allow it)")}
    assert 'backend="torch"' not in (pkg / package.CARD).read_text()
    assert manifest["sentence_transformers"]["origin"] == "copied from the checkpoint"  # served all the same


def _fp32_build(tmp_path: Path, checkpoint: Path, **extra: Any) -> tuple[Path, dict[str, Any]]:
    recipe = write_recipe(tmp_path / "r.yaml", checkpoint, targets={"onnx": {"opset": 17}},
                          validation={"texts": SHORT, "shapes": [[1, 5]]}, **extra)
    data = build_ok(recipe, tmp_path / "out")
    pkg = Path(data["package_dir"])
    return pkg, {**json.loads((pkg / package.MANIFEST).read_text()), "warnings": data["warnings"]}


def test_a_pooling_the_recipe_overrides_is_written_from_the_recipe(tmp_path: Path) -> None:
    checkpoint = make_sentence_transformers_checkpoint(tmp_path / "checkpoint", "cls", True, max_seq_length=20)
    pkg, manifest = _fp32_build(tmp_path, checkpoint, sentence_embedding={"pooling": "mean"})
    record = manifest["sentence_transformers"]
    assert record["origin"] == "written from sentence_embedding"  # the package serves what was gated
    assert record["max_seq_length"] == 20  # the checkpoint's, which the recipe left to auto
    pooling = json.loads((pkg / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]


def test_a_checkpoint_with_other_modules_is_packaged_as_before_with_a_note(tmp_path: Path) -> None:
    checkpoint = make_sentence_transformers_checkpoint(tmp_path / "checkpoint")
    write_sentence_transformers_files(checkpoint, extra_modules=("sentence_transformers.models.Dense",))
    pkg, manifest = _fp32_build(tmp_path, checkpoint)
    assert manifest["sentence_transformers"] is None and not (pkg / "modules.json").exists()
    assert any("not packaged as a sentence-transformers repo: modules.json lists sentence_transformers.models.Dense"
               in w for w in manifest["warnings"]), manifest["warnings"]
    assert "library_name: onnx" in (pkg / package.CARD).read_text()


# --- all-MiniLM-L6-v2 ------------------------------------------------------------------------------------

DEMO = Path(__file__).resolve().parent.parent / "recipes" / "all-minilm-l6-v2.yaml"


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory, minilm_folder: Path) -> dict[str, Any]:
    """The demo recipe's source, sentence_embedding and int8 settings, with only the targets CASES load and
    small golden shapes; built once."""
    from sentence_transformers import SentenceTransformer

    work = tmp_path_factory.mktemp("st-minilm")
    demo = yaml.safe_load(DEMO.read_text())
    # the demo's optional variants stay optional: a file whose gate fails on this CPU class is left out
    targets = {name: {**params, **demo["targets"].get(name, {}), "variants": params["variants"],
                      "optional": [v for v in demo["targets"].get(name, {}).get("optional", [])
                                   if v in params["variants"]]}
               for name, params in _targets().items()}
    recipe = write_recipe(work / "recipe.yaml", None, name="all-minilm-l6-v2", source=demo["source"],
                          sentence_embedding=demo["sentence_embedding"], targets=targets,
                          validation={"texts": demo["validation"]["texts"], "shapes": [[1, 7], [2, 40]]})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        data = build_ok(recipe, work / "out")
    pkg = Path(data["package_dir"])
    texts = demo["validation"]["texts"]
    long = " ".join(texts * 5)  # ~1,300 tokens: the text was 1,322
    return {"pkg": pkg, "texts": texts, "long": long, "data": data,
            "reference": SentenceTransformer(str(minilm_folder), device="cpu"),
            "record": json.loads((pkg / package.MANIFEST).read_text())["sentence_transformers"]}


@pytest.mark.slow
@pytest.mark.cpu_sensitive  # run again as each lower CPU class by `make test` (tests/cpu_passes.py)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_all_minilm_l6_v2_package_matches_eager_sentence_transformers(minilm: dict[str, Any], case: tuple,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    backend, file, target = case
    pkg, record = minilm["pkg"], minilm["record"]
    assert record == {"origin": "copied from the checkpoint", "modules": ["Transformer", "Pooling", "Normalize"],
                      "max_seq_length": 256, "files": ["1_Pooling/config.json", "config_sentence_transformers.json",
                                                       "modules.json", "sentence_bert_config.json"]}
    tokens = len(minilm["reference"].tokenizer(minilm["long"])["input_ids"])
    assert tokens > 1300
    if not (pkg / file).is_file():
        _assert_left_out_for_its_gate(minilm["data"], file, target)
        return
    before = _files(pkg)
    loaded = _load(str(pkg), backend, file, caplog)
    threshold, artifact = _threshold(pkg, file)
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    promise = class_promise(manifest, artifact) if artifact in manifest["artifacts"] else None
    if promise is not None and not promise["offered"]:  # not meant for this CPU: the package says so, with why
        assert promise["not_for"] or (not promise["passed"] and promise["worst"] < threshold), promise
        card = (pkg / package.CARD).read_text().splitlines()
        assert any(line.startswith(f"| `{artifact}` |") and "**no**" in line for line in card)  # its class row
        return
    cos = _check(loaded, minilm["reference"], record, minilm["texts"], minilm["long"], threshold)
    assert _files(pkg) == before
    assert cos[-1] >= threshold  # the long text, truncated at 256 tokens like the reference (was 0.798, issue 13)
    if target is not None:
        coverage.record("bert", "feature-extraction", target, built=True, parity=True,
                        consumer=f"sentence-transformers (backend {backend}: fp32 and int8 files)")


@pytest.mark.slow
def test_without_the_sentence_transformers_files_the_long_text_goes_wrong(minilm: dict[str, Any], tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """What the package served before issue 13: no modules.json, so sentence-transformers guesses mean pooling,
    no Normalize and 512 tokens. The test above would catch a package like this."""
    from sentence_transformers import SentenceTransformer

    bare = tmp_path / "bare"
    shutil.copytree(minilm["pkg"], bare)
    for rel in minilm["record"]["files"]:
        (bare / rel).unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        guessed = SentenceTransformer(str(bare), backend="onnx", device="cpu",
                                      model_kwargs={"file_name": "onnx/model.onnx"})
    assert "No modules.json" in caplog.text
    assert guessed.max_seq_length == 512 and [type(m).__name__ for m in guessed] == ["Transformer", "Pooling"]
    cos = _cosines(guessed.encode([minilm["long"]]), minilm["reference"].encode([minilm["long"]]))
    assert cos[0] < 0.9
