"""One harness that measures every artifact of a build, and eager PyTorch, with identical settings.

Fixed thread count (torch and onnxruntime alike) and warm-up, then N interleaved rounds: each round
runs every artifact once on every fixed shape and on one pass over the traffic texts at each
traffic batch size (see :mod:`pipeline.traffic`), the artifacts in a rotating order. Per artifact
and workload: the median with a bootstrap interval, p90, throughput, the extra peak memory the
artifact needed, its file size, and achieved GFLOP/s at fixed shapes. Only artifacts that passed
their parity gate are measured; the recommendation is :func:`pipeline.stats.decide` on the primary
shape (or the traffic passes): faster only when intervals separate, a tie to the more accurate
(from the parity report), then the smaller. This module measures; it does not build, gate or package.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import cpu, stats, traffic
from pipeline.atomic import write_bytes, write_json
from pipeline.batches import synthetic_batch
from pipeline.bench_settings import BenchSettings
from pipeline.errors import PipelineError, UnsupportedModelError
from pipeline.layout import BENCH_JSON, BENCH_PNG, STAGE_RECORD, BuildDir
from pipeline.loaded import LoadedSource
from pipeline.settings import ort_session_config
from pipeline.stages import Artifact, Stage, get_stage
from pipeline.tasks import TEXT, task_kind
from pipeline.versions import library_versions

__all__ = ["BENCH_JSON", "BENCH_PNG", "BenchSettings", "Measurement", "check_task", "encoder_flops", "recommend",
           "run"]
EAGER = "eager"
SDPA = "eager-sdpa"


@dataclass
class Measurement:
    artifact: str
    shape: list[int]
    p50_ms: float
    p90_ms: float
    throughput: float  # sequences per second at p50
    gflops: float  # achieved, from the model's FLOPs at this shape
    peak_extra_mb: float | None  # peak RSS above what the process held before loading the artifact
    file_mb: float
    ci_ms: list[float] | None = None  # bootstrap interval of the median (p50_ms)
    ci_rel_width: float | None = None  # its width / the median: the noise seen
    spread_rel: float | None = None  # (p90 - p10) / median of the single runs


@dataclass(frozen=True)
class Measured:
    """One artifact to time: the stage that runs it, the folder its files are in, and their size."""

    stage: str
    stage_dir: Path
    artifact: Artifact
    file_mb: float


def read_build(build_dir: Path) -> tuple[dict[str, dict[str, Any]], list[Measured]]:
    """Every artifact's parity report (parity.json: its gate result, and its accuracy for the tie-break)
    and the passing artifacts (stage records) of a finished build, for ``convert bench``; ``convert
    build`` hands :func:`run` what it already holds instead.

    Raises:
        PipelineError: ``build_dir`` has no parity.json.
    """
    paths = BuildDir(build_dir)
    if not paths.parity.is_file():
        raise PipelineError(f"{build_dir}: no parity.json: run `convert build` first")
    reports = json.loads(paths.parity.read_text())["artifacts"]
    measured = []
    for record_path in sorted(paths.stages.glob(f"*/{STAGE_RECORD}")):
        record = json.loads(record_path.read_text())
        for artifact_name, output in record["outputs"].items():
            if reports.get(artifact_name, {}).get("passed"):
                artifact = Artifact(name=artifact_name, files=tuple(output["files"]), metadata=output["metadata"],
                                    skips_padding=output.get("skips_padding", False))
                measured.append(Measured(record["stage"], record_path.parent, artifact,
                                         sum(f["size"] for f in output["files"].values()) / 1e6))
    return reports, measured


def encoder_flops(config: Any, batch: int, seq: int) -> float:
    """Forward FLOPs of a BERT-style encoder stack at ``batch`` x ``seq`` (2 per multiply-add):
    per layer and token, Q/K/V/output projections 4·h², feed-forward 2·h·i, attention scores and
    weighted sum 2·s·h. Embeddings, norms and softmax are left out (a few percent)."""
    h = getattr(config, "hidden_size", None) or config.dim
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    inner = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", 4 * h)
    macs_per_token = layers * (4 * h * h + 2 * h * inner + 2 * seq * h)
    return 2.0 * batch * seq * macs_per_token


def recommend(measurements: list[Measurement], passed: set[str], primary: tuple[int, int]) -> str | None:
    """The artifact with the lowest p50 at ``primary`` among those that passed their gate, noise or not
    (reported as ``lowest_median``; the recommendation is :func:`pipeline.stats.decide`'s)."""
    candidates = [m for m in measurements if m.artifact in passed and tuple(m.shape) == tuple(primary)]
    return min(candidates, key=lambda m: m.p50_ms).artifact if candidates else None


def _rss_mb(field: str) -> float | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to clear_refs), so VmHWM measures from now."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def bench_inputs(tokenizer: Any, settings: BenchSettings,
                 seed: int = 0) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """Random ordinary tokens at each shape; every row but the first has ``padding`` of it padded."""
    rng = np.random.default_rng(seed)
    names = set(tokenizer.model_input_names)
    return {(b, s): synthetic_batch(tokenizer, names, b, s, rng,
                                    lengths=[s] + [max(1, round(s * (1 - settings.padding)))] * (b - 1))
            for b, s in settings.shapes}


