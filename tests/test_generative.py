"""Generation and vision through the ONNX target: GPT-2 and Llama (text-generation-with-past), BART
(text2text-generation-with-past) and ViT (image-classification), each built from a tiny local
checkpoint, gated against eager (prefill logits and greedy decode steps for generation), and run
from the built package by its real optimum consumer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline import package, parity
from pipeline.cli import main
from pipeline.stages import Artifact, Gate, get_stage
from tests.coverage import record
from tests.tiny import write_recipe
from tests.tiny_gen import GENERATIVE, make_generative_checkpoint

TASKS = dict(GENERATIVE)
DECODERS = ("gpt2", "llama")
VIT_VARIANTS = ["fp32", "optimized", "int8", "fp16"]  # single-graph vision: every variant applies


@pytest.fixture(scope="session")
def gen_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{arch: folder}`` for the tiny GPT-2, Llama, BART and ViT, built once."""
    root = tmp_path_factory.mktemp("gen-checkpoints")
    return {arch: make_generative_checkpoint(root / arch, arch) for arch, _ in GENERATIVE}


@pytest.fixture(scope="session")
def gen_builds(tmp_path_factory: pytest.TempPathFactory, gen_checkpoints: dict[str, Path]) -> dict[str, dict]:
    """``{arch: build --json result}``: each tiny model built once with the ONNX target by the CLI
    (and ``gpt2-nocache``: GPT-2 for ``text-generation``, a graph without past key values)."""
    root = tmp_path_factory.mktemp("gen-builds")
    out = {}
    for name, arch, task in [*((a, a, t) for a, t in GENERATIVE), ("gpt2-nocache", "gpt2", "text-generation")]:
        onnx = {"opset": 18, **({"variants": VIT_VARIANTS} if arch == "vit" else {})}
        recipe = write_recipe(root / f"{name}.yaml", gen_checkpoints[arch], name=name, task=task,
                              targets={"onnx": onnx})
        result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(root / "out"), "--json"])
        assert result.exit_code == 0, f"{name}: {result.output}"
        out[name] = json.loads(result.stdout)
    return out


def _package(build: dict) -> Path:
    return Path(build["package_dir"])


def _manifest(build: dict) -> dict[str, Any]:
    return json.loads((_package(build) / package.MANIFEST).read_text())


def _recheck_from_package(build: dict) -> parity.ArtifactParity:
    """What `convert verify` does after the download: the shipped golden inputs through the shipped
    artifact, against the shipped eager outputs, under the artifact's recorded gate."""
    pkg = _package(build)
    manifest = _manifest(build)
    entry = manifest["artifacts"]["onnx"]
    report = json.loads((pkg / package.PARITY).read_text())
    inputs, outputs = parity.load_golden(pkg / package.GOLDEN_INPUTS), parity.load_golden(pkg / package.GOLDEN_OUTPUTS)
    order = [g["batch"] for g in report["golden"]]
    artifact = Artifact(name="onnx", files=tuple(f.split("/", 1)[1] for f in entry["files"]),
                        metadata=entry["metadata"])
    return parity.check_artifact("onnx", get_stage("onnx").runner(pkg / "onnx", artifact),
                                 [parity.GoldenBatch(n, inputs[n]) for n in order], [outputs[n] for n in order],
                                 Gate(**report["artifacts"]["onnx"]["gate"]))


def _left_padded_prompts(folder: Path) -> tuple[Any, Any]:
    import torch  # noqa: F401
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, tok(["a man is eating food.", "hi", "the plane is taking off over the city"], padding=True,
                    return_tensors="pt", return_token_type_ids=False)


