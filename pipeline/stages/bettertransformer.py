"""BetterTransformer target: each encoder layer mapped onto PyTorch's fused ``nn.TransformerEncoderLayer``.

optimum 2.x and transformers no longer ship BetterTransformer; this is PyTorch's own: the eval-mode
fastpath of ``torch.nn.TransformerEncoder`` (fused kernels, and nested tensors that skip padding
tokens when a key padding mask is given). Every layer's weights are copied exactly: in_proj =
concat(q, k, v), out_proj, the two feed-forward linears, both layer norms with their eps, the
activation. Where each architecture keeps those is data: one :class:`LayerMap` per model type in
``LAYER_MAPS``, and one :class:`HeadMap` per task and model type in ``HEADS``.

The artifact is ``model.pt`` (a ``torch.jit.script``-ed module that plain ``torch.jit.load`` runs
with the nested-tensor path: scripting keeps it, tracing does not), ``model.safetensors`` (the
patched weights in the fused layout) and ``config.json`` (layout, torch version, inputs, outputs,
the map used). Padding positions of token-level outputs are zeros, not eager's values, so parity
compares them at real tokens only (``skips_padding``).

A model type without a map is an :class:`UnsupportedModelError` naming the supported ones, or, with
``fallback: sdpa``, transformers' SDPA-attention model traced to TorchScript, which the build's
warnings say. This module builds and runs the artifact; it does not gate it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipeline.batches import EXPORT_SHAPE
from pipeline.errors import UnsupportedModelError
from pipeline.stages import torch_common
from pipeline.stages.base import Artifact, Runner, Stage, StageContext, StageParams, register_stage

MODEL_FILE = "model.pt"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
LAYOUT = ("torch.nn.TransformerEncoder of TransformerEncoderLayer(batch_first=True, norm_first=False): "
          "self_attn.in_proj = concat(q, k, v)")


@dataclass(frozen=True)
class EmbeddingMap:
    """Attribute paths from the base model (``model.base_model``) to its embedding modules."""

    word: str
    position: str
    token_type: str | None
    norm: str
    positions: Literal["absolute", "padding_offset"]  # padding_offset: RoBERTa's, counted from pad_token_id + 1
    project: str | None = None  # ELECTRA's embeddings_project when embedding_size != hidden_size


@dataclass(frozen=True)
class LayerMap:
    """Where a model type keeps what ``nn.TransformerEncoderLayer`` needs.

    ``layers`` is the layer list's path from the base model; the other paths are from one layer;
    ``activation`` names the config attribute holding the feed-forward activation; ``pooler`` the
    base model's dense+tanh pooler (``pooler_output``), when the model has one.
    """

    embeddings: EmbeddingMap
    layers: str
    q: str
    k: str
    v: str
    out: str
    norm1: str
    ffn_in: str
    ffn_out: str
    norm2: str
    activation: str
    pooler: str | None


BERT = LayerMap(
    embeddings=EmbeddingMap(word="embeddings.word_embeddings", position="embeddings.position_embeddings",
                            token_type="embeddings.token_type_embeddings", norm="embeddings.LayerNorm",
                            positions="absolute"),
    layers="encoder.layer", q="attention.self.query", k="attention.self.key", v="attention.self.value",
    out="attention.output.dense", norm1="attention.output.LayerNorm", ffn_in="intermediate.dense",
    ffn_out="output.dense", norm2="output.LayerNorm", activation="hidden_act", pooler="pooler.dense")
ROBERTA = replace(BERT, embeddings=replace(BERT.embeddings, positions="padding_offset"))
LAYER_MAPS: dict[str, LayerMap] = {
    "bert": BERT,
    "roberta": ROBERTA,
    "xlm-roberta": ROBERTA,
    "electra": replace(BERT, embeddings=replace(BERT.embeddings, project="embeddings_project"), pooler=None),
    "distilbert": LayerMap(
        embeddings=EmbeddingMap(word="embeddings.word_embeddings", position="embeddings.position_embeddings",
                                token_type=None, norm="embeddings.LayerNorm", positions="absolute"),
        layers="transformer.layer", q="attention.q_lin", k="attention.k_lin", v="attention.v_lin",
        out="attention.out_lin", norm1="sa_layer_norm", ffn_in="ffn.lin1", ffn_out="ffn.lin2",
        norm2="output_layer_norm", activation="activation", pooler=None),
}


@dataclass(frozen=True)
class HeadMap:
    """A task head: linear layers (paths from the task model) each followed by an activation, applied
    to the first token or to every token, giving these outputs (two: start/end split of the last axis)."""

    layers: tuple[tuple[str, str], ...]
    first_token: bool
    outputs: tuple[str, ...] = ("logits",)


_TOKENS = HeadMap(layers=(("classifier", "none"),), first_token=False)
_SPAN = HeadMap(layers=(("qa_outputs", "none"),), first_token=False, outputs=("start_logits", "end_logits"))
_ROBERTA_CLS = HeadMap(layers=(("classifier.dense", "tanh"), ("classifier.out_proj", "none")), first_token=True)
HEADS: dict[str, dict[str, HeadMap]] = {
    "text-classification": {
        "bert": HeadMap(layers=(("base_model.pooler.dense", "tanh"), ("classifier", "none")), first_token=True),
        "roberta": _ROBERTA_CLS,
        "xlm-roberta": _ROBERTA_CLS,
        # transformers' ElectraClassificationHead uses gelu whatever the config says
        "electra": HeadMap(layers=(("classifier.dense", "gelu"), ("classifier.out_proj", "none")), first_token=True),
        "distilbert": HeadMap(layers=(("pre_classifier", "relu"), ("classifier", "none")), first_token=True),
    },
    "token-classification": {t: _TOKENS for t in LAYER_MAPS},
    "question-answering": {t: _SPAN for t in LAYER_MAPS},
}
TASKS = ("feature-extraction", *HEADS)
ACTIVATIONS = ("gelu", "relu")  # what the fused kernel computes (exact gelu, not the tanh approximation)


class BetterTransformerParams(StageParams):
    fallback: Literal["none", "sdpa"] = Field(
        default="none", description="for a model type without a layer map: 'none' is an error; 'sdpa' builds "
                                    "transformers' SDPA-attention model (traced TorchScript) instead and says so")


def supported() -> str:
    return ", ".join(sorted(LAYER_MAPS))


@register_stage("bettertransformer")
class BetterTransformer(Stage[BetterTransformerParams]):
    params_model = BetterTransformerParams
    version = 3  # 2: metadata names the token-level outputs; 3: same bytes in every process and checkout
    description = "encoder layers on PyTorch's fused nn.TransformerEncoder fastpath (nested tensors skip padding)"
    package_folder = "bettertransformer"
    library_name = "pytorch"
    architectures = tuple(LAYER_MAPS)

    def usage(self, repo: str, task: str, artifacts: Mapping[str, Mapping[str, Any]],
              recommended: str | None) -> list[str]:
        return [line for name, a in artifacts.items() for line in torch_common.jit_usage(name, repo, a["files"][0])]

    def check(self, params: BetterTransformerParams, config: Mapping[str, Any], task: str) -> None:
        model_type = str(config.get("model_type", "?"))
        if model_type not in LAYER_MAPS:
            if params.fallback == "sdpa":
                torch_common.check_model(self.name, config, task)
                return
            raise UnsupportedModelError(
                f"{self.name}: model type {model_type!r} has no layer map onto nn.TransformerEncoderLayer "
                f"(supported encoders: {supported()}); set targets.{self.name}.fallback: sdpa to build "
                "transformers' SDPA-attention model instead")
        heads = config.get("num_attention_heads", config.get("n_heads"))
        if isinstance(heads, int) and heads % 2:  # PyTorch's fastpath refuses odd head counts
            raise UnsupportedModelError(f"{self.name}: {heads} attention heads: PyTorch's encoder fastpath "
                                        "needs an even number")

    def run(self, ctx: StageContext, params: BetterTransformerParams) -> list[Artifact]:
        import torch

        source = ctx.source
        self.check(params, source.config.to_dict(), source.task)
        if source.model_type not in LAYER_MAPS:
            return self._sdpa_fallback(ctx)
        if source.task not in TASKS:
            raise UnsupportedModelError(f"{self.name}: task {source.task!r} is not supported (supported: "
                                        f"{', '.join(TASKS)})")
        from safetensors.torch import save_file

        with torch_common.quiet():
            module, outputs, described = build_module(source.model, source.model_type, source.task)
            scripted = torch_common.script(module)
            torch_common.save_jit(scripted, ctx.workdir / MODEL_FILE)
        state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
        # one metadata key: safetensors writes the header's metadata from a Rust HashMap, whose order
        # is random per process, so two keys would give two byte orders (the layout is in config.json)
        save_file(state, str(ctx.workdir / WEIGHTS_FILE), metadata={"format": "pt"})
        # the module's positional order; token_type_ids (optional, zeros) only where the tokenizer gives them
        given = set(getattr(source.tokenizer, "model_input_names", []) or [])
        inputs = ["input_ids", "attention_mask", *(["token_type_ids"] if "token_type_ids" in given else [])]
        config = {"format": "pipeline-convert bettertransformer", "format_version": 1, "layout": LAYOUT,
                  "torch": torch.__version__, "model_type": source.model_type, "task": source.task,
                  "inputs": inputs, "outputs": outputs, **described}
        (ctx.workdir / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return [Artifact(name=self.name, files=(MODEL_FILE, WEIGHTS_FILE, CONFIG_FILE), skips_padding=True, metadata={
            "file": MODEL_FILE, "inputs": inputs, "outputs": outputs, "torch": torch.__version__, "layout": LAYOUT,
            "token_outputs": described["token_outputs"],
            "fastpath": "nested tensors (padding skipped); token-level outputs are 0 at padding positions",
            "notes": [torch_common.JIT_DEPRECATED]})]

    def _sdpa_fallback(self, ctx: StageContext) -> list[Artifact]:
        """transformers' SDPA-attention model, traced and frozen like the torchscript target."""
        import torch

        source = ctx.source
        names = torch_common.input_names(self.name, source)
        model = source.model
        if getattr(model.config, "_attn_implementation", None) != "sdpa":
            try:
                model = type(model).from_pretrained(source.resolved.folder, attn_implementation="sdpa",
                                                    use_safetensors=True).eval()
            except (ValueError, ImportError) as e:  # transformers: "does not support ... scaled_dot_product"
                raise UnsupportedModelError(
                    f"{self.name}: model type {source.model_type!r} has no layer map (supported: {supported()}) "
                    f"and transformers has no SDPA attention for it: {str(e).split('. ')[0]}") from None
        example = torch_common.example_inputs(source, names, EXPORT_SHAPE)
        outputs = torch_common.output_names(model, example)
        torch_common.trace(self.name, model, names, example, ctx.workdir / MODEL_FILE)
        note = (f"no BetterTransformer layer map for model type {source.model_type!r} (supported: {supported()}): "
                "fallback sdpa built transformers' SDPA-attention model, traced to TorchScript; no nested-tensor "
                "fastpath, padding is computed")
        return [Artifact(name=self.name, files=(MODEL_FILE,), metadata={
            "file": MODEL_FILE, "inputs": names, "outputs": outputs, "torch": torch.__version__,
            "fallback": "sdpa", "layout": "torch.jit.ScriptModule (traced SDPA model): forward(*inputs) -> tuple",
            "notes": [note, torch_common.JIT_DEPRECATED]})]

    def runner(self, stage_dir: Path, artifact: Artifact, threads: int | None = None) -> Runner:
        meta = artifact.metadata  # the scripted module and the SDPA fallback's trace alike
        return torch_common.jit_runner(stage_dir / meta["file"], meta["inputs"], meta["outputs"])