def check_task(model_type: str, task: str) -> None:
    """Refuse what this harness cannot time: it feeds token batches to one forward pass.

    Raises:
        UnsupportedModelError: a generation or image task.
    """
    if task_kind(task) != TEXT:  # generation and image inputs are not what this harness times yet
        raise UnsupportedModelError(f"bench: not supported for {model_type}/{task}: the benchmark times one forward "
                                    "pass over token batches (encoder tasks); the build and its parity gate do not "
                                    "need it (set bench.on_build: false)")


# Worst per-sample cosine error (1 - cosine) up to which an artifact counts as computing what eager
# does, up to fp32 rounding: relative RMS error ~4e-5. fp32 graphs measure ~1e-12, fp16 ~1e-7, int8 ~1e-3.
FP32_CLASS_COSINE_ERROR = 1e-9


def accuracy(report: Mapping[str, Any]) -> tuple[float, float]:
    """An artifact's accuracy from its parity report, for :class:`pipeline.stats.Candidate` (lower
    sorts first): ``(0, 0)`` for fp32-class numerics (all alike), ``(1, error)`` for lossy ones, where
    error is the worst 1 - cosine over its gated outputs and batches; ``(2, 0)`` when nothing says."""
    errors = [1 - o["min_cosine"] for b in report.get("batches", []) for o in b["outputs"]
              if o.get("gated", True) and o.get("min_cosine") is not None]
    if not errors:
        return (2.0, 0.0)
    worst = max(errors)
    return (0.0, 0.0) if worst <= FP32_CLASS_COSINE_ERROR else (1.0, float(f"{worst:.3g}"))


@dataclass
class _Loaded:
    run: Callable[[Mapping[str, np.ndarray]], object]
    file_mb: float
    peak_extra_mb: float | None


def _load(load: Callable[[], Callable[[Mapping[str, np.ndarray]], object]], file_mb: float,
          workloads: Mapping[str, list[dict[str, np.ndarray]]], warmup: int) -> _Loaded:
    """Load an artifact and warm it up on every workload, measuring the peak memory that took."""
    before = _rss_mb("VmRSS")
    can_peak = _reset_peak()
    runner = load()
    traffic.warm_up(runner, workloads, warmup)
    peak = _rss_mb("VmHWM") if can_peak else None
    extra = round(max(0.0, peak - before), 1) if peak is not None and before is not None else None
    return _Loaded(runner, round(file_mb, 2), extra)


