"""One harness that measures every artifact of a build, and eager PyTorch, with identical settings.

Fixed thread count (torch and onnxruntime alike), warm-up runs, then N timed runs per artifact and
shape: p50/p90 latency, throughput, the extra peak memory the artifact needed, its file size, and
achieved GFLOP/s from the model's FLOPs at that shape. Only artifacts that passed their parity gate
are measured; the recommended artifact is the fastest of those at the primary (first) shape.
This module measures; it does not build, gate or package.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import cpu
from pipeline.atomic import write_bytes, write_json
from pipeline.batches import synthetic_batch
from pipeline.bench_settings import BenchSettings
from pipeline.errors import PipelineError, UnsupportedModelError
from pipeline.layout import BENCH_JSON, BENCH_PNG, STAGE_RECORD, BuildDir
from pipeline.loaded import LoadedSource
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


@dataclass(frozen=True)
class Measured:
    """One artifact to time: the stage that runs it, the folder its files are in, and their size."""

    stage: str
    stage_dir: Path
    artifact: Artifact
    file_mb: float


def read_build(build_dir: Path) -> tuple[dict[str, bool], list[Measured]]:
    """Every artifact's gate result (parity.json) and the passing artifacts (stage records) of a finished
    build, for ``convert bench``; ``convert build`` hands :func:`run` what it already holds instead.

    Raises:
        PipelineError: ``build_dir`` has no parity.json.
    """
    paths = BuildDir(build_dir)
    if not paths.parity.is_file():
        raise PipelineError(f"{build_dir}: no parity.json: run `convert build` first")
    gates = {name: report["passed"] for name, report in json.loads(paths.parity.read_text())["artifacts"].items()}
    measured = []
    for record_path in sorted(paths.stages.glob(f"*/{STAGE_RECORD}")):
        record = json.loads(record_path.read_text())
        for artifact_name, output in record["outputs"].items():
            if gates.get(artifact_name):
                artifact = Artifact(name=artifact_name, files=tuple(output["files"]), metadata=output["metadata"],
                                    skips_padding=output.get("skips_padding", False))
                measured.append(Measured(record["stage"], record_path.parent, artifact,
                                         sum(f["size"] for f in output["files"].values()) / 1e6))
    return gates, measured


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
    """The fastest artifact (p50) at ``primary`` among those that passed their gate."""
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


def _time(run: Callable[[], object], settings: BenchSettings) -> list[float]:
    for _ in range(settings.warmup):
        run()
    times = []
    for _ in range(settings.runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def measure(name: str, load: Callable[[], Callable[[Mapping[str, np.ndarray]], object]],
            batches: Mapping[tuple[int, int], dict[str, np.ndarray]], settings: BenchSettings,
            flops: Callable[[int, int], float], file_mb: float) -> list[Measurement]:
    """Load an artifact (timed apart), then time it at every shape."""
    before = _rss_mb("VmRSS")
    can_peak = _reset_peak()
    run = load()
    out = []
    for shape, inputs in batches.items():
        times = _time(lambda inputs=inputs: run(inputs), settings)  # type: ignore[misc]
        p50 = statistics.median(times)
        p90 = float(np.percentile(times, 90))
        out.append(Measurement(artifact=name, shape=list(shape), p50_ms=round(p50, 3), p90_ms=round(p90, 3),
                               throughput=round(shape[0] / (p50 / 1000), 2),
                               gflops=round(flops(*shape) / (p50 / 1000) / 1e9, 2),
                               peak_extra_mb=None, file_mb=round(file_mb, 2)))
    peak = _rss_mb("VmHWM") if can_peak else None
    if peak is not None and before is not None:
        for m in out:
            m.peak_extra_mb = round(max(0.0, peak - before), 1)
    return out


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


def run(build_dir: Path, source: LoadedSource, settings: BenchSettings,
        on_event: Callable[[str, str], None] | None = None, fingerprint: str | None = None,
        held: tuple[dict[str, bool], list[Measured]] | None = None) -> dict[str, Any]:
    """Measure eager PyTorch (SDPA and plain attention) and every artifact of ``build_dir`` that
    passed its gate; write ``bench.json`` and ``bench.png`` there and return the results. ``held``: every
    artifact's gate result and the passing artifacts, when the caller has them (else read from ``build_dir``).

    Raises:
        PipelineError: ``build_dir`` has no completed build (no parity.json or stage records).
        UnsupportedModelError: a generation or image task (the harness times encoder forward passes).
    """
    import torch

    emit = on_event or (lambda step, message: None)
    check_task(source.model_type, source.task)
    gates, held_artifacts = held if held is not None else read_build(build_dir)
    passed = {name for name, ok in gates.items() if ok}
    # stage by stage (by name), artifacts by name: the order a build's records list them in
    to_time = sorted(held_artifacts, key=lambda m: (m.stage, m.artifact.name))
    torch.set_num_threads(settings.threads)
    batches = bench_inputs(source.tokenizer, settings)

    def flops(b: int, s: int) -> float:
        return encoder_flops(source.config, b, s)

    weights_mb = sum(p.stat().st_size for p in source.resolved.folder.glob("*.safetensors")) / 1e6
    results: list[Measurement] = []
    libraries: set[str] = set()  # those of the targets measured, besides pipeline.versions.BASE
    attentions = [(SDPA, "sdpa"), (EAGER, "eager")]
    if not getattr(type(source.model), "_supports_sdpa", False):  # DeBERTa-v2, ELECTRA: loading with sdpa raises
        attentions.remove((SDPA, "sdpa"))
        emit("bench", f"{SDPA}: skipped ({type(source.model).__name__} has no SDPA attention in transformers)")
    for name, attention in attentions:
        emit("bench", f"{name} ({settings.runs} runs x {len(batches)} shapes, {settings.threads} threads)")
        results += measure(name, lambda attention=attention: _eager_runner(source, attention), batches, settings,
                           flops, weights_mb)
    for m in to_time:
        if m.artifact.name not in passed:
            continue
        stage = get_stage(m.stage)
        libraries.update(stage.libraries)
        emit("bench", m.artifact.name)
        results += measure(m.artifact.name, lambda s=stage, m=m: _runner(s, m.stage_dir, m.artifact, settings.threads),
                           batches, settings, flops, m.file_mb)
    primary = settings.shapes[0]
    eager = {tuple(m.shape): m.p50_ms for m in results if m.artifact == EAGER}
    report = {
        "settings": asdict(settings),
        "primary_shape": list(primary),
        "recommended": recommend(results, passed, primary),
        "results": [{**asdict(m), "speedup_vs_eager": round(eager[tuple(m.shape)] / m.p50_ms, 3)}
                    for m in results],
        "gates": gates,
        "versions": library_versions(libraries),
        "cpu": cpu.current(),  # speed figures hold for this CPU only
        "fingerprint": fingerprint,  # what was measured (artifacts, settings), for reuse by the build
    }
    write_json(build_dir / BENCH_JSON, report)
    write_bytes(build_dir / BENCH_PNG, chart(report))
    return report


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
    """A PNG bar chart of p50 latency per artifact and shape (for the model card)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = [tuple(s) for s in report["settings"]["shapes"]]
    names = list(dict.fromkeys(r["artifact"] for r in report["results"]))
    p50 = {(r["artifact"], tuple(r["shape"])): r["p50_ms"] for r in report["results"]}
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) * len(shapes) + 1.2), dpi=100)
    height = 0.8 / len(shapes)
    for i, shape in enumerate(shapes):
        ys = [j + i * height for j in range(len(names))]
        ax.barh(ys, [p50.get((n, shape), 0) for n in names], height=height, label=f"B={shape[0]} S={shape[1]}")
    ax.set_yticks([j + height * (len(shapes) - 1) / 2 for j in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xlabel(f"p50 latency, ms ({report['settings']['threads']} threads)")
    ax.legend(loc="lower right")
    ax.set_title(f"recommended: {report['recommended']}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no timestamp: same bytes for same numbers
    plt.close(fig)
    return buf.getvalue()
