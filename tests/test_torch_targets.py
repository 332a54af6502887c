"""The torch targets (torchscript, bettertransformer, torch_export): built from one source load, gated
like ONNX, run by a consumer that has only torch; BetterTransformer takes the nested-tensor fastpath;
a traced shape that was baked in fails the gate; unsupported models are one-line errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline import package
from pipeline.cli import main
from tests.coverage import record
from tests.tiny import build_ok, make_checkpoint, write_recipe

TARGETS = ("torchscript", "bettertransformer", "torch_export")
FOLDERS = {"torchscript": "torchscript/model.pt", "bettertransformer": "bettertransformer/model.pt",
           "torch_export": "torch_export/model.pt2"}
CONSUMERS = {"torchscript": "torch.jit.load (torch only)", "bettertransformer": "torch.jit.load (torch only)",
             "torch_export": "torch.export.load (torch only)"}
# every target on the foundation's tiny models (torchscript and torch_export take any model whole);
# the other layer maps and heads, which are per architecture, with bettertransformer alone
ALL_TARGETS = [("bert", "feature-extraction"), ("bert", "text-classification"), ("roberta", "feature-extraction"),
               ("distilbert", "feature-extraction")]
MAPPING = [("roberta", "text-classification"), ("distilbert", "text-classification"),
           ("xlm-roberta", "feature-extraction"), ("xlm-roberta", "text-classification"),
           ("electra", "feature-extraction"), ("electra", "text-classification"),
           ("bert", "token-classification"), ("distilbert", "question-answering")]
VALIDATION = {"texts": ["a man is eating food.", "hi", "the girl is carrying a baby on a plane at dawn"],
              "shapes": [[1, 5], [4, 40]]}  # batch and sequence unlike the trace's 2x16, with padding


def _build(root: Path, folder: Path, arch: str, task: str, targets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    name = f"{arch}-{task}".replace("_", "-")
    recipe = write_recipe(root / f"{name}.yaml", folder, name=name, task=task, targets=targets,
                          **{"validation": VALIDATION, **extra})
    return build_ok(recipe, root / "out")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict) -> Callable[[str, str], dict[str, Any]]:
    """``built(arch, task)``: the JSON result of building that tiny model (once per module)."""
    root = tmp_path_factory.mktemp("torch-targets")
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def get(arch: str, task: str) -> dict[str, Any]:
        if (arch, task) not in cache:
            folder = checkpoints.get((arch, task)) or make_checkpoint(root / "models" / f"{arch}-{task}", arch, task)
            targets = TARGETS if (arch, task) in ALL_TARGETS else ("bettertransformer",)
            cache[(arch, task)] = _build(root, folder, arch, task, {t: {} for t in targets})
        return cache[(arch, task)]

    return get


@pytest.mark.parametrize("arch,task", ALL_TARGETS)
def test_every_torch_target_builds_and_passes_parity(built: Callable, arch: str, task: str) -> None:
    data = built(arch, task)
    report = data["parity"]["artifacts"]
    assert {name: r["passed"] for name, r in report.items()} == dict.fromkeys(TARGETS, True)
    assert any(g["padded_tokens"] for g in data["parity"]["golden"])  # gated on padded batches
    assert {tuple(g["shape"]) for g in data["parity"]["golden"]} >= {(1, 5), (4, 40)}
    manifest = json.loads((Path(data["package_dir"]) / package.MANIFEST).read_text())
    for target, file in FOLDERS.items():
        assert (Path(data["package_dir"]) / file).is_file()
        assert manifest["artifacts"][target]["files"][0] == file  # the card's usage snippet loads files[0]
    card = (Path(data["package_dir"]) / package.CARD).read_text()
    assert f'torch.jit.load(hf_hub_download("{arch}-{task}", "torchscript/model.pt"))' in card
    assert f'torch.export.load(hf_hub_download("{arch}-{task}", "torch_export/model.pt2"))' in card
    meta = manifest["artifacts"]["torchscript"]["metadata"]
    expected_inputs = ["input_ids", "token_type_ids", "attention_mask"] if arch == "bert" else \
        ["input_ids", "attention_mask"]
    assert meta["inputs"] == expected_inputs and manifest["artifacts"]["torch_export"]["metadata"]["inputs"] == \
        expected_inputs
    assert meta["outputs"] == (["logits"] if task == "text-classification" else
                               ["last_hidden_state", "pooler_output"] if arch != "distilbert" else
                               ["last_hidden_state"])
    # BetterTransformer leaves padding positions undefined: compared at real tokens, and the report says so
    assert report["bettertransformer"]["compared"].startswith("token-level outputs at real tokens only")
    assert report["torchscript"]["compared"].startswith("all positions, padding included")
    assert manifest["artifacts"]["bettertransformer"]["skips_padding"] is True
    # torch.jit's deprecation: said once per artifact in the build's warnings, not as warning spam
    deprecations = [w for w in data["warnings"] if "torch.jit is deprecated" in w]
    assert sorted(w.split(":")[0] for w in deprecations) == ["bettertransformer", "torchscript"]


@pytest.mark.parametrize("arch,task", MAPPING)
def test_bettertransformer_layer_maps_and_heads(built: Callable, arch: str, task: str) -> None:
    data = built(arch, task)
    report = data["parity"]["artifacts"]["bettertransformer"]
    assert report["passed"], report["failures"]
    outputs = {o["output"] for b in report["batches"] for o in b["outputs"]}
    pooler = {"pooler_output"} if arch == "xlm-roberta" else set()  # electra has no pooler
    assert outputs == {"feature-extraction": {"last_hidden_state", *pooler}, "text-classification": {"logits"},
                       "token-classification": {"logits"},
                       "question-answering": {"start_logits", "end_logits"}}[task]
    config = json.loads((Path(data["package_dir"]) / "bettertransformer" / "config.json").read_text())
    assert config["model_type"] == arch and config["task"] == task
    # the outputs parity compares at real tokens only: per token, not per sample (pooler, sequence logits)
    assert config["token_outputs"] == {"feature-extraction": ["last_hidden_state"], "text-classification": [],
                                       "token-classification": ["logits"],
                                       "question-answering": ["start_logits", "end_logits"]}[task]
    if arch == "electra":  # embedding_size 16 < hidden 32: the projection is part of the mapped embeddings
        assert config["layer_map"]["embeddings"]["project"] == "embeddings_project"


def test_bettertransformer_weights_are_the_source_weights_fused(built: Callable, checkpoints: dict) -> None:
    import torch
    from safetensors.torch import load_file

    data = built("bert", "feature-extraction")
    folder = Path(data["package_dir"]) / "bettertransformer"
    fused = load_file(str(folder / "model.safetensors"))
    source = load_file(str(checkpoints[("bert", "feature-extraction")] / "model.safetensors"))
    for i in range(2):
        src = f"encoder.layer.{i}.attention"
        qkv = torch.cat([source[f"{src}.self.{n}.weight"] for n in ("query", "key", "value")])
        assert torch.equal(fused[f"encoder.layers.{i}.self_attn.in_proj_weight"], qkv)
        assert torch.equal(fused[f"encoder.layers.{i}.linear1.weight"],
                           source[f"encoder.layer.{i}.intermediate.dense.weight"])
        assert torch.equal(fused[f"encoder.layers.{i}.norm2.bias"], source[f"encoder.layer.{i}.output.LayerNorm.bias"])
    config = json.loads((folder / "config.json").read_text())
    assert config["torch"] == torch.__version__ and "in_proj = concat(q, k, v)" in config["layout"]
    assert config["layer_norm_eps"] == 1e-12 and config["activation"] == "gelu" and config["num_heads"] == 4


def test_convert_bench_measures_every_torch_artifact(built: Callable) -> None:
    """The one benchmark harness times the torch artifacts like any other (padded rows included)."""
    data = built("bert", "feature-extraction")
    recipe = Path(data["build_dir"]).parent.parent / "bert-feature-extraction.yaml"
    result = CliRunner().invoke(main, ["bench", str(recipe), "--out", str(Path(data["build_dir"]).parent),
                                       "--runs", "1", "--json"])
    assert result.exit_code == 0, result.output
    measured = {r["artifact"] for r in json.loads(result.stdout)["results"]}
    assert measured == {"eager", "eager-sdpa", *TARGETS}


def _ops(call: Callable[[], object]) -> set[str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    return {e.key for e in prof.key_averages()}


def test_bettertransformer_module_takes_the_nested_tensor_fastpath(built: Callable) -> None:
    """Loaded with plain torch.jit.load, the module converts the padded batch to a nested tensor and
    runs the fused encoder-layer kernel; in training mode (no fastpath) neither happens — so the
    assertion fails when the fastpath is not taken."""
    import torch

    from pipeline.stages import torch_common

    data = built("bert", "feature-extraction")
    with torch_common.quiet():
        module = torch.jit.load(str(Path(data["package_dir"]) / "bettertransformer" / "model.pt")).eval()
    ids = torch.randint(5, 60, (4, 24))
    mask = torch.ones_like(ids)
    mask[1:, 9:] = 0
    with torch.inference_mode():
        fast = _ops(lambda: module(ids, mask))
        hidden = module(ids, mask)[0]
    assert {"aten::_nested_tensor_from_mask", "aten::_transformer_encoder_layer_fwd"} <= fast
    assert torch.count_nonzero(hidden[1:, 9:]) == 0  # nested tensors padded back with zeros
    assert torch.count_nonzero(hidden[:, :9]) > 0
    module.train()
    with torch.inference_mode():
        slow = _ops(lambda: module(ids, mask))
    assert not {"aten::_nested_tensor_from_mask", "aten::_transformer_encoder_layer_fwd"} & slow


CONSUMER = r"""
import importlib.util, json, sys

