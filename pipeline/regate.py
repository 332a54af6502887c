"""Per CPU class gates: an artifact's gate re-run as each CPU class (pipeline/cpu.py) computes it.

A lossy artifact's numbers depend on the consumer's CPU (oneDNN's int8 kernels on AVX2 are not VNNI's), so
the build gates it once per class the recipe names (``validation.cpu_classes``). How to compute as a class
is the stage's to say (:meth:`pipeline.stages.Stage.class_numerics`): where this process's own figures
stand for the class, they are taken; where an environment is needed (``ONEDNN_MAX_CPU_ISA``, read when
OpenVINO's plugin loads), a child process (``python -m pipeline.regate``) runs the artifact's runner on the
golden batches under it and compares, with the same code as the build's gate. A class the artifact fails on,
or one it is not meant for, is recorded as not offered. This module gates; it packages nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline import parity
from pipeline.errors import StageError
from pipeline.gate import Gate
from pipeline.stages import Artifact, ClassNumerics, Stage, get_stage, registered_stages

TIMEOUT_S = 1800.0  # one child re-gates every lossy artifact of a stage: minutes for a large model
MAX_FAILURES = 5  # per class in the record (the child's full report is not kept)


def figures(report: parity.ArtifactParity, gate: Gate) -> dict[str, Any]:
    """The gate's own metric (pooled cosine, cosine, argmax agreement or max |Δ|) per batch, and its worst over
    the gated batches: what the card's per-class table shows."""
    metric, pick = next(((m, p) for m, p, set_ in (
        ("min_pooled_cosine", min, gate.min_pooled_cosine), ("min_cosine", min, gate.min_cosine),
        ("argmax_agreement", min, gate.min_argmax_agreement)) if set_ is not None), ("max_abs", max))
    by_batch: dict[str, float] = {}
    gated: list[float] = []
    for batch in report.batches:
        values = [getattr(o, metric) for o in batch.outputs if getattr(o, metric) is not None]
        if values:
            by_batch[batch.batch] = float(pick(values))
            gated += [getattr(o, metric) for o in batch.outputs if o.gated and getattr(o, metric) is not None]
    return {"metric": metric, "worst": float(pick(gated)) if gated else None, "by_batch": by_batch}


def record(report: parity.ArtifactParity, gate: Gate, numerics: ClassNumerics) -> dict[str, Any]:
    """One class's entry: how it was computed, its figures, whether it passed and whether it is offered."""
    return {"how": numerics.how, "passed": report.passed, "offered": report.passed and numerics.not_for is None,
            "not_for": numerics.not_for, **figures(report, gate), "failures": report.failures[:MAX_FAILURES]}


def cpu_classes(stage: Stage[Any], stage_dir: Path, items: Sequence[tuple[Artifact, Gate, parity.ArtifactParity]],
                classes: Sequence[str], golden: tuple[Path, Path], batches: Sequence[str],
                threads: int | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``{artifact: {class: record}}`` for every artifact of ``stage`` in ``items`` (with its gate and this
    process's report) and every class in ``classes``; one child process per class that needs one.

    Raises:
        StageError: a child process could not re-gate (it crashed, or timed out).
    """
    out: dict[str, dict[str, dict[str, Any]]] = {a.name: {} for a, _, _ in items}
    for cpu_class in classes:
        by_env: dict[tuple[tuple[str, str], ...], list[tuple[Artifact, Gate, ClassNumerics]]] = {}
        for artifact, gate, native in items:
            numerics = stage.class_numerics(artifact, cpu_class)
            if numerics.env:  # one child process per distinct environment
                by_env.setdefault(tuple(sorted(numerics.env.items())), []).append((artifact, gate, numerics))
            else:
                out[artifact.name][cpu_class] = record(native, gate, numerics)
        for env, group in sorted(by_env.items()):
            reports = run_child(stage, stage_dir, [(a, g) for a, g, _ in group], golden, batches, dict(env),
                                threads, cpu_class)
            for (artifact, gate, numerics), report in zip(group, reports, strict=True):
                out[artifact.name][cpu_class] = record(report, gate, numerics)
    return out


def run_child(stage: Stage[Any], stage_dir: Path, items: Sequence[tuple[Artifact, Gate]], golden: tuple[Path, Path],
              batches: Sequence[str], env: Mapping[str, str], threads: int | None,
              label: str) -> list[parity.ArtifactParity]:
    """Gate ``items`` in a fresh ``python -m pipeline.regate`` with ``env`` added to this process's environment."""
    with tempfile.TemporaryDirectory(prefix="convert-regate-") as tmp:
        request = {"stage": stage.name, "module": type(stage).__module__, "stage_dir": str(stage_dir),
                   "golden": [str(golden[0]), str(golden[1])], "batches": list(batches), "threads": threads,
                   "artifacts": [{"artifact": asdict(a), "gate": g.model_dump()} for a, g in items],
                   "result": str(Path(tmp) / "result.json")}
        (Path(tmp) / "request.json").write_text(json.dumps(request), encoding="utf-8")
        try:
            done = subprocess.run([sys.executable, "-m", "pipeline.regate", str(Path(tmp) / "request.json")],
                                  env={**os.environ, **env}, capture_output=True, text=True, timeout=TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise StageError(stage.name, f"re-gating as CPU class {label} took over {TIMEOUT_S:.0f} s") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
            raise StageError(stage.name, f"re-gating as CPU class {label} "
                                         f"({' '.join(f'{k}={v}' for k, v in env.items())}) failed: {last}")
        data = json.loads(Path(request["result"]).read_text(encoding="utf-8"))
    return [parity.ArtifactParity.from_json(r) for r in data["reports"]]


def _child(request_path: Path) -> None:
    """The child's side: gate every artifact of the request with this process's environment."""
    import importlib

    request = json.loads(request_path.read_text(encoding="utf-8"))
    if request["stage"] not in registered_stages():  # a stage registered outside pipeline.stages (tests)
        importlib.import_module(request["module"])
    stage = get_stage(request["stage"])
    inputs, outputs = (parity.load_golden(Path(p)) for p in request["golden"])
    batches = [parity.GoldenBatch(name, inputs[name]) for name in request["batches"]]
    reference = [outputs[name] for name in request["batches"]]
    reports = []
    for item in request["artifacts"]:
        a = item["artifact"]
        artifact = Artifact(name=a["name"], files=tuple(a["files"]), metadata=a["metadata"],
                            skips_padding=a["skips_padding"], optional=a["optional"])
        gate = Gate.model_validate(item["gate"])
        runner = stage.runner(Path(request["stage_dir"]), artifact, threads=request["threads"])
        report = parity.check_artifact(artifact.name, runner, batches, reference, gate,
                                       skips_padding=artifact.skips_padding,
                                       token_outputs=artifact.metadata.get("token_outputs"))
        reports.append(report.to_json())
    Path(request["result"]).write_text(json.dumps({"reports": reports}), encoding="utf-8")


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
