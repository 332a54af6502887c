"""OpenVINO target: OpenVINO IR made from an ONNX export of the loaded model, plus NNCF int8 variants.

The IR comes from the ONNX graph (:func:`pipeline.stages.onnx_common.export`, the ONNX target's own
export code, pooled ``sentence_embedding`` included) converted by ``openvino.convert_model`` and saved
by ``openvino.save_model(..., compress_to_fp16=False)``: measured exact (max |Δ| 3e-7 on
all-MiniLM-L6-v2), where the default fp16 weight compression failed a 1e-4 gate. The variants the
recipe lists, each its own artifact, gated and measured like any other:

- ``fp32`` (``openvino_model.xml``/``.bin``): the converted graph, fp32 weights;
- ``int8-weights`` (``openvino_model_int8_weights.xml``): NNCF ``compress_weights``, 8-bit INT8_ASYM
  weights, activations in fp32 (4x smaller, fp32 speed);
- ``int8`` (``openvino_model_qint8_quantized.xml``, sentence-transformers' name for it): NNCF static
  ``quantize`` (``model_type=TRANSFORMER``, SmoothQuant alpha, nodes kept in fp32 by name), calibrated
  on the recipe's validation texts or a calibration file. Fast only where the CPU has VNNI or AMX.

Every file name matches sentence-transformers' ``openvino*.xml`` pattern and optimum-intel's
``OVModelFor*`` (``subfolder="openvino", file_name=...``). No openvino_config.json is written: optimum-intel
does not need one to load an IR (its own ``save_pretrained`` writes one holding an absolute local path).

The runner compiles for CPU with explicit threads, ``PERFORMANCE_HINT: LATENCY`` and
``INFERENCE_PRECISION_HINT: f32`` (a bf16-capable CPU would otherwise compute in bf16 and change
parity); the properties the build compiled with, and its CPU, are in each artifact's metadata.

OpenVINO's converter and NNCF send usage telemetry unless the user opted out or the process runs in CI
(openvino-telemetry; importing nncf also writes a client id under ~/intel): every call here runs
inside :func:`_offline`, which declares CI for its duration, so a build sends nothing and writes nothing
outside its folder.

openvino and nncf come from the optional ``openvino`` extra; they are imported inside functions, and a
recipe asking for this target without them is refused before anything is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from pipeline import cpu, settings, untrusted
from pipeline.errors import RecipeError, StageError, UnsupportedModelError
from pipeline.gate import lossy_gate
from pipeline.paths import UnsafePath, inside
from pipeline.pooling import OUTPUT as POOLED_OUTPUT
from pipeline.stages import onnx_common
from pipeline.stages.base import (
    Artifact,
    ClassNumerics,
    Gate,
    RecipeView,
    Runner,
    Stage,
    StageContext,
    StageParams,
    VariantParams,
    register_stage,
)
from pipeline.steps import Step
from pipeline.tasks import TEXT_TASKS, base_task, one_forward

Variant = Literal["fp32", "int8-weights", "int8"]
# the IR of each variant (its weights: the same name, .bin); sentence-transformers finds "openvino*.xml"
VARIANT_FILES: dict[str, str] = {"fp32": "openvino_model.xml", "int8-weights": "openvino_model_int8_weights.xml",
                                 "int8": "openvino_model_qint8_quantized.xml"}
LOSSY = frozenset({"int8-weights", "int8"})
OPSET = 18  # of the intermediate ONNX graph (OpenVINO's ONNX frontend reads it)
DEVICE = "CPU"
# compiled with these on every CPU, plus INFERENCE_NUM_THREADS: f32 so a bf16-capable CPU does not change parity
COMPILE_HINTS = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
# the compiled model's properties the manifest records (what shapes its numbers and speed)
RECORDED_PROPERTIES = ("INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT", "EXECUTION_MODE_HINT",
                       "NUM_STREAMS", "ENABLE_HYPER_THREADING", "ENABLE_CPU_PINNING", "CPU_DENORMALS_OPTIMIZATION",
                       "DYNAMIC_QUANTIZATION_GROUP_SIZE", "RUNTIME_REQUIREMENTS")
MAX_CALIBRATION_BYTES = 16 << 20
# optimum-intel's class per task (model card usage; the tests load packages with them)
OV_CLASSES = {
    "feature-extraction": "OVModelForFeatureExtraction",
    "sentence-similarity": "OVModelForFeatureExtraction",
    "text-classification": "OVModelForSequenceClassification",
    "token-classification": "OVModelForTokenClassification",
    "question-answering": "OVModelForQuestionAnswering",
    "fill-mask": "OVModelForMaskedLM",
}
SUITS = {
    "fp32": "any x86-64 or ARM64 CPU: the exact one",
    "int8-weights": "any CPU where size matters: 8-bit weights, fp32 compute (about fp32 speed, 4x smaller)",
    "int8": "x86-64 with VNNI or AMX (AVX512_VNNI, AVX_VNNI, AMX): static int8; on AVX2-only CPUs oneDNN's int8 "
            "kernels measured slower than eager PyTorch",
}


class Int8Params(StageParams):
    """The static ``int8`` variant's NNCF settings."""

    smooth_quant_alpha: float = Field(default=0.8, ge=0, le=1, description="SmoothQuant alpha for MatMuls "
                                      "(NNCF's AdvancedSmoothQuantParameters.matmul): how much of the activations' "
                                      "outliers moves into the weights; 0 turns SmoothQuant off")
    ignored_nodes: list[str] = Field(default=[], description="node names kept in fp32 (NNCF's IgnoredScope names; "
                                     "the IR's names are the ONNX graph's, e.g. /encoder/layer.0/output/dense/MatMul)")
    calibration_file: str | None = Field(default=None, min_length=1, description="calibration texts, one a line: a "
                                         "UTF-8 file inside the recipe's folder (default: validation.texts)")

    @field_validator("calibration_file")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (PurePath(value).is_absolute() or PureWindowsPath(value).is_absolute()):
            raise ValueError(f"must be a path relative to the recipe's folder (got the absolute path {value!r})")
        return value