def _get(root: Any, path: str) -> Any:
    for part in path.split("."):
        root = getattr(root, part)
    return root


def build_module(model: Any, model_type: str, task: str) -> tuple[Any, list[str], dict[str, Any]]:
    """The fastpath module for a loaded transformers ``model``, its output names, and a description of
    the mapping (for config.json). Weights are copied; ``model`` is left as it was.

    Raises:
        UnsupportedModelError: no map for the model type or task, or a setting the fused layer cannot
            express (activation, relative positions, unequal layer norm eps).
    """
    import torch
    from torch import nn

    from pipeline.stages.fastpath_module import ACTIVATIONS as CODES
    from pipeline.stages.fastpath_module import Embeddings, FastpathEncoder, Head

    if model_type not in LAYER_MAPS:
        raise UnsupportedModelError(f"bettertransformer: no layer map for model type {model_type!r} "
                                    f"(supported: {supported()})")
    lmap = LAYER_MAPS[model_type]
    config = model.config
    base = model.base_model
    activation = getattr(config, lmap.activation)
    if activation not in ACTIVATIONS:
        raise UnsupportedModelError(f"bettertransformer: activation {activation!r} of {model_type!r} is not one "
                                    f"the fused kernel computes ({', '.join(ACTIVATIONS)})")
    position_type = getattr(config, "position_embedding_type", "absolute")
    if position_type != "absolute":
        raise UnsupportedModelError(f"bettertransformer: position_embedding_type {position_type!r} does not map "
                                    "(only 'absolute' position embeddings do)")
    layers = list(_get(base, lmap.layers))
    first = layers[0]
    hidden = _get(first, lmap.q).in_features
    heads = int(getattr(config, "num_attention_heads", None) or config.n_heads)
    eps = {float(_get(layer, p).eps) for layer in layers for p in (lmap.norm1, lmap.norm2)}
    if len(eps) != 1:
        raise UnsupportedModelError(f"bettertransformer: layer norms with different eps {sorted(eps)}; the fused "
                                    "layer has one")
    template = nn.TransformerEncoderLayer(d_model=hidden, nhead=heads, dim_feedforward=_get(first, lmap.ffn_in)
                                          .out_features, dropout=0.0, activation=activation,
                                          layer_norm_eps=eps.pop(), batch_first=True, norm_first=False)
    encoder = nn.TransformerEncoder(template, num_layers=len(layers), enable_nested_tensor=True)
    with torch.no_grad():
        for src, dst in zip(layers, encoder.layers, strict=True):
            q, k, v = (_get(src, p) for p in (lmap.q, lmap.k, lmap.v))
            dst.self_attn.in_proj_weight.copy_(torch.cat([q.weight, k.weight, v.weight]))
            dst.self_attn.in_proj_bias.copy_(torch.cat([q.bias, k.bias, v.bias]))
            for mine, theirs in ((dst.self_attn.out_proj, lmap.out), (dst.linear1, lmap.ffn_in),
                                 (dst.linear2, lmap.ffn_out), (dst.norm1, lmap.norm1), (dst.norm2, lmap.norm2)):
                mine.weight.copy_(_get(src, theirs).weight)
                mine.bias.copy_(_get(src, theirs).bias)
    emap = lmap.embeddings
    project = [] if emap.project is None or not hasattr(base, emap.project) else [_get(base, emap.project)]
    embeddings = Embeddings(
        word=_get(base, emap.word), position=_get(base, emap.position),
        token_type=[_get(base, emap.token_type)] if emap.token_type else [], norm=_get(base, emap.norm),
        project=project, padding_offset=emap.positions == "padding_offset",
        padding_idx=int(config.pad_token_id if config.pad_token_id is not None else 0))
    embeddings = copy.deepcopy(embeddings)  # our own copy: the source model is shared with other stages
    head_maps: list[HeadMap] = []
    if task == "feature-extraction":
        if lmap.pooler and _get(base, lmap.pooler.rsplit(".", 1)[0]) is not None:
            head_maps.append(HeadMap(layers=((f"base_model.{lmap.pooler}", "tanh"),), first_token=True,
                                     outputs=("pooler_output",)))
    elif model_type in HEADS.get(task, {}):
        head_maps.append(HEADS[task][model_type])
    else:
        raise UnsupportedModelError(f"bettertransformer: task {task!r} has no head map for {model_type!r} "
                                    f"(supported tasks: {', '.join(TASKS)})")
    heads_ = [Head(layers=[copy.deepcopy(_get(model, path)) for path, _ in h.layers],
                   activations=[CODES[act] for _, act in h.layers], first_token=h.first_token,
                   split=len(h.outputs) == 2) for h in head_maps]
    module = FastpathEncoder(embeddings, encoder, heads_, return_hidden=task == "feature-extraction").eval()
    for p in module.parameters():  # the fastpath is skipped when grad is enabled and a weight requires grad
        p.requires_grad_(False)
    outputs = (["last_hidden_state"] if task == "feature-extraction" else []) + [o for h in head_maps
                                                                                 for o in h.outputs]
    described = {"num_layers": len(layers), "hidden_size": hidden, "num_heads": heads,
                 "dim_feedforward": template.linear1.out_features, "activation": activation,
                 "layer_norm_eps": template.norm1.eps, "layer_map": asdict(lmap),
                 "heads": [asdict(h) for h in head_maps],
                 # per token, so undefined at padding: last_hidden_state and the heads applied to every token
                 "token_outputs": (["last_hidden_state"] if task == "feature-extraction" else [])
                 + [o for h in head_maps if not h.first_token for o in h.outputs]}
    return module, outputs, described