def run(build_dir: Path, source: LoadedSource, settings: BenchSettings,
        on_event: Callable[[str, str], None] | None = None, fingerprint: str | None = None,
        held: tuple[dict[str, dict[str, Any]], list[Measured]] | None = None) -> dict[str, Any]:
    """Measure eager PyTorch (SDPA and plain attention) and every artifact of ``build_dir`` that
    passed its gate, interleaved; write ``bench.json`` and ``bench.png`` there and return the results.
    ``held``: every artifact's parity report (json) and the passing artifacts, when the caller has them
    (else read from ``build_dir``).

    Every artifact is loaded (and held) at once, so that rounds can interleave them.

    Raises:
        PipelineError: ``build_dir`` has no completed build (no parity.json or stage records).
        UnsupportedModelError: a generation or image task (the harness times encoder forward passes).
    """
    import torch

    emit = on_event or (lambda step, message: None)
    check_task(source.model_type, source.task)
    reports, held_artifacts = held if held is not None else read_build(build_dir)
    gates = {name: bool(report["passed"]) for name, report in reports.items()}
    passed = {name for name, ok in gates.items() if ok}
    # stage by stage (by name), artifacts by name: the order a build's records list them in
    to_time = sorted(held_artifacts, key=lambda m: (m.stage, m.artifact.name))
    torch.set_num_threads(settings.threads)
    batches = bench_inputs(source.tokenizer, settings)
    limit = min(getattr(source.config, "max_position_embeddings", None) or 512,
                getattr(source.tokenizer, "model_max_length", 512) or 512)
    sets = traffic.traffic_sets(source.tokenizer, settings.texts, settings.traffic_batches,
                                sort_by_length=settings.sort_by_length, max_length=limit) if settings.texts else []
    workloads: dict[str, list[dict[str, np.ndarray]]] = {_shape_key(shape): [inputs]
                                                         for shape, inputs in batches.items()}
    workloads.update({traffic.workload_key(t.size): list(t.batches) for t in sets})

    def flops(b: int, s: int) -> float:
        return encoder_flops(source.config, b, s)

    weights_mb = sum(p.stat().st_size for p in source.resolved.folder.glob("*.safetensors")) / 1e6
    libraries: set[str] = set()  # those of the targets measured, besides pipeline.versions.BASE
    loaded: dict[str, _Loaded] = {}
    attentions = [(SDPA, "sdpa"), (EAGER, "eager")]
    if not getattr(type(source.model), "_supports_sdpa", False):  # DeBERTa-v2, ELECTRA: loading with sdpa raises
        attentions.remove((SDPA, "sdpa"))
        emit("bench", f"{SDPA}: skipped ({type(source.model).__name__} has no SDPA attention in transformers)")
    for name, attention in attentions:
        emit("bench", f"loading {name}")
        loaded[name] = _load(lambda attention=attention: _eager_runner(source, attention), weights_mb, workloads,
                             settings.warmup)
    for m in to_time:
        if m.artifact.name not in passed:
            continue
        stage = get_stage(m.stage)
        libraries.update(stage.libraries)
        emit("bench", f"loading {m.artifact.name}")
        loaded[m.artifact.name] = _load(lambda s=stage, m=m: _runner(s, m.stage_dir, m.artifact, settings.threads),
                                        m.file_mb, workloads, settings.warmup)
    emit("bench", f"{settings.runs} interleaved rounds x {len(loaded)} artifacts x {len(workloads)} workloads "
                  f"({settings.threads} threads)")
    samples = traffic.interleaved({name: entry.run for name, entry in loaded.items()}, workloads, settings.runs)

    intervals: dict[str, stats.Interval] = {}
    spreads: dict[str, float] = {}

    def summary(name: str, key: str) -> tuple[stats.Interval, float, float]:
        times = samples[name][key]
        interval = stats.median_interval(times, confidence=settings.confidence, seed=settings.seed)
        intervals[f"{name} {key}"], spreads[f"{name} {key}"] = interval, stats.spread(times)
        return interval, float(np.percentile(times, 90)), spreads[f"{name} {key}"]

    results: list[Measurement] = []
    for name, entry in loaded.items():
        for shape in batches:
            interval, p90, spread = summary(name, _shape_key(shape))
            p50 = interval.median
            results.append(Measurement(
                artifact=name, shape=list(shape), p50_ms=round(p50, 3), p90_ms=round(p90, 3),
                throughput=round(shape[0] / (p50 / 1000), 2), gflops=round(flops(*shape) / (p50 / 1000) / 1e9, 2),
                peak_extra_mb=entry.peak_extra_mb, file_mb=entry.file_mb,
                ci_ms=[round(interval.low, 3), round(interval.high, 3)], ci_rel_width=round(interval.rel_width, 4),
                spread_rel=round(spread, 4)))
    traffic_rows = []
    for name in loaded:
        for t in sets:
            interval, p90, spread = summary(name, traffic.workload_key(t.size))
            traffic_rows.append({
                "artifact": name, "batch_size": t.size, "batches": len(t.batches),
                "pass_ms": round(interval.median, 3), "ci_ms": [round(interval.low, 3), round(interval.high, 3)],
                "ci_rel_width": round(interval.rel_width, 4), "spread_rel": round(spread, 4),
                "ms_per_batch": round(interval.median / len(t.batches), 3),
                "sentences_per_s": round(t.texts / (interval.median / 1000), 2)})
    primary = settings.shapes[0]
    basis_key = _shape_key(primary)
    basis = f"primary shape {primary[0]}x{primary[1]}"
    if settings.recommend_on == "traffic" and sets:
        basis_key = "traffic"
        basis = "one pass over the traffic texts at batch sizes " + ", ".join(str(t.size) for t in sets)
        for name in loaded:  # a round's traffic sample: its passes at every batch size, one after the other
            per_round = zip(*(samples[name][traffic.workload_key(t.size)] for t in sets), strict=True)
            samples[name]["traffic"] = [sum(parts) for parts in per_round]
    candidates = [stats.Candidate(name, tuple(samples[name][basis_key]), accuracy(reports[name]),
                                  loaded[name].file_mb) for name in loaded if name in passed]
    decision = stats.decide(candidates, confidence=settings.confidence, seed=settings.seed)
    eager = {tuple(m.shape): m.p50_ms for m in results if m.artifact == EAGER}
    eager_traffic = {r["batch_size"]: r["pass_ms"] for r in traffic_rows if r["artifact"] == EAGER}
    for row in traffic_rows:
        row["speedup_vs_eager"] = round(eager_traffic[row["batch_size"]] / row["pass_ms"], 3)
    shown = {k: v for k, v in asdict(settings).items() if k != "texts"}
    report = {
        "settings": {**shown, "texts": len(settings.texts),
                     "texts_sha256": hashlib.sha256("\n".join(settings.texts).encode()).hexdigest()},
        "primary_shape": list(primary),
        "recommended": decision.recommended,
        "decision": {"basis": basis, "rule": RULE.format(level=f"{settings.confidence:.0%}"),
                     "confidence": settings.confidence, "seed": settings.seed, "resamples": stats.RESAMPLES,
                     "lowest_median": recommend(results, passed, primary) if basis_key != "traffic"
                     else (decision.ranked[0].name if decision.ranked else None),
                     **decision.to_json()},
        "results": [{**asdict(m), "speedup_vs_eager": round(eager[tuple(m.shape)] / m.p50_ms, 3)}
                    for m in results],
        "traffic": {"source": settings.texts_source, "texts": len(settings.texts),
                    "sort_by_length": settings.sort_by_length, "sets": [t.describe() for t in sets],
                    "results": traffic_rows} if sets else None,
        "noise": {"rounds": settings.runs, "interleaved": True, **stats.noise(intervals, spreads)},
        "threads": settings.threads,
        "onnxruntime_session_config": ort_session_config(),  # idle spinning off unless the environment says so
        "gates": gates,
        "versions": library_versions(libraries),
        "cpu": cpu.current(),  # speed figures hold for this CPU only
        "fingerprint": fingerprint,  # what was measured (artifacts, settings), for reuse by the build
    }
    write_json(build_dir / BENCH_JSON, report)
    write_bytes(build_dir / BENCH_PNG, chart(report))
    return report