@pytest.mark.parametrize("arch", DECODERS)
def test_decoder_is_gated_on_prefill_and_greedy_steps(gen_builds: dict, arch: str) -> None:
    build = gen_builds[arch]
    report = build["parity"]["artifacts"]["onnx"]
    assert report["passed"], report["failures"]
    assert "generated_ids must equal eager generate(do_sample=False)" in report["compared"]
    for batch in report["batches"]:
        outputs = {o["output"]: o for o in batch["outputs"]}
        assert set(outputs) == {"logits", parity.STEP_LOGITS, parity.GENERATED}, batch
        b, s = batch["shape"]
        assert outputs["logits"]["shape"][:2] == [b, s]  # every prompt position at prefill
        assert outputs[parity.STEP_LOGITS]["shape"][:2] == [b, parity.DECODE_STEPS]
        assert outputs[parity.GENERATED]["over_tolerance"] == 0 and outputs[parity.GENERATED]["gated"]
    assert any(b["padded_tokens"] for b in report["batches"])  # left padding exercised
    assert {tuple(b["shape"])[0] for b in report["batches"]} - {parity.EXPORT_SHAPE[0]}
    inputs = parity.load_golden(_package(build) / package.GOLDEN_INPUTS)["texts"]
    assert (inputs["attention_mask"][:, -1] == 1).all() and (inputs["attention_mask"][:, 0] == 0).any()
    outputs = parity.load_golden(_package(build) / package.GOLDEN_OUTPUTS)["texts"]
    assert outputs[parity.GENERATED].shape == (3, parity.DECODE_STEPS)  # shipped, so a download can be re-checked
    assert _manifest(build)["artifacts"]["onnx"]["files"] == ["onnx/model.onnx"]
    card = (_package(build) / package.CARD).read_text()
    assert 'ORTModelForCausalLM.from_pretrained("' in card and "model.generate(" in card
    assert _recheck_from_package(build).passed


@pytest.mark.parametrize("arch", DECODERS)
def test_ort_causal_lm_generate_from_the_package_matches_eager(gen_builds: dict, gen_checkpoints: dict,
                                                               arch: str) -> None:
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoModelForCausalLM

    tok, enc = _left_padded_prompts(_package(gen_builds[arch]))
    model = ORTModelForCausalLM.from_pretrained(_package(gen_builds[arch]), subfolder="onnx")
    eager = AutoModelForCausalLM.from_pretrained(gen_checkpoints[arch]).eval()
    kwargs = {"do_sample": False, "max_new_tokens": 8, "min_new_tokens": 8, "pad_token_id": tok.pad_token_id}
    got = model.generate(**enc, **kwargs)
    with torch.inference_mode():
        want = eager.generate(**enc, **kwargs)
    assert got.shape == (3, enc["input_ids"].shape[1] + 8)
    assert torch.equal(got, want), (got[:, -8:], want[:, -8:])
    assert len(set(want[:, -8:].flatten().tolist())) > 1  # not a degenerate repeat of one token
    record(arch, TASKS[arch], "onnx", built=True, parity=True, consumer="ORTModelForCausalLM.generate")


def test_text_generation_without_cache_recomputes_each_step(gen_builds: dict, gen_checkpoints: dict) -> None:
    import onnx
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoModelForCausalLM

    build = gen_builds["gpt2-nocache"]
    report = build["parity"]["artifacts"]["onnx"]
    assert report["passed"], report["failures"]
    assert all({o["output"] for o in b["outputs"]} == {"logits", parity.STEP_LOGITS, parity.GENERATED}
               for b in report["batches"])
    graph = onnx.load(str(_package(build) / "onnx" / "model.onnx"), load_external_data=False).graph
    assert not [i.name for i in graph.input if i.name.startswith("past_key_values")]
    tok, enc = _left_padded_prompts(_package(build))
    model = ORTModelForCausalLM.from_pretrained(_package(build), subfolder="onnx", use_cache=False)
    eager = AutoModelForCausalLM.from_pretrained(gen_checkpoints["gpt2"]).eval()
    kwargs = {"do_sample": False, "max_new_tokens": 6, "min_new_tokens": 6, "pad_token_id": tok.pad_token_id}
    with torch.inference_mode():
        assert torch.equal(model.generate(**enc, **kwargs), eager.generate(**enc, **kwargs))
    record("gpt2", "text-generation", "onnx", built=True, parity=True,
           consumer="ORTModelForCausalLM.generate (use_cache=False)")


