"""Orchestration: load the source once, run each target's stage, gate every artifact, package.

Layout of a build folder ``<out>/<recipe name>/``::

    stages/<target>/   the stage's files and stage.json (inputs, outputs with sha256, timings)
    golden/            golden inputs and eager outputs (.npz)
    parity.json        every artifact's comparison with eager, pass or fail
    build.json         the result of the last build
    package/           the Hub repo layout; replaced only by a build whose artifacts all passed

The build owns ordering, gating and packaging; stages only produce artifacts.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline import package, parity
from pipeline import source as source_mod
from pipeline.atomic import atomic_dir, write_json
from pipeline.errors import ParityError, PipelineError, StageError
from pipeline.recipe import Recipe
from pipeline.source import sha256_file
from pipeline.stages import Artifact, StageContext, get_stage
from pipeline.versions import library_versions

Events = Callable[[str, str], None]  # (step, message)


@dataclass
class StageRun:
    stage: str
    seconds: float
    fingerprint: str
    artifacts: list[str]
    optional: list[str] = field(default_factory=list)


@dataclass
class BuildResult:
    name: str
    build_dir: Path
    package_dir: Path | None
    passed: bool
    stages: list[StageRun]
    parity: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    recommended: str | None = None  # the fastest passing artifact, when the build ran the benchmark

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["build_dir"] = str(self.build_dir)
        data["package_dir"] = str(self.package_dir) if self.package_dir else None
        return data


def stage_fingerprint(stage_name: str, version: int, params: dict[str, Any], source_fingerprint: str,
                      task: str) -> str:
    """Hash of what shapes a stage's output: its code version and params, the source, the libraries."""
    blob = json.dumps({"stage": stage_name, "version": version, "params": params, "task": task,
                       "source": source_fingerprint, "libraries": library_versions()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def build(recipe: Recipe, out: Path, *, on_event: Events | None = None) -> BuildResult:
    """Build every target of ``recipe`` under ``out/<name>``, gate it, and package it.

    Raises:
        SourceError: the source cannot be resolved or is unsafe.
        StageError: a stage could not produce its output.
        ParityError: an artifact ran but failed its gate; ``parity.json`` says where. Nothing is
            packaged and the previous package is left as it was.
    """
    emit = on_event or (lambda step, message: None)
    build_dir = out / recipe.name
    timings: dict[str, float] = {}
    started = time.perf_counter()

    emit("source", f"resolving {recipe.source.describe()}")
    t = time.perf_counter()
    resolved = source_mod.resolve(recipe)
    emit("source", f"loading {resolved.folder.name} for {recipe.task}")
    loaded = source_mod.load(recipe, resolved)
    timings["source"] = time.perf_counter() - t

    emit("golden", "computing eager outputs on golden inputs")
    t = time.perf_counter()
    batches = parity.golden_batches(recipe.validation.texts, recipe.validation.shapes, loaded.tokenizer,
                                    getattr(loaded.config, "max_position_embeddings", None),
                                    seed=recipe.validation.seed)
    reference = parity.eager_outputs(loaded.model, batches)
    with atomic_dir(build_dir / "golden") as tmp:
        parity.save_golden(tmp / package.GOLDEN_INPUTS, tmp / package.GOLDEN_OUTPUTS, batches, reference)
    golden = (build_dir / "golden" / package.GOLDEN_INPUTS, build_dir / "golden" / package.GOLDEN_OUTPUTS)
    timings["golden"] = time.perf_counter() - t

    runs: list[StageRun] = []
    reports: dict[str, parity.ArtifactParity] = {}
    passing: list[package.PackagedArtifact] = []
    for name, params in recipe.target_params().items():
        stage = get_stage(name)
        stage_dir = build_dir / "stages" / name
        fingerprint = stage_fingerprint(name, stage.version, params.model_dump(mode="json"),
                                        resolved.fingerprint, loaded.task)
        emit(name, f"building ({stage.description})" if stage.description else "building")
        t = time.perf_counter()
        with atomic_dir(stage_dir) as workdir:
            try:
                artifacts = stage.run(StageContext(recipe=recipe, source=loaded, workdir=workdir), params)
            except PipelineError:
                raise
            except Exception as e:  # a stage bug or a library failure: report it as this stage's
                raise StageError(name, f"{type(e).__name__}: {e}",
                                 hint="run with --debug for the traceback") from e
            seconds = time.perf_counter() - t
            hashes = {f: sha256_file(workdir / f) for a in artifacts for f in a.files}
            write_json(workdir / "stage.json", _stage_record(name, stage.version, params.model_dump(mode="json"),
                                                             fingerprint, resolved, artifacts, workdir, hashes,
                                                             seconds))
        timings[name] = seconds
        runs.append(StageRun(name, round(seconds, 3), fingerprint, [a.name for a in artifacts],
                             [a.name for a in artifacts if a.optional]))

        for artifact in artifacts:
            emit(artifact.name, "checking parity against eager")
            gate = stage.gate_for(artifact.name, loaded.task).merged(recipe.validation.gates.get(artifact.name))
            t = time.perf_counter()
            report = parity.check_artifact(artifact.name, stage.runner(stage_dir, artifact), batches,
                                           reference, gate, skips_padding=artifact.skips_padding)
            timings[f"parity:{artifact.name}"] = time.perf_counter() - t
            reports[artifact.name] = report
            emit(artifact.name, "parity passed" if report.passed else "parity FAILED")
            if report.passed:
                passing.append(package.PackagedArtifact(
                    name=artifact.name, stage=name, folder=stage.package_folder or name, stage_dir=stage_dir,
                    files=artifact.files, sha256={f: hashes[f] for f in artifact.files}, metadata=artifact.metadata))

    parity_json = {
        "golden": [{"batch": b.name, "shape": list(b.shape), "padded_tokens": b.padded_tokens} for b in batches],
        "artifacts": {k: v.to_json() for k, v in reports.items()},
    }
    write_json(build_dir / "parity.json", parity_json)
    optional = {a for run in runs for a in run.optional}
    failures = [f for name, r in reports.items() if name not in optional for f in r.failures]
    warnings = [f"{f} (optional: not packaged)" for name, r in reports.items() if name in optional
                for f in r.failures]
    for warning in warnings:
        emit("parity", warning)
    package_dir = None
    bench_report = None
    if not failures and recipe.bench.on_build:
        from pipeline import bench as bench_mod

        bench_report = bench_mod.run(build_dir, loaded, recipe.bench.settings(), on_event=emit)
    if not failures:
        emit("package", "writing the package")
        t = time.perf_counter()
        package.write(build_dir / "package", recipe=recipe, source=loaded, artifacts=passing,
                      parity=parity_json, golden=golden)
        timings["package"] = time.perf_counter() - t
        package_dir = build_dir / "package"
    timings["total"] = time.perf_counter() - started
    result = BuildResult(name=recipe.name, build_dir=build_dir, package_dir=package_dir, passed=not failures,
                         stages=runs, parity=parity_json, timings={k: round(v, 3) for k, v in timings.items()},
                         failures=failures, warnings=warnings,
                         recommended=bench_report["recommended"] if bench_report else None)
    write_json(build_dir / "build.json", result.to_json())
    if failures:
        raise ParityError(failures, parity_json)
    return result


def bench(recipe: Recipe, out: Path, *, settings: Any = None, on_event: Events | None = None) -> dict[str, Any]:
    """Benchmark an existing build of ``recipe`` (eager and every artifact that passed its gate).

    ``settings`` (a :class:`pipeline.bench.BenchSettings`) defaults to the recipe's ``bench`` section.
    Writes ``bench.json`` and ``bench.png`` into the build folder and returns the report.

    Raises:
        SourceError: the source cannot be loaded (eager is measured too).
        PipelineError: there is no completed build to measure.
    """
    from pipeline import bench as bench_mod

    emit = on_event or (lambda step, message: None)
    build_dir = out / recipe.name
    if not (build_dir / "parity.json").is_file():
        raise PipelineError(f"{build_dir}: no build to measure (run `convert build {recipe.path or recipe.name}` "
                            "first)")
    emit("source", f"loading {recipe.source.describe()}")
    loaded = source_mod.load(recipe, source_mod.resolve(recipe))
    return bench_mod.run(build_dir, loaded, settings or recipe.bench.settings(), on_event=emit)


def _stage_record(name: str, version: int, params: dict[str, Any], fingerprint: str,
                  resolved: source_mod.ResolvedSource, artifacts: list[Artifact], workdir: Path,
                  hashes: dict[str, str], seconds: float) -> dict[str, Any]:
    return {
        "stage": name,
        "version": version,
        "params": params,
        "fingerprint": fingerprint,
        "inputs": {"source": resolved.provenance()},
        "outputs": {a.name: {"files": {f: {"sha256": hashes[f], "size": (workdir / f).stat().st_size}
                                       for f in a.files},
                             "metadata": a.metadata, "skips_padding": a.skips_padding, "optional": a.optional}
                    for a in artifacts},
        "timings": {"seconds": round(seconds, 3)},
        "versions": library_versions(),
    }