RULE = ("median of interleaved rounds with a seeded bootstrap {level} interval; an artifact is faster than another "
        "only when its interval lies wholly below the other's; of the artifacts no other is faster than, the most "
        "accurate (fp32-class numerics before lossy, then the smaller worst cosine error in the parity report), "
        "then the smallest file, then the first by name")


def _shape_key(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"


def _runner(stage: Stage[Any], stage_dir: Path, artifact: Artifact, threads: int) -> Callable[..., object]:
    """Every stage's runner takes ``threads`` (the Stage contract); a torch runner ignores it and runs
    with the process-wide ``torch.set_num_threads`` this harness set."""
    return stage.runner(stage_dir, artifact, threads=threads)


def _eager_runner(source: LoadedSource, attention: str) -> Callable[[Mapping[str, np.ndarray]], object]:
    import inspect

    import torch

    model = type(source.model).from_pretrained(source.resolved.folder, attn_implementation=attention,
                                               use_safetensors=True).eval()
    accepted = set(inspect.signature(model.forward).parameters)

    def run(inputs: Mapping[str, np.ndarray]) -> object:
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in inputs.items() if k in accepted})

    return run


def chart(report: dict[str, Any]) -> bytes:
    """A PNG bar chart of the median latency per artifact and shape, with its interval (for the model card)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = [tuple(s) for s in report["settings"]["shapes"]]
    names = list(dict.fromkeys(r["artifact"] for r in report["results"]))
    p50 = {(r["artifact"], tuple(r["shape"])): r["p50_ms"] for r in report["results"]}
    ci = {(r["artifact"], tuple(r["shape"])): r.get("ci_ms") or [r["p50_ms"]] * 2 for r in report["results"]}
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) * len(shapes) + 1.2), dpi=100)
    height = 0.8 / len(shapes)
    for i, shape in enumerate(shapes):
        ys = [j + i * height for j in range(len(names))]
        mid = [p50.get((n, shape), 0) for n in names]
        ends = [ci.get((n, shape), [0, 0]) for n in names]
        errors = [[max(0.0, m - lo) for m, (lo, _) in zip(mid, ends, strict=True)],
                  [max(0.0, hi - m) for m, (_, hi) in zip(mid, ends, strict=True)]]
        ax.barh(ys, mid, height=height, xerr=errors, capsize=2, label=f"B={shape[0]} S={shape[1]}")
    ax.set_yticks([j + height * (len(shapes) - 1) / 2 for j in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xlabel(f"median latency and its interval, ms ({report['settings']['threads']} threads)")
    ax.legend(loc="lower right")
    ax.set_title(f"recommended: {report['recommended']}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no timestamp: same bytes for same numbers
    plt.close(fig)
    return buf.getvalue()