def test_ort_seq2seq_generate_from_the_package_matches_eager(gen_builds: dict, gen_checkpoints: dict) -> None:
    import torch
    from optimum.onnxruntime import ORTModelForSeq2SeqLM
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    build = gen_builds["bart"]
    report = build["parity"]["artifacts"]["onnx"]
    assert report["passed"], report["failures"]
    for batch in report["batches"]:
        outputs = {o["output"]: o for o in batch["outputs"]}
        assert set(outputs) == {"encoder_last_hidden_state", parity.STEP_LOGITS, parity.GENERATED}
    files = sorted(_manifest(build)["artifacts"]["onnx"]["files"])
    assert files == ["onnx/decoder_model_merged.onnx", "onnx/encoder_model.onnx"]  # what ORTModel loads, all gated
    assert _recheck_from_package(build).passed

    pkg = _package(build)
    tok = AutoTokenizer.from_pretrained(pkg)
    enc = tok(["a man is eating food.", "hi"], padding=True, return_tensors="pt")
    model = ORTModelForSeq2SeqLM.from_pretrained(pkg, subfolder="onnx")
    eager = AutoModelForSeq2SeqLM.from_pretrained(gen_checkpoints["bart"]).eval()
    kwargs = {"do_sample": False, "max_new_tokens": 8, "min_new_tokens": 8}
    got = model.generate(**enc, **kwargs)
    with torch.inference_mode():
        want = eager.generate(**enc, **kwargs)
    assert got.shape[1] >= 9 and torch.equal(got, want), (got, want)
    record("bart", TASKS["bart"], "onnx", built=True, parity=True, consumer="ORTModelForSeq2SeqLM.generate")


def test_ort_image_classification_from_the_package_matches_eager(gen_builds: dict) -> None:
    import torch
    from optimum.onnxruntime import ORTModelForImageClassification

    build = gen_builds["vit"]
    report = build["parity"]["artifacts"]["onnx"]
    assert report["passed"], report["failures"]
    shapes = [b["shape"] for b in report["batches"]]
    assert all(len(s) == 4 and s[1:] == [3, 30, 30] for s in shapes) and {s[0] for s in shapes} == {1, 3}
    pkg = _package(build)
    assert (pkg / "preprocessor_config.json").is_file()
    card = (pkg / package.CARD).read_text()
    assert "AutoImageProcessor.from_pretrained(" in card and "ORTModelForImageClassification" in card
    assert _recheck_from_package(build).passed
    model = ORTModelForImageClassification.from_pretrained(pkg, subfolder="onnx")
    inputs = parity.load_golden(pkg / package.GOLDEN_INPUTS)
    outputs = parity.load_golden(pkg / package.GOLDEN_OUTPUTS)
    for name, batch in inputs.items():
        logits = model(pixel_values=torch.from_numpy(batch[parity.PIXELS])).logits.numpy()
        np.testing.assert_allclose(logits, outputs[name]["logits"], atol=1e-4, rtol=1e-4)
    record("vit", TASKS["vit"], "onnx", built=True, parity=True, consumer="ORTModelForImageClassification")
    manifest = _manifest(build)
    for name, file in [("onnx-optimized", "model_optimized.onnx"), ("onnx-int8", "model_quantized.onnx"),
                       ("onnx-fp16", "model_fp16.onnx")]:
        variant = build["parity"]["artifacts"][name]
        assert variant["passed"] and manifest["artifacts"][name]["files"] == [f"onnx/{file}"]
        # no texts batch to gate a lossy variant on: every image batch is gated
        assert all(o["gated"] for b in variant["batches"] for o in b["outputs"])
        assert variant["gate"]["batches"] == "all"
        lossy = name != "onnx-optimized"
        record("vit", TASKS["vit"], name, built=True, parity=True,
               note="gated in task terms (argmax, logits within 0.1) on every image batch" if lossy else None)
    build_dir = Path(build["build_dir"])  # the benchmark harness times token batches: a clear refusal
    result = CliRunner().invoke(main, ["bench", str(build_dir.parent.parent / "vit.yaml"), "--out",
                                       str(build_dir.parent)])
    assert result.exit_code == 2 and "bench: not supported for vit/image-classification" in result.stderr


