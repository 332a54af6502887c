"""ONNX target: optimum-onnx's exporter run on the already loaded source model, plus its variants.

Exports with dynamic batch and sequence axes at the recipe's opset (``model.onnx``), then derives
the variants the recipe lists, each with optimum's and onnxruntime's own tools:

- ``optimized`` (``model_optimized.onnx``): optimum's ``ORTOptimizer`` — onnxruntime's offline graph
  optimization plus its transformer fusions, with the model type, heads and hidden size optimum
  reads from the config;
- ``int8`` (``model_quantized.onnx``): dynamic quantization by optimum's ``ORTQuantizer`` of the
  plain graph (quantizing the fused graph fails shape inference), optional per-channel weights,
  onnxruntime's quantization pre-processing, and nodes kept in fp32 by name. Its weights are QInt8
  in 7 bits by default (``int8.weights``, ``int8.reduce_range``), so its numbers are the same on every
  CPU (below), and it runs onnxruntime's faster U8S8 kernels;
- ``int8-arm64``, ``int8-avx2``, ``int8-avx512``, ``int8-avx512_vnni``: the same quantization with
  optimum's ``AutoQuantizationConfig`` preset for that instruction set, in the file
  sentence-transformers names for it (``model_qint8_avx512_vnni.onnx`` …), each its own artifact;
- ``fp16`` (``model_fp16.onnx``): the optimized graph with fp16 weights, fp32 inputs and outputs.

Every variant is gated and measured like any artifact; none is assumed faster or accurate.

int8 numerics depend on the CPU that runs the graph. onnxruntime's U8S8 kernels (QInt8 weights) use
VPMADDUBSW on x86 without VNNI (AVX2, AVX-512 without VNNI), whose 16-bit pair sums can saturate;
VNNI, AMX and ARM64 compute U8S8 exactly, and U8U8 (QUInt8 weights) is exact everywhere, as are
QInt8 weights in 7 bits (``reduce_range``: a pair sum cannot reach the 16-bit limit). So each int8
graph records which CPUs compute it exactly (``numerics`` in its metadata), and a graph whose
exactness needs VNNI or ARM64 is gated with the numbers such a CPU computes, whatever CPU builds it:
on a CPU without exact U8S8, onnxruntime's ``session.x64quantprecision=1`` (its weights rewritten to
U8U8, exact integer arithmetic; on a VNNI CPU its outputs equal the native ones bit for bit, at half
the speed, so it is used only where needed); its parity report says so. The ``avx512`` preset
(AVX-512 without VNNI) is built with ``reduce_range`` for that reason.

optimum's own export validation is switched off: it only warns on a miss.

A graph whose weights reach 1 GiB (``onnx_common.EXTERNAL_WEIGHTS_BYTES``) keeps them as external data
(``model.onnx_data``) from the export on: torch's exporter would otherwise hold three serialized copies
of them in memory at once (pipeline/stages/onnx_weights.py). Smaller graphs stay one self-contained file.

With the recipe's ``sentence_embedding``, the graph also outputs ``sentence_embedding``: optimum's
own ONNX config for the model type, with the pooling (pipeline/pooling.py) traced after the
encoder's forward (:func:`pipeline.stages.onnx_common.pooled_onnx_config`), so every variant carries it too.

Generation tasks export what optimum's ORTModel classes load: ``text-generation-with-past`` one
``model.onnx`` with ``past_key_values.*`` inputs (an empty past at prefill), and
``text2text-generation(-with-past)`` ``encoder_model.onnx`` plus ``decoder_model_merged.onnx``
(``ORTModelForSeq2SeqLM`` prefers the merged decoder; the unmerged ``decoder_model.onnx`` and
``decoder_with_past_model.onnx`` the exporter also writes are dropped, so every shipped graph is
gated). One artifact lists every graph and its external data. Their runners decode greedily step by
step (pipeline/stages/onnx_generation.py). The variants are built for single-graph tasks that are not
generation (encoders, vision); for generation tasks only ``fp32`` is, and a recipe asking for more is
refused before anything is loaded.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from pipeline import cpu
from pipeline.errors import StageError, UnsupportedModelError
from pipeline.gate import lossy_gate
from pipeline.pooling import OUTPUT as POOLED_OUTPUT
from pipeline.stages import onnx_common, onnx_generation
from pipeline.stages.base import (
    Artifact,
    ClassNumerics,
    Gate,
    NoParts,
    Runner,
    Stage,
    StageContext,
    StageParams,
    VariantParams,
    register_stage,
)
from pipeline.steps import Step
from pipeline.tasks import GENERATION, IMAGE, SEQ2SEQ, SYNONYMS, TEXT, task_kind

ONNX_FILE = onnx_common.ONNX_FILE
Variant = Literal["fp32", "optimized", "int8", "fp16", "int8-arm64", "int8-avx2", "int8-avx512", "int8-avx512_vnni"]
WeightType = Literal["quint8", "qint8"]


@dataclass(frozen=True)
class Int8Preset:
    """A per-CPU int8 variant: optimum's ``AutoQuantizationConfig`` preset, the file sentence-transformers
    names for it, its weight type, and whether the weights use 7 bits."""

    preset: str
    file: str
    weights: WeightType
    reduce_range: bool
    suits: str  # the CPUs the file is meant for (model card)


INT8_PRESETS: dict[str, Int8Preset] = {
    "int8-arm64": Int8Preset("arm64", "model_qint8_arm64.onnx", "qint8", False, "ARM64 (NEON dot product)"),
    "int8-avx2": Int8Preset("avx2", "model_quint8_avx2.onnx", "quint8", False,
                            "x86-64 with AVX2 and no VNNI (U8U8 kernels)"),
    # 7-bit weights: AVX-512 without VNNI runs U8S8 through VPMADDUBSW, which saturates at full range
    "int8-avx512": Int8Preset("avx512", "model_qint8_avx512.onnx", "qint8", True,
                              "x86-64 with AVX-512 and no VNNI (7-bit weights, no saturation)"),
    "int8-avx512_vnni": Int8Preset("avx512_vnni", "model_qint8_avx512_vnni.onnx", "qint8", False,
                                   "x86-64 with AVX-512 VNNI, AVX-VNNI or AMX"),
}
# File names optimum's ORTModel (file_name=...), transformers.js (dtype: fp32/q8/fp16) and
# sentence-transformers (model_kwargs={"file_name": ...}) look for.
VARIANT_FILES: dict[str, str] = {"fp32": ONNX_FILE, "optimized": "model_optimized.onnx",
                                 "int8": "model_quantized.onnx", "fp16": "model_fp16.onnx",
                                 **{name: preset.file for name, preset in INT8_PRESETS.items()}}
INT8: frozenset[str] = frozenset({"int8", *INT8_PRESETS})
LOSSY: frozenset[str] = frozenset({"fp16", *INT8})
EXACT_INT8_SESSION = {"session.x64quantprecision": "1"}  # onnxruntime: U8U8 (exact) in place of U8S8 on x86
ENCODER_FILE, MERGED_DECODER_FILE = onnx_common.ENCODER_FILE, "decoder_model_merged.onnx"
UNMERGED_DECODER_FILES = ("decoder_model.onnx", "decoder_with_past_model.onnx")
# optimum's ORTModel class per task (model card usage; the tests load packages with them)
ORT_CLASSES = {
    "feature-extraction": "ORTModelForFeatureExtraction",
    "sentence-similarity": "ORTModelForFeatureExtraction",  # optimum's synonym of feature-extraction
    "text-classification": "ORTModelForSequenceClassification",
    "token-classification": "ORTModelForTokenClassification",
    "question-answering": "ORTModelForQuestionAnswering",
    "fill-mask": "ORTModelForMaskedLM",
    "text-generation": "ORTModelForCausalLM",
    "text2text-generation": "ORTModelForSeq2SeqLM",
    "image-classification": "ORTModelForImageClassification",
}


class OptimizationParams(StageParams):
    # no 99 ("all"): its NCHWc layout transform picks block sizes from the build CPU's vector width,
    # so the optimized graph would depend on the machine that built it; levels 0-2 do not
    level: int = Field(default=2, ge=0, le=2,
                       description="onnxruntime graph optimization level: 0 fusions only, 1 basic, 2 extended")


class Int8Params(StageParams):
    """Settings of every int8 variant; ``weights`` and ``reduce_range`` are the default ``int8``
    variant's (each ``int8-<cpu>`` variant takes its preset's)."""

    per_channel: bool = Field(default=True, description="one weight scale per output channel")
    weights: WeightType = Field(default="qint8", description="weight type of the int8 variant: qint8 (U8S8 "
                                "kernels: exact on VNNI/AMX and ARM64 CPUs, and on every CPU with reduce_range) or "
                                "quint8 (U8U8 kernels: exact on every CPU, slower)")
    reduce_range: bool = Field(default=True, description="weights in 7 bits: VPMADDUBSW (x86 without VNNI) cannot "
                               "saturate, so the int8 variant computes the same numbers on every CPU")
    preprocess: bool = Field(default=True, description="run onnxruntime's quantization pre-processing first")
    operators: list[str] = Field(default=["MatMul"], min_length=1,
                                 description="op types to quantize (Gather would quantize the embeddings)")
    exclude_nodes: list[str] = Field(default=[], description="node names kept in fp32 (see "
                                     "benchmarks/int8_sensitivity.py to choose them by measurement)")


class OnnxParams(VariantParams):
    opset: int = Field(default=18, ge=14, le=23, description="ONNX opset to export with")
    variants: list[Variant] = Field(default=["fp32"], min_length=1, description="graphs to build and gate")
    optional: list[Variant] = Field(default=[], description="variants whose failed gate is reported but does "
                                    "not fail the build (they are then not packaged)")
    optimization: OptimizationParams = Field(default_factory=OptimizationParams)
    int8: Int8Params = Field(default_factory=Int8Params)


def int8_numerics(weights: str, reduce_range: bool) -> dict[str, Any]:
    """Which CPUs compute an int8 graph with these weights exactly, and the onnxruntime session
    settings that give those numbers on any x86 CPU (for the gate)."""
    if weights == "quint8":
        return {"weights": weights, "reduce_range": reduce_range, "kernels": "U8U8", "exact_on": "every CPU",
                "gated_with": "the build CPU's own kernels (U8U8 is exact on every CPU)"}
    if reduce_range:
        return {"weights": weights, "reduce_range": True, "kernels": "U8S8, 7-bit weights", "exact_on": "every CPU",
                "gated_with": "the build CPU's own kernels (7-bit weights cannot saturate VPMADDUBSW)"}
    return {"weights": weights, "reduce_range": False, "kernels": "U8S8",
            "exact_on": "x86-64 with VNNI or AMX, and ARM64; on x86-64 without VNNI (AVX2, AVX-512 without VNNI) "
                        "onnxruntime's VPMADDUBSW kernels can saturate",
            "gated_with": "exact integer arithmetic, as a VNNI or ARM64 CPU computes it, whatever CPU built it "
                          "(where the build CPU lacks VNNI: onnxruntime's U8U8 path, session.x64quantprecision=1)",
            "session_config": dict(EXACT_INT8_SESSION)}


DECODING = "onnxruntime, greedy, the graphs driven step by step with their past key values"


def artifact_name(variant: str) -> str:
    return "onnx" if variant == "fp32" else f"onnx-{variant}"


@register_stage("onnx")
class OnnxExport(Stage[OnnxParams]):
    params_model = OnnxParams
    version = 4  # 3: int8 weights QUInt8 by default, per-CPU int8 variants; 4: weights >= 1 GiB as external data
    description = "ONNX graphs exported by optimum-onnx, run with onnxruntime"
    package_folder = "onnx"  # where optimum's ORTModel (subfolder="onnx") and transformers.js look
    exporter, exporter_label = "onnx", "ONNX"
    libraries = ("optimum", "optimum-onnx", "onnx", "onnxruntime")
    library_name = "onnx"
    card_tags = ("onnx", "optimum", "transformers.js")
    sentence_transformers_backend = "onnx"  # its ORTModelForFeatureExtraction loads onnx/<file>

    def register_exporter_configs(self) -> None:
        import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs per model type)

    def artifact_names(self, params: OnnxParams) -> list[str]:
        return [artifact_name(v) for v in params.variants]

    def gate_for(self, artifact: str, task: str) -> Gate:
        """fp32-class graphs elementwise; lossy ones in task terms (:func:`pipeline.gate.lossy_gate`)."""
        variant = artifact.removeprefix(f"{self.name}-") if artifact != self.name else "fp32"  # e.g. onnx-int8-avx2
        return lossy_gate(task) if variant in LOSSY else self.default_gate

    def check(self, params: OnnxParams, config: Mapping[str, Any], task: str) -> None:
        others = [v for v in params.variants if v != "fp32"]
        if others and task_kind(task) in (GENERATION, SEQ2SEQ):
            raise UnsupportedModelError(
                f"targets.onnx.variants: {', '.join(others)} not supported for "
                f"{config.get('model_type')}/{task} (the variants are built for single-graph encoder and vision "
                "tasks; a generation task gets the fp32 graphs optimum's ORTModel loads): use variants: [fp32]")

    def run(self, ctx: StageContext, params: OnnxParams) -> list[Artifact]:
        work = ctx.workdir
        kind = task_kind(ctx.source.task)
        self.check(params, {"model_type": ctx.source.model_type}, ctx.source.task)
        # the exported graph and each variant are parts of their own (ctx.parts): a variant's key is its own
        # settings and the graph's key, so an int8 setting re-quantizes int8 only (single-graph tasks)
        parts = ctx.parts if kind not in (GENERATION, SEQ2SEQ) else NoParts()
        pooling = ctx.source.pooling.to_json() if ctx.source.pooling is not None else None
        graph_key = Step("onnx-export", version=self.version, params={"opset": params.opset, "task": ctx.source.task,
                                                                      "pooling": pooling},
                         inputs={"source": ctx.source.resolved.fingerprint}, libraries=self.libraries).key()

        def variant_key(variant: str, settings: Any) -> str:
            return Step("onnx-variant", version=self.version, params={"variant": variant, "settings": settings},
                        inputs={"graph": graph_key}, libraries=self.libraries).key()

        if parts.take("export", graph_key) is None:
            with onnx_common.quiet():
                self._export(ctx, params)
            parts.made("export", graph_key, _graph_files(work, ONNX_FILE))
        if kind == SEQ2SEQ:
            return [self._seq2seq_artifact(ctx, params)]
        graph = _SelfContained(work)
        with onnx_common.quiet():
            built = {"fp32": ONNX_FILE}
            for variant, fp16 in (("optimized", False), ("fp16", True)):
                if variant not in params.variants:
                    continue
                key = variant_key(variant, params.optimization.model_dump(mode="json"))
                if parts.take(variant, key) is not None:
                    built[variant] = VARIANT_FILES[variant]
                    continue
                source = graph.folder()
                ctx.source.config.save_pretrained(source)  # optimum's optimizer reads the model type from it
                built[variant] = self._optimize(source, work, params, fp16=fp16)
                parts.made(variant, key, _graph_files(work, built[variant]))
            int8_key = {v: variant_key(v, params.int8.model_dump(mode="json")) for v in params.variants if v in INT8}
            int8 = [v for v, key in int8_key.items() if parts.take(v, key) is None]
            built.update({v: VARIANT_FILES[v] for v in int8_key if v not in int8})
            if int8:
                made = self._quantize(ctx, params, int8, graph.folder() / ONNX_FILE)
                built.update(made)
                for variant in int8:
                    parts.made(variant, int8_key[variant], _graph_files(work, made[variant]))
        graph.remove()
        (work / "config.json").unlink(missing_ok=True)
        if "fp32" not in params.variants:  # the base graph of the others, not an artifact itself
            (work / ONNX_FILE).unlink()
            for extra in work.glob(f"{ONNX_FILE}_data*"):
                extra.unlink()
        artifacts = []
        for variant in params.variants:
            file = built[variant]
            files = tuple(sorted(p.name for p in work.glob(f"{file}*")))  # the graph and its external data
            metadata = {"file": file, "variant": variant, "opset": params.opset, **onnx_common.io_names(work / file)}
            if variant in INT8:
                weights, reduce_range = int8_settings(variant, params.int8)
                metadata["numerics"] = int8_numerics(weights, reduce_range)
                if variant in INT8_PRESETS:
                    metadata["suits"] = INT8_PRESETS[variant].suits
            if kind == GENERATION:
                metadata["decoding"] = DECODING
            if ctx.source.pooling is not None:  # how the sentence_embedding output pools, and who said so
                metadata[POOLED_OUTPUT] = ctx.source.pooling.to_json()
            artifacts.append(Artifact(name=artifact_name(variant), files=files, optional=variant in params.optional,
                                      metadata=metadata))
        return artifacts

    def _seq2seq_artifact(self, ctx: StageContext, params: OnnxParams) -> Artifact:
        work = ctx.workdir
        for name in (ENCODER_FILE, MERGED_DECODER_FILE):
            if not (work / name).is_file():
                raise StageError(self.name, f"the exporter wrote no {name} (files: "
                                            f"{', '.join(sorted(p.name for p in work.iterdir()))})")
        for name in UNMERGED_DECODER_FILES:  # not what ORTModelForSeq2SeqLM loads: not shipped, not gated
            for extra in work.glob(f"{name}*"):
                extra.unlink()
        files = tuple(sorted(p.name for p in work.iterdir() if p.name.startswith((ENCODER_FILE, MERGED_DECODER_FILE))))
        start = ctx.source.config.decoder_start_token_id
        if start is None:
            raise StageError(self.name, "the config has no decoder_start_token_id: greedy decoding cannot start")
        return Artifact(name=artifact_name("fp32"), files=files, optional="fp32" in params.optional,
                        metadata={"file": MERGED_DECODER_FILE, "encoder": ENCODER_FILE, "variant": "fp32",
                                  "opset": params.opset, "decoder_start_token_id": int(start), "decoding": DECODING,
                                  **onnx_common.io_names(work / MERGED_DECODER_FILE)})

    def _export(self, ctx: StageContext, params: OnnxParams) -> None:
        onnx_common.export(self.name, ctx.source, ctx.workdir, params.opset)

    def _optimize(self, source: Path, work: Path, params: OnnxParams, fp16: bool) -> str:
        """``source``/model.onnx (self-contained) optimized into ``work``; returns the file's name."""
        from optimum.onnxruntime import ORTOptimizer
        from optimum.onnxruntime.configuration import OptimizationConfig

        suffix = "fp16" if fp16 else "optimized"
        try:
            optimizer = ORTOptimizer.from_pretrained(source, file_names=[ONNX_FILE])
            config = OptimizationConfig(optimization_level=params.optimization.level, fp16=fp16,
                                        disable_shape_inference=True)
            optimizer.optimize(config, save_dir=work, file_suffix=suffix)
        except Exception as e:  # optimum/onnxruntime raise bare errors for unsupported graphs
            raise StageError(f"{self.name}-{suffix}", f"{type(e).__name__}: {e}") from e
        (work / "ort_config.json").unlink(missing_ok=True)
        return VARIANT_FILES["fp16" if fp16 else "optimized"]

    def _quantize(self, ctx: StageContext, params: OnnxParams, variants: list[str], graph: Path) -> dict[str, str]:
        """Each int8 variant from one pre-processed copy of the plain graph (``graph``, self-contained);
        returns variant -> file."""
        work = ctx.workdir
        tmp = work / "int8-input"
        built = {}
        try:
            prepare_int8_input(graph, tmp, ctx.source.config, params.int8)
            for variant in variants:
                weights, reduce_range = int8_settings(variant, params.int8)
                produced = quantize_int8(tmp, params.int8, weights=weights, reduce_range=reduce_range,
                                         nodes_to_exclude=list(params.int8.exclude_nodes),
                                         file_name=VARIANT_FILES[variant])
                for extra in tmp.glob(f"{produced.name}*"):  # the graph and any external data
                    shutil.move(str(extra), work / extra.name)
                built[variant] = produced.name
        except Exception as e:  # onnxruntime's quantizer raises bare errors for graphs it cannot handle
            raise StageError(f"{self.name}-int8", f"{type(e).__name__}: {e}") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return built

    def usage(self, repo: str, task: str, artifacts: Mapping[str, Mapping[str, Any]],
              recommended: str | None) -> list[str]:
        """optimum's ORTModel class for the task, onnxruntime alone, transformers.js (encoder tasks); optimum's
        classes for generation and vision, which drive several steps or take pixels."""
        out: list[str] = []
        onnx = dict(artifacts)
        folder = self.package_folder
        kind = task_kind(task)
        if onnx and kind != TEXT:  # generation drives several steps, vision takes pixels: optimum's classes do it
            ort_class = ORT_CLASSES.get(task.removesuffix("-with-past"), "ORTModel")
            if kind == IMAGE:
                prep = ["from transformers import AutoImageProcessor", "",
                        f'processor = AutoImageProcessor.from_pretrained("{repo}")',
                        f'model = {ort_class}.from_pretrained("{repo}", subfolder="{folder}")',
                        'logits = model(**processor(images=[image], return_tensors="pt")).logits']
            else:
                prep = ["from transformers import AutoTokenizer", "",
                        f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
                        f'model = {ort_class}.from_pretrained("{repo}", subfolder="{folder}")',
                        'ids = model.generate(**tokenizer(["A man is eating food."], return_tensors="pt"), '
                        "max_new_tokens=20, do_sample=False)",
                        "print(tokenizer.batch_decode(ids, skip_special_tokens=True))"]
            out += ["With optimum (`pip install optimum[onnxruntime]`):", "", "```python",
                    f"from optimum.onnxruntime import {ort_class}", *prep, "```", ""]
        elif onnx:
            pick = recommended if recommended in onnx else next(iter(onnx))
            file = onnx[pick]["metadata"]["file"]
            ort_class = ORT_CLASSES.get(task, "ORTModel")
            out += ["With optimum (`pip install optimum[onnxruntime]`):", "", "```python",
                    f"from optimum.onnxruntime import {ort_class}", "from transformers import AutoTokenizer", "",
                    f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
                    f'model = {ort_class}.from_pretrained("{repo}", subfolder="{folder}", file_name="{file}")',
                    'outputs = model(**tokenizer(["A man is eating food."], return_tensors="pt"))', "```", "",
                    "With onnxruntime alone:", "", "```python", "import numpy as np, onnxruntime as ort",
                    "from huggingface_hub import hf_hub_download", "from tokenizers import Tokenizer", "",
                    f'session = ort.InferenceSession(hf_hub_download("{repo}", "{folder}/{file}"))',
                    f'tokenizer = Tokenizer.from_file(hf_hub_download("{repo}", "tokenizer.json"))',
                    'enc = tokenizer.encode("A man is eating food.")',
                    "feed = {'input_ids': np.array([enc.ids]), 'attention_mask': np.array([enc.attention_mask]),",
                    "        'token_type_ids': np.array([enc.type_ids])}",
                    "names = {i.name for i in session.get_inputs()}",
                    "outputs = session.run(None, {k: v for k, v in feed.items() if k in names})",
                    *(["(embedding,) = session.run(['sentence_embedding'], "
                       "{k: v for k, v in feed.items() if k in names})  # pooled (and normalized) in the graph"]
                      if POOLED_OUTPUT in onnx[pick]["metadata"].get("outputs", []) else []), "```", "",
                    "With transformers.js:", "", "```js", 'import { pipeline } from "@huggingface/transformers";',
                    # transformers.js has no sentence-similarity pipeline: optimum's synonym is feature-extraction
                    f'const pipe = await pipeline("{SYNONYMS.get(task, task)}", '
                    f'"{repo}"' + (', { dtype: "q8" }' if artifact_name("int8") in onnx else "")
                    + ");", 'const out = await pipe("A man is eating food.");', "```", ""]
        return out

    def card_section(self, artifacts: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Which CPUs each int8 file suits and computes exactly."""
        lines: list[str] = []
        int8 = {art: entry for art, entry in artifacts.items() if "numerics" in entry.get("metadata", {})}
        if int8:
            lines += ["### int8 files and CPUs", "",
                      "int8 numbers depend on the CPU's kernels: onnxruntime's U8S8 kernels (QInt8 weights) are exact "
                      "on "
                      "x86-64 with VNNI or AMX and on ARM64, and can saturate on x86-64 without VNNI; U8U8 (QUInt8 "
                      "weights) and 7-bit weights are exact everywhere.", "",
                      "| artifact | file | weights | meant for | exact on | gated with |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for art, entry in int8.items():
                meta = entry["metadata"]
                n = meta["numerics"]
                weights = n["weights"] + (" (7-bit)" if n.get("reduce_range") else "")
                lines.append(f"| `{art}` | `{entry['folder']}/{meta['file']}` | {weights} | {self.suits(entry)} | "
                             f"{n['exact_on']} | {n['gated_with']} |")
            lines.append("")
        return lines

    def suits(self, entry: Mapping[str, Any]) -> str:
        """A per-CPU int8 preset's CPUs; other int8 graphs by where their kernels are exact; the rest any CPU."""
        meta = entry.get("metadata", {})
        if "suits" in meta:
            return str(meta["suits"])
        numerics = meta.get("numerics")
        if numerics:
            return "any CPU" if numerics["exact_on"] == "every CPU" else "VNNI/AMX or ARM64"
        return "any CPU"

    def class_numerics(self, artifact: Artifact, cpu_class: str) -> ClassNumerics:
        """An int8 graph exact on every CPU (U8U8, 7-bit weights) computes one class's numbers as another's; a
        full-range QInt8 graph is gated with exact arithmetic (a VNNI CPU's, or onnxruntime's U8U8 path), and on a
        class without VNNI onnxruntime's default U8S8 kernels can saturate: not offered there."""
        numerics = artifact.metadata.get("numerics")
        if not numerics:
            return super().class_numerics(artifact, cpu_class)
        if "session_config" not in numerics:
            return ClassNumerics(how=f"this machine's own numbers ({numerics['kernels']}: exact on every CPU)")
        if cpu.CLASSES[cpu_class].exact_u8s8:
            return ClassNumerics(how="exact integer arithmetic, as this class computes U8S8")
        config = ",".join(f"{k}={v}" for k, v in cpu.CLASSES[cpu_class].ort_session_config.items())
        return ClassNumerics(how=f"exact integer arithmetic (onnxruntime's U8U8 path, {config})",
                             not_for="onnxruntime's default U8S8 kernels can saturate on x86-64 without VNNI (the "
                                     "figures are the exact path's)")

    def runner(self, stage_dir: Path, artifact: Artifact, threads: int | None = None) -> Runner:
        meta = artifact.metadata
        if "decoding" in meta:  # a generation task: greedy decoding, step by step with the graph's cache
            if "encoder" in meta:
                return onnx_generation.seq2seq_runner(stage_dir / meta["encoder"], stage_dir / meta["file"],
                                                      meta["decoder_start_token_id"], threads=threads)
            return onnx_generation.causal_lm_runner(stage_dir / meta["file"], threads=threads)
        exact = _honoured_session_config(meta)
        if exact and cpu.current()["exact_u8s8"]:  # this CPU computes U8S8 exactly: the same numbers, natively
            exact = None
        return ort_runner(stage_dir / meta["file"], threads=threads, session_config=exact)

    def ignored_settings(self, metadata: Mapping[str, Any]) -> list[str]:
        recorded = (metadata.get("numerics") or {}).get("session_config") if isinstance(metadata, Mapping) else None
        if recorded is None:
            return []
        if not isinstance(recorded, Mapping):
            return ["metadata.numerics.session_config is not a mapping: ignored"]
        return [f"metadata.numerics.session_config {str(k)[:60]!r}: {str(v)[:40]!r} is not a session option this "
                "project writes: ignored" for k, v in recorded.items() if EXACT_INT8_SESSION.get(k) != v]


def _honoured_session_config(metadata: Mapping[str, Any]) -> dict[str, str] | None:
    """The recorded session options this project writes (EXACT_INT8_SESSION); anything else is dropped:
    a downloaded manifest's metadata never reaches ``add_session_config_entry`` unchecked."""
    recorded = (metadata.get("numerics") or {}).get("session_config")
    if not isinstance(recorded, Mapping):
        return None
    return {k: v for k, v in recorded.items() if EXACT_INT8_SESSION.get(k) == v} or None


def int8_settings(variant: str, params: Int8Params) -> tuple[str, bool]:
    """(weight type, reduce_range) of an int8 variant: its preset's, or the recipe's for ``int8``."""
    if variant in INT8_PRESETS:
        return INT8_PRESETS[variant].weights, INT8_PRESETS[variant].reduce_range
    return params.weights, params.reduce_range


def prepare_int8_input(source: Path, folder: Path, config: Any, params: Int8Params) -> None:
    """``folder``/model.onnx (pre-processed if asked) and the config optimum's quantizer reads."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folder.mkdir(parents=True, exist_ok=True)
    if params.preprocess:
        # symbolic shape inference fails on optimum's BERT graphs; onnx shape inference suffices
        quant_pre_process(str(source), str(folder / ONNX_FILE), skip_symbolic_shape=True)
    else:
        shutil.copy2(source, folder / ONNX_FILE)
    config.save_pretrained(folder)


def quantize_int8(folder: Path, params: Int8Params, *, weights: str | None = None, reduce_range: bool | None = None,
                  nodes_to_quantize: list[str] | None = None, nodes_to_exclude: list[str] | None = None,
                  file_name: str = "model_quantized.onnx") -> Path:
    """Dynamic int8 quantization of ``folder``/model.onnx by optimum's ``ORTQuantizer``: uint8
    activations, ``weights`` (default ``params.weights``) symmetric, per channel if asked; writes
    ``file_name`` (``model_<suffix>.onnx``) there and returns its path.

    QUInt8 weights take optimum's ``avx2`` preset, QInt8 its ``avx512`` one (``reduce_range`` as
    given; with full range it equals the ``avx512_vnni`` and ``arm64`` presets). The one code path for
    every int8 variant and for benchmarks/int8_sensitivity.py, so the nodes that script picks behave
    the same in the build.
    """
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    weights = weights or params.weights
    reduce_range = params.reduce_range if reduce_range is None else reduce_range
    preset = AutoQuantizationConfig.avx2 if weights == "quint8" else AutoQuantizationConfig.avx512
    with onnx_common.quiet():
        quantizer = ORTQuantizer.from_pretrained(folder, file_name=ONNX_FILE)
        config = preset(is_static=False, per_channel=params.per_channel, reduce_range=reduce_range,
                        operators_to_quantize=list(params.operators), nodes_to_quantize=nodes_to_quantize,
                        nodes_to_exclude=nodes_to_exclude)
        quantizer.quantize(config, save_dir=folder,
                           file_suffix=file_name.removeprefix("model_").removesuffix(".onnx"))
    return folder / file_name


class _SelfContained:
    """The exported graph with its weights inside, for the variants' tools: optimum's ORTOptimizer drops a
    graph's ``model.onnx_data`` (it writes its own data file beside its output), and onnxruntime's
    quantization pre-processing looks for it in a temporary folder. The graph's own folder when it holds its
    weights; else a copy with them inside (protobuf allows one under 2 GB), made on first use: the variants
    are then built from the very graph a self-contained export gives. Making it holds the weights twice more
    (loaded, then serialized), so a large graph's variants cost memory its fp32 export no longer does."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.copy: Path | None = None

    def folder(self) -> Path:
        import onnx

        if self.copy is not None:
            return self.copy
        graph = onnx.load(str(self.work / ONNX_FILE), load_external_data=False).graph
        if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
            return self.work
        self.copy = self.work / "self-contained"
        self.copy.mkdir()
        onnx.save(onnx.load(str(self.work / ONNX_FILE)), str(self.copy / ONNX_FILE))  # loading clears the links
        return self.copy

    def remove(self) -> None:
        if self.copy is not None:
            shutil.rmtree(self.copy)
            self.copy = None


def _graph_files(folder: Path, file: str) -> list[str]:
    """A graph's file and its external data files (``model.onnx``, ``model.onnx_data``…)."""
    return sorted(p.name for p in folder.glob(f"{file}*"))


def ort_runner(path: Path, threads: int | None = None, session_config: Mapping[str, str] | None = None) -> Runner:
    """An onnxruntime session on CPU as a numpy-in, numpy-out callable.

    Inputs the graph does not take are ignored; integer inputs are cast to the graph's type.
    ``session_config`` entries are added to the session options (an int8 graph's exact-arithmetic setting).
    """
    session = onnx_generation.session(path, threads, session_config)
    types = {i.name: i.type for i in session.get_inputs()}
    output_names = [o.name for o in session.get_outputs()]
    dtypes = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}

    def run(inputs):  # type: ignore[no-untyped-def]
        feed = {k: np.asarray(v).astype(dtypes.get(types[k], None) or np.asarray(v).dtype, copy=False)
                for k, v in inputs.items() if k in types}
        return dict(zip(output_names, session.run(output_names, feed), strict=True))

    return run