sys.path.insert(0, sys.argv[1])  # site-packages without transformers, optimum, this project, ...
BLOCKED = ("transformers", "optimum", "pipeline", "onnxruntime", "tokenizers", "huggingface_hub", "tests")
for name in BLOCKED:
    if importlib.util.find_spec(name) is not None:
        raise SystemExit(f"{name} is importable")

import warnings

import numpy as np
import torch

warnings.simplefilter("ignore")
results = {}
for pkg in json.loads(sys.argv[2]):
    manifest = json.load(open(f"{pkg}/manifest.json"))
    inputs, outputs = np.load(f"{pkg}/golden_inputs.npz"), np.load(f"{pkg}/golden_outputs.npz")
    batches = sorted({key.split("/")[0] for key in inputs.files})
    for name, artifact in manifest["artifacts"].items():
        meta = artifact["metadata"]
        path = f"{pkg}/{artifact['folder']}/{meta['file']}"
        if path.endswith(".pt2"):
            module, loader = torch.export.load(path).module(), "torch.export.load"
        else:
            module, loader = torch.jit.load(path), "torch.jit.load"
        over, compared = 0, 0
        for batch in batches:
            feed = [torch.from_numpy(inputs[f"{batch}/{n}"]) for n in meta["inputs"]]
            with torch.inference_mode():
                got = module(*feed)
            mask = inputs[f"{batch}/attention_mask"].astype(bool)
            for out, value in zip(meta["outputs"], got, strict=True):
                value, want = value.numpy(), outputs[f"{batch}/{out}"]
                if artifact["skips_padding"] and value.shape[:2] == mask.shape:
                    value, want = value[mask], want[mask]  # padding positions are undefined by design
                over += int((np.abs(value - want) > 1e-4 + 1e-4 * np.abs(want)).sum())
                compared += value.size
        results[f"{manifest['name']}/{name}"] = {"loader": loader, "over": over, "compared": compared}
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"results": results, "leaked": leaked}))
"""


EXCLUDED = ("transformers", "optimum", "onnxruntime", "tokenizers", "huggingface_hub", "pipeline", "__editable__")


def run_consumer(packages: list[Path], cwd: Path) -> dict[str, Any]:
    """Run CONSUMER in a fresh interpreter whose import path is the standard library plus a copy (as
    symlinks) of this venv's site-packages without transformers, optimum, onnxruntime, tokenizers,
    huggingface_hub and this project (-S: no site-packages or .pth files, -E: no PYTHONPATH, -P: no cwd)."""
    import torch

    site = Path(torch.__file__).resolve().parent.parent
    view = cwd / "site-packages"
    view.mkdir()
    for entry in site.iterdir():
        stem = entry.name.lower().replace("-", "_")
        if entry.suffix != ".pth" and not stem.startswith(EXCLUDED):
            (view / entry.name).symlink_to(entry)
    proc = subprocess.run([sys.executable, "-S", "-E", "-P", "-c", CONSUMER, str(view),
                           json.dumps([str(p) for p in packages])], capture_output=True, text=True, cwd=cwd,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_a_torch_only_consumer_reproduces_the_golden_outputs(built: Callable, tmp_path: Path) -> None:
    combos = ALL_TARGETS + MAPPING
    packages = {combo: Path(built(*combo)["package_dir"]) for combo in combos}
    out = run_consumer(list(packages.values()), tmp_path)
    assert out["leaked"] == []
    results = out["results"]
    for (arch, task), pkg in packages.items():
        name = json.loads((pkg / package.MANIFEST).read_text())["name"]
        targets = TARGETS if (arch, task) in ALL_TARGETS else ("bettertransformer",)
        for target in targets:
            got = results[f"{name}/{target}"]
            assert got["compared"] > 0 and got["over"] == 0, (name, target, got)
            assert got["loader"] == CONSUMERS[target].split(" ")[0]
            record(arch, task, target, built=True, parity=True, consumer=CONSUMERS[target])


def test_a_shape_baked_in_by_the_tracer_fails_the_gate_clearly(tmp_path: Path, checkpoints: dict) -> None:
    """A forward that turns the input's sizes into Python ints (the classic tracing pitfall) traces
    fine at 2x16; at the golden shapes the artifact then fails the gate with a message saying the
    shape may be baked in, not a stack trace. The same stage on the plain model passes (control)."""
    import torch

    from pipeline import parity
    from pipeline import recipe as recipe_mod
    from pipeline import source as source_mod
    from pipeline.stages import StageContext, get_stage

    class BakesItsShape(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model, self.config = model, model.config

        def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None,
                    return_dict: bool = True) -> Any:
            batch, seq = (int(d) for d in input_ids.shape)  # constants in the trace
            positions = torch.arange(seq).expand(batch, seq)
            return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              position_ids=positions, return_dict=return_dict)

    path = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")],
                        targets={"torchscript": {}}, validation=VALIDATION)
    recipe = recipe_mod.load(path)
    loaded = source_mod.load(recipe, source_mod.resolve(recipe))
    batches = parity.golden_batches(recipe.validation.texts, recipe.validation.shapes, loaded.tokenizer, 128)
    reference = parity.eager_outputs(loaded.model, batches)
    stage = get_stage("torchscript")
    reports = {}
    for label, model in (("baked", BakesItsShape(loaded.model)), ("plain", loaded.model)):
        workdir = tmp_path / label
        workdir.mkdir()
        ctx = StageContext(recipe=recipe, source=dataclasses.replace(loaded, model=model), workdir=workdir)
        (artifact,) = stage.run(ctx, stage.params_model())
        reports[label] = parity.check_artifact("torchscript", stage.runner(workdir, artifact), batches, reference,
                                               stage.gate_for("torchscript", recipe.task))
    assert reports["plain"].passed, reports["plain"].failures
    failures = reports["baked"].failures
    assert len(failures) == len(batches)  # every golden batch differs from 2x16, every one fails
    for failure, batch in zip(failures, batches, strict=True):
        shape = "x".join(map(str, batch.shape))
        assert failure.startswith(f"torchscript: fails to run at {shape} ({batch.name}): RuntimeError: ")
        assert failure.endswith("the artifact may have baked in its export shape 2x16")
        assert "\n" not in failure and "Traceback" not in failure


def _config_only(folder: Path, config: Any) -> Path:
    """A checkpoint folder with config.json and random safetensors weights (no tokenizer): enough for
    the checks a build runs before loading anything."""
    from transformers import AutoModel

    AutoModel.from_config(config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.parametrize("arch,task,target,expected", [
    ("deberta-v2", "feature-extraction", "bettertransformer",
     "error: bettertransformer: model type 'deberta-v2' has no layer map onto nn.TransformerEncoderLayer "
     "(supported encoders: bert, distilbert, electra, roberta, xlm-roberta); set targets.bettertransformer.fallback: "
     "sdpa to build transformers' SDPA-attention model instead"),
    ("gpt2", "text-generation", "bettertransformer",
     "error: bettertransformer: model type 'gpt2' has no layer map onto nn.TransformerEncoderLayer (supported "
     "encoders: bert, distilbert, electra, roberta, xlm-roberta); set targets.bettertransformer.fallback: sdpa "
     "to build transformers' SDPA-attention model instead"),
    ("gpt2", "text-generation-with-past", "torchscript",
     "error: torchscript: task 'text-generation-with-past' (gpt2) is not supported; torchscript supports text "
     "models' single forward pass (encoders: feature-extraction, text-classification, token-classification, "
     "question-answering, fill-mask); use the onnx target for it"),
    ("t5", "text2text-generation", "torch_export",
     "error: torch_export: model type 't5' is an encoder-decoder; torch_export supports text models' single "
     "forward pass (encoders: feature-extraction, text-classification, token-classification, question-answering, "
     "fill-mask); use the onnx target for it"),
])
def test_an_unsupported_model_is_a_one_line_error_before_loading(tmp_path: Path, arch: str, task: str,
                                                                 target: str, expected: str) -> None:
    from transformers import DebertaV2Config, GPT2Config, T5Config

    small = {"deberta-v2": DebertaV2Config(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                           intermediate_size=37),
             "gpt2": GPT2Config(vocab_size=99, n_embd=32, n_layer=1, n_head=4),
             "t5": T5Config(vocab_size=99, d_model=32, d_ff=37, num_layers=1, num_heads=4, d_kv=8)}[arch]
    folder = _config_only(tmp_path / "model", small)
    recipe = write_recipe(tmp_path / "r.yaml", folder, task=task, targets={target: {}})
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error")] == [expected]
    assert not out.exists()  # refused before anything was loaded or written
    why = {"deberta-v2": "disentangled relative attention does not map onto nn.TransformerEncoderLayer",
           "gpt2": "decoder-only (causal attention, generation gated on greedy decoding)",
           "t5": "encoder-decoder"}[arch]
    record(arch, task, target, built=False, parity=None, note=f"not applicable: {why}")


def test_fallback_sdpa_for_an_unmapped_model_is_reported(tmp_path: Path) -> None:
    """DeBERTa-v2 has no layer map, and transformers has no SDPA attention for it either: with
    ``fallback: sdpa`` the build loads it and then says exactly that, in one line."""
    folder = make_checkpoint(tmp_path / "deberta", "deberta-v2", "feature-extraction")
    recipe = write_recipe(tmp_path / "r.yaml", folder, targets={"bettertransformer": {"fallback": "sdpa"}},
                          validation=VALIDATION)
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert line.startswith(
        "error: bettertransformer: model type 'deberta-v2' has no layer map (supported: bert, distilbert, electra, "
        "roberta, xlm-roberta) and transformers has no SDPA attention for it: ")


def test_fallback_sdpa_builds_transformers_sdpa_model_for_an_unmapped_encoder(tmp_path: Path) -> None:
    """ModernBERT (rotary, local/global attention) has no layer map but has SDPA attention in
    transformers: ``fallback: sdpa`` builds that, gated like any artifact, and the build says so."""
    import torch
    from transformers import BertTokenizerFast, ModernBertConfig, ModernBertModel

    from tests.tiny import SIZES, _wordpiece_vocab

    folder = tmp_path / "modernbert"
    folder.mkdir()
    tokenizer = BertTokenizerFast(vocab_file=str(_wordpiece_vocab(tmp_path)), model_max_length=128)
    config = ModernBertConfig(vocab_size=len(tokenizer), max_position_embeddings=128, pad_token_id=0,
                              local_attention=8, global_attn_every_n_layers=2, **SIZES)
    torch.manual_seed(0)
    ModernBertModel(config).eval().save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    data = _build(tmp_path, folder, "modernbert", "feature-extraction", {"bettertransformer": {"fallback": "sdpa"}})
    assert data["parity"]["artifacts"]["bettertransformer"]["passed"]
    assert any(w.startswith("bettertransformer: no BetterTransformer layer map for model type 'modernbert'")
               and "fallback sdpa built transformers' SDPA-attention model" in w for w in data["warnings"])
    manifest = json.loads((Path(data["package_dir"]) / package.MANIFEST).read_text())
    entry = manifest["artifacts"]["bettertransformer"]
    assert entry["metadata"]["fallback"] == "sdpa" and entry["skips_padding"] is False
    record("modernbert", "feature-extraction", "bettertransformer", built=True, parity=True,
           note="fallback: sdpa (transformers' SDPA model, traced; no nested tensors)")


@pytest.mark.slow
def test_all_minilm_l6_v2_builds_every_torch_target(tmp_path: Path, minilm_folder: Path) -> None:
    data = _build(tmp_path, minilm_folder, "all-minilm-l6-v2", "feature-extraction", {t: {} for t in TARGETS},
                  validation={"texts": VALIDATION["texts"], "shapes": [[1, 7], [8, 128]]})
    report = data["parity"]["artifacts"]
    assert {name: r["passed"] for name, r in report.items()} == dict.fromkeys(TARGETS, True)
    padded = next(b for b in report["bettertransformer"]["batches"] if b["batch"] == "synthetic_8x128")
    assert padded["padded_tokens"] > 0
    assert all(o["max_abs"] < 1e-4 for o in padded["outputs"])
    out = run_consumer([Path(data["package_dir"])], tmp_path)
    assert out["leaked"] == []
    for target in TARGETS:
        got = out["results"][f"all-minilm-l6-v2-feature-extraction/{target}"]
        assert got["compared"] > 0 and got["over"] == 0, (target, got)
        record("bert (all-MiniLM-L6-v2)", "feature-extraction", target, built=True, parity=True,
               consumer=CONSUMERS[target])