def test_the_gate_catches_decoding_that_loses_its_context(gen_builds: dict) -> None:
    """A decoder that forgets the prompt after the first token (a lost cache) passes prefill but
    fails on the decode steps; one that returns no tokens fails outright."""
    build = gen_builds["gpt2"]
    pkg = _package(build)
    entry = _manifest(build)["artifacts"]["onnx"]
    artifact = Artifact(name="onnx", files=("model.onnx",), metadata=entry["metadata"])
    good = get_stage("onnx").runner(pkg / "onnx", artifact)

    def lost_cache(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = good(inputs)
        first = out[parity.GENERATED][:, :1]
        rest = good({"input_ids": first, "attention_mask": np.ones_like(first),
                     parity.MAX_NEW_TOKENS: inputs[parity.MAX_NEW_TOKENS] - 1})
        out[parity.STEP_LOGITS][:, 1:] = rest[parity.STEP_LOGITS]
        out[parity.GENERATED][:, 1:] = rest[parity.GENERATED]
        return out

    inputs = parity.load_golden(pkg / package.GOLDEN_INPUTS)
    outputs = parity.load_golden(pkg / package.GOLDEN_OUTPUTS)
    batches = [parity.GoldenBatch(n, inputs[n]) for n in outputs]
    reference = [outputs[n] for n in outputs]
    gate = get_stage("onnx").gate_for("onnx", TASKS["gpt2"])
    bad = parity.check_artifact("bad", lost_cache, batches, reference, gate)
    assert not bad.passed
    assert any("'step_logits'" in f and "differs from eager" in f for f in bad.failures), bad.failures
    assert any("tokens differ from eager greedy generation" in f for f in bad.failures), bad.failures
    assert not any("'logits'" in f for f in bad.failures)  # prefill itself is right
    mute = parity.check_artifact("mute", lambda i: {"logits": good(i)["logits"]}, batches, reference, gate)
    assert all("generates no tokens" in f for f in mute.failures) and len(mute.failures) == len(batches)


def test_variants_are_refused_for_generation_tasks(tmp_path: Path, gen_checkpoints: dict) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", gen_checkpoints["gpt2"], task=TASKS["gpt2"],
                          targets={"onnx": {"opset": 18, "variants": ["fp32", "int8"]}})
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "int8 not supported for gpt2/text-generation-with-past" in lines[0], lines
    assert not (tmp_path / "out" / "tiny" / "package").exists()


def test_a_benchmark_on_build_is_refused_before_loading_for_generation(tmp_path: Path, gen_checkpoints: dict) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", gen_checkpoints["llama"], task=TASKS["llama"],
                          targets={"onnx": {"opset": 18}}, bench={"on_build": True})
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "bench: not supported for llama/text-generation-with-past" in errors[0]
    assert "loading" not in result.stderr and not (tmp_path / "out" / "tiny").exists()


@pytest.mark.parametrize("arch", [a for a, _ in GENERATIVE])
def test_torch_targets_say_not_supported_for_generation_and_vision(tmp_path: Path, gen_checkpoints: dict,
                                                                   arch: str) -> None:
    """Every other registered target, asked for these models, builds nothing and says why in one line
    (exit 2): their gate compares one forward pass, not greedy decoding or pixel inputs."""
    from pipeline.stages import registered_stages

    others = [name for name in registered_stages() if name != "onnx"]
    for target in others:
        recipe = write_recipe(tmp_path / f"{target}.yaml", gen_checkpoints[arch], task=TASKS[arch],
                              targets={target: {}})
        result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")])
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.exit_code == 2, (target, result.output)
        assert len(errors) == 1 and "Traceback" not in result.output, result.output
        assert target in errors[0] and arch in errors[0], errors  # names the target and the model type
        assert not (tmp_path / "out" / "tiny" / "stages" / target).exists()
        record(arch, TASKS[arch], target, built=False, parity=None,
               note="exit 2: " + errors[0].split(": ", 2)[-1].split(";")[0].split(" (supported")[0])


def test_convert_verify_reruns_the_decode_steps_of_a_downloaded_seq2seq_package(
        tmp_path: Path, gen_checkpoints: dict, hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Push a two-graph package to the loopback Hub; `convert verify` downloads it and reproduces the
    shipped greedy decode steps with the downloaded graphs."""
    import uuid

    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 30)
    repo = f"org/tiny-bart-{uuid.uuid4().hex[:8]}"
    recipe = write_recipe(tmp_path / "r.yaml", gen_checkpoints["bart"], task=TASKS["bart"],
                          targets={"onnx": {"opset": 18}}, publish={"repo": repo, "tag": "v1", "private": True})
    out = str(tmp_path / "out")
    assert CliRunner().invoke(main, ["build", str(recipe), "--out", out]).exit_code == 0
    pushed = CliRunner().invoke(main, ["push", str(recipe), "--out", out])
    assert pushed.exit_code == 0, pushed.output
    assert {"onnx/encoder_model.onnx", "onnx/decoder_model_merged.onnx"} <= set(hub.state.files(repo))
    ok = CliRunner().invoke(main, ["verify", f"{repo}@v1"])
    assert ok.exit_code == 0 and "golden outputs reproduced by onnx" in ok.stdout, ok.output