class OpenVinoParams(VariantParams):
    variants: list[Variant] = Field(default=["fp32"], min_length=1, description="IRs to build and gate: fp32, "
                                    "int8-weights (NNCF 8-bit weight compression), int8 (NNCF static quantization)")
    optional: list[Variant] = Field(default=[], description="variants whose failed gate is reported but does not "
                                    "fail the build (they are then not packaged)")
    int8: Int8Params = Field(default_factory=Int8Params)


def artifact_name(variant: str) -> str:
    return "openvino" if variant == "fp32" else f"openvino-{variant}"


@register_stage("openvino")
class OpenVinoExport(Stage[OpenVinoParams]):
    params_model = OpenVinoParams
    version = 2  # 2: generated node names numbered by graph position, not by the process-wide counter
    description = "OpenVINO IR converted from the ONNX export, NNCF int8 variants, run with openvino on CPU"
    package_folder = "openvino"  # where optimum-intel (subfolder="openvino") and sentence-transformers look
    # the ONNX export shapes the IR as much as openvino's converter and NNCF do
    libraries = ("optimum", "optimum-onnx", "onnx", "openvino", "nncf")
    library_name = "openvino"
    card_tags = ("openvino",)
    extra, extra_modules = "openvino", ("openvino", "nncf")
    sentence_transformers_backend: ClassVar[str] = "openvino"

    def artifact_names(self, params: OpenVinoParams) -> list[str]:
        return [artifact_name(v) for v in params.variants]

    def gate_for(self, artifact: str, task: str) -> Gate:
        """fp32 elementwise; the int8 variants in task terms (:func:`pipeline.gate.lossy_gate`), as ONNX int8."""
        variant = artifact.removeprefix(f"{self.name}-") if artifact != self.name else "fp32"
        return lossy_gate(task) if variant in LOSSY else self.default_gate

    def class_numerics(self, artifact: Artifact, cpu_class: str) -> ClassNumerics:
        """A lossy IR's numbers follow oneDNN's kernels, which follow the CPU's instructions: another class's are
        computed in a child process under ``ONEDNN_MAX_CPU_ISA``. The fp32 IR is gated elementwise here (its
        kernels' rounding differs by class far under the gate)."""
        if artifact.metadata.get("variant") not in LOSSY:
            return super().class_numerics(artifact, cpu_class)
        env = cpu.emulation_env(cpu_class)
        if not env:
            return ClassNumerics(how="natively (this machine's class)")
        return ClassNumerics(how=f"ONEDNN_MAX_CPU_ISA={env[settings.ONEDNN_ISA_ENV]} in a child process", env=env)

    def check(self, params: OpenVinoParams, config: Mapping[str, Any], task: str) -> None:
        if config.get("is_encoder_decoder") or not one_forward(task):
            raise UnsupportedModelError(
                f"targets.openvino: task {task!r} ({config.get('model_type', '?')}) is not supported: the openvino "
                f"target builds text models' single forward pass ({', '.join(TEXT_TASKS)}); use the onnx target")

    def fingerprint_inputs(self, params: OpenVinoParams, recipe: RecipeView) -> dict[str, Any]:
        """The calibration texts' digest when the static int8 variant is built (editing them re-quantizes)."""
        if "int8" not in params.variants:
            return {}
        return {"calibration": _digest(calibration_texts(params, recipe))}

    def run(self, ctx: StageContext, params: OpenVinoParams) -> list[Artifact]:
        ov, _ = _import(nncf=bool(LOSSY & set(params.variants)))  # nncf takes seconds to import: only if used
        work, parts = ctx.workdir, ctx.parts
        self.check(params, ctx.source.config.to_dict(), ctx.source.task)
        pooling = ctx.source.pooling.to_json() if ctx.source.pooling is not None else None
        # each IR is a part of its own (ctx.parts): a variant's key is its settings and the fp32 IR's key
        ir_key = Step("openvino-ir", version=self.version,
                      params={"opset": OPSET, "task": ctx.source.task, "pooling": pooling},
                      inputs={"source": ctx.source.resolved.fingerprint}, libraries=self.libraries).key()
        if parts.take("fp32", ir_key) is None:
            self._convert(ctx)
            parts.made("fp32", ir_key, _ir_files(VARIANT_FILES["fp32"]))
        base = work / VARIANT_FILES["fp32"]
        if "int8-weights" in params.variants:
            key = Step("openvino-variant", version=self.version, params={"variant": "int8-weights",
                                                                         "mode": "INT8_ASYM"},
                       inputs={"ir": ir_key}, libraries=self.libraries).key()
            if parts.take("int8-weights", key) is None:
                self._compress_weights(base, work / VARIANT_FILES["int8-weights"])
                parts.made("int8-weights", key, _ir_files(VARIANT_FILES["int8-weights"]))
        if "int8" in params.variants:
            texts = calibration_texts(params, ctx.recipe)
            key = Step("openvino-variant", version=self.version,
                       params={"variant": "int8", "settings": params.int8.model_dump(mode="json")},
                       inputs={"ir": ir_key, "calibration": _digest(texts)}, libraries=self.libraries).key()
            if parts.take("int8", key) is None:
                self._quantize(ctx, base, work / VARIANT_FILES["int8"], texts, params.int8)
                parts.made("int8", key, _ir_files(VARIANT_FILES["int8"]))
        if "fp32" not in params.variants:  # the base of the others, not an artifact itself
            for name in _ir_files(VARIANT_FILES["fp32"]):
                (work / name).unlink()
        threads = settings.threads() or os.cpu_count() or 1
        artifacts = []
        for variant in params.variants:
            xml = VARIANT_FILES[variant]
            weights = _weights(xml)
            model = ov.Core().read_model(str(work / xml), str(work / weights))
            metadata: dict[str, Any] = {
                "file": xml, "weights": weights, "variant": variant,
                "inputs": [i.get_any_name() for i in model.inputs],
                "outputs": [o.get_any_name() for o in model.outputs],
                "device": DEVICE, "compile": compile_config(threads),
                # what the build compiled and gated with, on which CPU (a bf16 or VNNI host computes otherwise)
                "compiled": compiled_properties(work / xml, threads), "compiled_on": cpu.numerics_record(),
                "suits": SUITS[variant],
            }
            if variant == "int8-weights":
                metadata["compression"] = {"tool": "nncf.compress_weights", "mode": "INT8_ASYM"}
            if variant == "int8":
                metadata["quantization"] = {"tool": "nncf.quantize", "model_type": "TRANSFORMER",
                                            **params.int8.model_dump(mode="json")}
            if ctx.source.pooling is not None:  # how the sentence_embedding output pools, and who said so
                metadata[POOLED_OUTPUT] = ctx.source.pooling.to_json()
            artifacts.append(Artifact(name=artifact_name(variant), files=tuple(_ir_files(xml)),
                                      optional=variant in params.optional, metadata=metadata))
        return artifacts

    def _convert(self, ctx: StageContext) -> None:
        """The ONNX export, converted to IR and saved with fp32 weights; the ONNX files are removed."""
        ov, _ = _import()
        onnx_dir = ctx.workdir / "onnx-export"
        onnx_dir.mkdir()
        onnx_common.export(self.name, ctx.source, onnx_dir, OPSET)
        try:
            with _offline():
                model = ov.convert_model(str(onnx_dir / onnx_common.ONNX_FILE))
                _save(ov, model, ctx.workdir / VARIANT_FILES["fp32"])
        except Exception as e:  # openvino raises its own bare errors for graphs it cannot convert
            raise StageError(self.name, f"openvino.convert_model failed: {type(e).__name__}: {_first(e)}") from e
        finally:
            for produced in onnx_dir.iterdir():
                produced.unlink()
            onnx_dir.rmdir()

    def _compress_weights(self, base: Path, target: Path) -> None:
        ov, nncf = _import()
        try:
            with _offline():
                model = nncf.compress_weights(ov.Core().read_model(str(base)), mode=nncf.CompressWeightsMode.INT8_ASYM)
                _save(ov, model, target)
        except Exception as e:  # NNCF raises bare errors for graphs it cannot handle
            raise StageError(artifact_name("int8-weights"), f"nncf.compress_weights failed: {type(e).__name__}: "
                                                            f"{_first(e)}") from e

    def _quantize(self, ctx: StageContext, base: Path, target: Path, texts: Sequence[str], params: Int8Params) -> None:
        """NNCF static int8 calibrated on ``texts``, one text per sample (no padding), as the model sees them."""
        ov, nncf = _import()
        model = ov.Core().read_model(str(base))
        names = {i.get_any_name() for i in model.inputs}
        samples = [{k: np.asarray(v, dtype=np.int64) for k, v in
                    ctx.source.tokenizer([text], return_tensors="np", truncation=True).items() if k in names}
                   for text in texts]
        ignored = nncf.IgnoredScope(names=list(params.ignored_nodes), validate=True) if params.ignored_nodes else None
        advanced = nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=params.smooth_quant_alpha or -1))
        try:
            with _offline():
                quantized = nncf.quantize(model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                                          subset_size=len(samples), ignored_scope=ignored,
                                          advanced_parameters=advanced)
                _save(ov, quantized, target)
        except Exception as e:  # NNCF raises bare errors (an ignored node not in the graph among them)
            raise StageError(artifact_name("int8"), f"nncf.quantize failed: {type(e).__name__}: {_first(e)}") from e

    def runner(self, stage_dir: Path, artifact: Artifact, threads: int | None = None) -> Runner:
        meta = artifact.metadata
        compiled = _compile(stage_dir / meta["file"], stage_dir / meta["weights"],
                            threads or settings.threads() or os.cpu_count() or 1)
        inputs = [i.get_any_name() for i in compiled.inputs]
        outputs = [o.get_any_name() for o in compiled.outputs]
        request = compiled.create_infer_request()

        def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            ids = np.asarray(feed["input_ids"])
            defaults = {"attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            values = {n: np.ascontiguousarray(feed[n] if n in feed else defaults[n], dtype=np.int64) for n in inputs}
            result = request.infer(values)
            # copies: the request reuses its output buffers on the next call
            return {n: np.array(result[compiled.output(n)], dtype=np.float32) for n in outputs}

        return run

    def usage(self, repo: str, task: str, artifacts: Mapping[str, Mapping[str, Any]],
              recommended: str | None) -> list[str]:
        """optimum-intel's OVModel class for the task, and openvino alone."""
        if not artifacts:
            return []
        pick = recommended if recommended in artifacts else next(iter(artifacts))
        file = artifacts[pick]["metadata"]["file"]
        folder = self.package_folder
        ov_class = OV_CLASSES.get(base_task(task), "OVModelForFeatureExtraction")
        hints = "{" + ", ".join(f'"{k}": "{v}"' for k, v in COMPILE_HINTS.items()) + "}"
        pooled = POOLED_OUTPUT in artifacts[pick]["metadata"].get("outputs", [])
        return ["With optimum-intel (`pip install optimum-intel[openvino]`), the OpenVINO IR "
                f"({', '.join(f'`{folder}/' + a['metadata']['file'] + '`' for a in artifacts.values())}):", "",
                "```python", f"from optimum.intel import {ov_class}", "from transformers import AutoTokenizer", "",
                f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
                f'model = {ov_class}.from_pretrained("{repo}", subfolder="{folder}", file_name="{file}",',
                f"    ov_config={hints})  # f32: the numbers the parity gate checked",
                'outputs = model(**tokenizer(["A man is eating food."], return_tensors="pt"))', "```", "",
                "With openvino alone:", "", "```python", "import numpy as np, openvino as ov",
                "from huggingface_hub import hf_hub_download", "from tokenizers import Tokenizer", "",
                f'xml = hf_hub_download("{repo}", "{folder}/{file}")',
                f'hf_hub_download("{repo}", "{folder}/{file.removesuffix(".xml")}.bin")  # next to it',
                f'model = ov.Core().compile_model(xml, "CPU", {{"INFERENCE_NUM_THREADS": 2, '
                f'{hints[1:-1]}}})',
                f'tokenizer = Tokenizer.from_file(hf_hub_download("{repo}", "tokenizer.json"))',
                'enc = tokenizer.encode("A man is eating food.")',
                "feed = {'input_ids': [enc.ids], 'attention_mask': [enc.attention_mask], "
                "'token_type_ids': [enc.type_ids]}",
                "result = model({i.get_any_name(): np.array(feed[i.get_any_name()]) for i in model.inputs})",
                *(["embedding = result['sentence_embedding']  # pooled (and normalized) in the graph"] if pooled
                  else ["outputs = {o.get_any_name(): result[o] for o in model.outputs}"]), "```", ""]

    def card_section(self, artifacts: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Which OpenVINO file suits which CPU, and how they were compiled and gated."""
        if not artifacts:
            return []
        lines = ["### OpenVINO files and CPUs", "",
                 "Compiled for CPU with `INFERENCE_PRECISION_HINT: f32` (a bf16-capable CPU would otherwise compute "
                 "in bf16), `PERFORMANCE_HINT: LATENCY` and explicit threads; static int8 is fast only where the CPU "
                 "has VNNI or AMX (on an AVX2-only CPU it measured slower than eager PyTorch), 8-bit weights keep "
                 "fp32 speed at a quarter of the size.", "",
                 "| artifact | files | meant for |", "| --- | --- | --- |"]
        for art, entry in artifacts.items():
            meta = entry["metadata"]
            lines.append(f"| `{art}` | {', '.join(f'`{f}`' for f in entry['files'])} | "
                         f"{meta.get('suits', SUITS.get(meta.get('variant', ''), ''))} |")
        return [*lines, ""]


def compile_config(threads: int) -> dict[str, Any]:
    """What every compile of an OpenVINO artifact passes (the build, the gate, the benchmark, verify)."""
    return {"INFERENCE_NUM_THREADS": int(threads), **COMPILE_HINTS}


def compiled_properties(xml: Path, threads: int) -> dict[str, str]:
    """The properties of ``xml`` compiled as the runner compiles it, as strings (for the manifest)."""
    compiled = _compile(xml, xml.with_name(_weights(xml.name)), threads)
    out = {}
    for name in RECORDED_PROPERTIES:
        try:
            out[name] = str(compiled.get_property(name))
        except RuntimeError:  # a property this openvino version does not report
            continue
    return out


def calibration_texts(params: OpenVinoParams, recipe: RecipeView) -> tuple[str, ...]:
    """The texts the static int8 variant calibrates on: ``int8.calibration_file`` (one text a line, blank
    lines skipped; a file inside the recipe's folder, links out refused) or ``validation.texts``.

    Raises:
        RecipeError: the file is outside the recipe's folder, missing, too large, not UTF-8 or empty.
    """
    name = params.int8.calibration_file
    if name is None:
        return tuple(recipe.validation.texts)
    loc = ("targets", "openvino", "int8", "calibration_file")
    try:
        path = inside(recipe.folder, name, what="calibration_file", kind="file")
        text = untrusted.read_text(path, MAX_CALIBRATION_BYTES)
    except untrusted.Refused as e:
        reason = f"is larger than {MAX_CALIBRATION_BYTES} bytes" if e.kind == "size" else e.reason
        raise RecipeError([recipe.problem(loc, f"{name!r} {reason}")]) from None
    except UnsafePath as e:
        raise RecipeError([recipe.problem(loc, f"{name!r} {e.reason} (a file inside the recipe's folder "
                                               f"{recipe.folder}, one text a line)")]) from None
    except UnicodeDecodeError as e:
        raise RecipeError([recipe.problem(loc, f"{name!r} is not UTF-8 text (byte {e.start})")]) from None
    except OSError as e:
        raise RecipeError([recipe.problem(loc, f"{name!r}: cannot read: {e.strerror}")]) from None
    texts = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not texts:
        raise RecipeError([recipe.problem(loc, f"{name!r} holds no text (one text a line)")])
    return texts


def _compile(xml: Path, weights: Path, threads: int) -> Any:
    ov, _ = _import(nncf=False)
    core = ov.Core()
    return core.compile_model(core.read_model(str(xml), str(weights)), DEVICE, compile_config(threads))


def _import(nncf: bool = True) -> tuple[Any, Any]:
    """openvino (and nncf), or a one-line error naming the extra (a runner on a machine without it)."""
    try:
        with _offline():
            import openvino

            nncf_module = None
            if nncf:
                import nncf as nncf_module
    except ImportError as e:
        raise StageError("openvino", f"{e.name or e} is not installed: pip install 'pipeline-convert[openvino]'") \
            from None
    return openvino, nncf_module


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """No telemetry, no progress bars. openvino-telemetry (behind ``openvino.convert_model`` and NNCF) sends
    usage events unless a consent file in the user's home says no, or the process runs in CI; NNCF also
    writes a client id under ~/intel at import. Declaring CI while our calls run keeps a build off the
    network and out of the home folder without touching either. NNCF draws rich progress bars on stdout
    (where ``convert build --json`` writes its result) and logs at INFO: both silenced."""
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        nncf_logger.setLevel(level)
        if saved is None:
            del os.environ["CI"]
        else:
            os.environ["CI"] = saved


# a name OpenVINO or NNCF made up for a node the graph left unnamed: its type (or origin) and a number drawn
# from a counter of every node the process has created so far (``Constant_141``, ``Constant_141_1``)
GENERATED_NAME = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:_\d+)+")


def _save(ov: Any, model: Any, path: Path) -> None:
    """``openvino.save_model`` with fp32 weights (the default compresses them to fp16: not exact) and the
    same bytes in every process: nodes the graph left unnamed get names numbered by their place in the
    graph, in place of the process-wide counter's (a conversion after other models were built in the
    same process, as in a test run, wrote other names). Names the ONNX graph gave (``/encoder/…``, what
    ``int8.ignored_nodes`` refers to) are kept."""
    for index, op in enumerate(model.get_ordered_ops()):
        generated = GENERATED_NAME.fullmatch(op.get_friendly_name())
        if generated:
            op.set_friendly_name(f"{generated.group(1)}_{index}")
    ov.save_model(model, str(path), compress_to_fp16=False)


def _weights(xml: str) -> str:
    """The weights file of an IR (``openvino_model.xml`` -> ``openvino_model.bin``)."""
    return xml.removesuffix(".xml") + ".bin"


def _ir_files(xml: str) -> list[str]:
    """An IR's files: its weights (.bin) and its graph (.xml)."""
    return sorted([xml, _weights(xml)])


def _digest(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode("utf-8")).hexdigest()


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]
