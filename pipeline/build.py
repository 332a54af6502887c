"""Orchestration: run each target's stage, gate every artifact, package — reusing what is unchanged.

Layout of a build folder ``<out>/<recipe name>/``::

    stages/<target>/   the stage's files and stage.json (fingerprint, outputs with sha256, timings)
    golden/            golden inputs and eager outputs (.npz) and golden.json (fingerprint, batches)
    parity/<artifact>.json   one artifact's comparison with eager and its fingerprint
    parity.json        every artifact's comparison with eager, pass or fail
    package/           the Hub repo layout; replaced only by a build whose artifacts all passed
    package.json       the fingerprint the package was written for
    build.json         the result of the last build

Every step has a fingerprint: a hash of its own settings, its inputs' content hashes and the
library versions that shape its output. A step whose fingerprint matches a finished output (whose
files still hash as recorded) is reused, and the build says so and why others reran. The source
model is loaded only when a step needs it, so a build that reuses everything imports no torch.
Outputs are written under temporary names and renamed into place, so a killed build leaves
nothing half-written that a later one would trust. The build owns ordering, caching, gating and
packaging; stages only produce artifacts.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline import __version__, cpu, package, parity, settings
from pipeline import source as source_mod
from pipeline.atomic import atomic_dir, write_json
from pipeline.errors import ParityError, PipelineError, StageError
from pipeline.recipe import Recipe
from pipeline.source import LoadedSource, ResolvedSource, sha256_file
from pipeline.stages import Artifact, StageContext, get_stage
from pipeline.versions import library_versions

Events = Callable[[str, str], None]  # (step, message)
GOLDEN_RECORD = "golden.json"
STAGE_RECORD = "stage.json"
PACKAGE_RECORD = "package.json"


@dataclass
class StageRun:
    stage: str
    status: str  # "built" or "reused"
    reason: str  # why it was built, or what matched
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
    reused: list[str] = field(default_factory=list)  # steps reused from an earlier build
    timings: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    recommended: str | None = None  # the fastest passing artifact, when the build ran the benchmark

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["build_dir"] = str(self.build_dir)
        data["package_dir"] = str(self.package_dir) if self.package_dir else None
        return data


def fingerprint(**parts: Any) -> str:
    """sha256 of the parts as canonical JSON, with the versions of the libraries and of this tool."""
    blob = json.dumps({**parts, "libraries": library_versions(), "pipeline": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def stage_fingerprint(stage_name: str, version: int, params: dict[str, Any], source_fingerprint: str,
                      task: str, model_options: dict[str, Any] | None = None) -> str:
    """What shapes a stage's output: its code version and params, the source, the task, the libraries,
    and the recipe's options on the model itself (:func:`model_options`)."""
    return fingerprint(kind="stage", stage=stage_name, version=version, params=params, task=task,
                       source=source_fingerprint, **(model_options or {}))


def model_options(recipe: Recipe) -> dict[str, Any]:
    """Recipe sections that change what the model outputs, for every target and the eager reference
    alike (``sentence_embedding``). Empty when none is set, so fingerprints without them stay as they were."""
    if recipe.sentence_embedding is None:
        return {}
    return {"sentence_embedding": recipe.sentence_embedding.model_dump(mode="json")}


@dataclass(frozen=True)
class Options:
    force: bool = False  # rebuild everything
    force_stages: frozenset[str] = frozenset()  # rebuild these stages


class _Source:
    """The source, resolved and checked at once, loaded only when a step needs the model."""

    def __init__(self, recipe: Recipe, resolved: ResolvedSource, emit: Events) -> None:
        self.recipe, self.resolved, self.emit = recipe, resolved, emit
        self.config = source_mod.check(recipe, resolved)
        self.seconds = 0.0

    @functools.cached_property
    def loaded(self) -> LoadedSource:
        self.emit("source", f"loading {self.resolved.folder.name} for {self.recipe.task}")
        t = time.perf_counter()
        loaded = source_mod.load(self.recipe, self.resolved)
        threads = settings.threads()
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.seconds = time.perf_counter() - t
        return loaded


@contextlib.contextmanager
def build_lock(build_dir: Path, emit: Events) -> Iterator[None]:
    """One build of a recipe at a time: a second one waits here, and says so, until the first ends."""
    build_dir.mkdir(parents=True, exist_ok=True)
    with (build_dir / ".lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            emit("lock", f"waiting for the build running in {holder} to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(recipe: Recipe, out: Path, *, on_event: Events | None = None, options: Options | None = None) -> BuildResult:
    """Build every target of ``recipe`` under ``out/<name>``, gate it, and package it, reusing
    every step whose fingerprint matches a finished output.

    Raises:
        SourceError: the source cannot be resolved or is unsafe.
        UnsupportedModelError: a target does not support the model type or task.
        StageError: a stage could not produce its output.
        ParityError: an artifact ran but failed its gate; ``parity.json`` says where. Nothing is
            packaged and the previous package is left as it was.
    """
    emit = on_event or (lambda step, message: None)
    started = time.perf_counter()
    emit("source", f"resolving {recipe.source.describe()}")
    source = _Source(recipe, source_mod.resolve(recipe), emit)  # read-only: a bad source writes nothing
    for name, params in recipe.target_params().items():  # a model a target cannot build: before any loading
        get_stage(name).check(params, source.config, recipe.task)
    if recipe.bench.on_build:  # a benchmark the build would fail at after all its work: refuse it now
        from pipeline import bench as bench_mod

        bench_mod.check_task(source.config.get("model_type", "?"), recipe.task)
        if recipe.bench.traffic_batches:  # a missing bench.texts_file, too
            from pipeline import traffic

            traffic.read_texts(recipe)
    build_dir = out / recipe.name
    with build_lock(build_dir, emit):
        return _build(recipe, build_dir, source, emit, options or Options(), started)


def _build(recipe: Recipe, build_dir: Path, source: _Source, emit: Events, options: Options,
           started: float) -> BuildResult:
    timings: dict[str, float] = {}
    reused: list[str] = []
    task = recipe.task

    t = time.perf_counter()
    # eager outputs, parity figures and timings belong to the CPU that computed them (stage outputs do not)
    on_cpu = cpu.numerics_record()
    golden_fp = fingerprint(kind="golden", source=source.resolved.fingerprint, task=task, cpu=on_cpu,
                            texts=recipe.validation.texts, shapes=recipe.validation.shapes,
                            seed=recipe.validation.seed, **model_options(recipe))
    batches, reference, why = _reuse_golden(build_dir, golden_fp, options)
    if batches is None:
        emit("golden", f"computing eager outputs on golden inputs ({why})")
        batches, reference = parity.golden(source.loaded, recipe.validation.texts, recipe.validation.shapes,
                                           seed=recipe.validation.seed)
        with atomic_dir(build_dir / "golden") as tmp:
            parity.save_golden(tmp / package.GOLDEN_INPUTS, tmp / package.GOLDEN_OUTPUTS, batches, reference)
            write_json(tmp / GOLDEN_RECORD, {"fingerprint": golden_fp, "batches": [b.name for b in batches]})
    else:
        emit("golden", "reused")
        reused.append("golden")
    assert reference is not None
    golden = (build_dir / "golden" / package.GOLDEN_INPUTS, build_dir / "golden" / package.GOLDEN_OUTPUTS)
    timings["golden"] = time.perf_counter() - t

    runs: list[StageRun] = []
    reports: dict[str, parity.ArtifactParity] = {}
    parity_fps: dict[str, str] = {}
    passing: list[package.PackagedArtifact] = []
    notes: list[str] = []
    for name, params in recipe.target_params().items():
        stage = get_stage(name)
        stage_dir = build_dir / "stages" / name
        stage_fp = stage_fingerprint(name, stage.version, params.model_dump(mode="json"),
                                     source.resolved.fingerprint, task, model_options(recipe))
        t = time.perf_counter()
        record, why = _reuse_stage(stage_dir, stage_fp, options, name)
        if record is None:
            emit(name, f"building: {why}")
            record = _run_stage(stage, name, params, recipe, source, stage_dir, stage_fp)
            status = "built"
        else:
            emit(name, "reused (fingerprint and output hashes match)")
            reused.append(name)
            status, why = "reused", "fingerprint and output hashes match"
        seconds = time.perf_counter() - t
        timings[name] = seconds
        artifacts = _artifacts(record)
        # what a stage wants said once per build (a deprecated runtime, a fallback it took)
        notes += [f"{a.name}: {note}" for a in artifacts for note in a.metadata.get("notes", [])]
        runs.append(StageRun(name, status, why, round(seconds, 3), stage_fp, [a.name for a in artifacts],
                             [a.name for a in artifacts if a.optional]))

        for artifact in artifacts:
            gate = stage.gate_for(artifact.name, task).merged(recipe.validation.gates.get(artifact.name))
            hashes = {f: record["outputs"][artifact.name]["files"][f]["sha256"] for f in artifact.files}
            numerics = artifact.metadata.get("numerics", {})  # an int8 graph: which arithmetic gates it
            parity_fp = fingerprint(kind="parity", files=hashes, gate=gate.model_dump(), golden=golden_fp,
                                    skips_padding=artifact.skips_padding, numerics=numerics or None)
            t = time.perf_counter()
            report = _reuse_parity(build_dir, artifact.name, parity_fp, options)
            if report is None:
                emit(artifact.name, "checking parity against eager")
                report = parity.check_artifact(artifact.name, stage.runner(stage_dir, artifact), batches,
                                               reference, gate, skips_padding=artifact.skips_padding,
                                               token_outputs=artifact.metadata.get("token_outputs"),
                                               numerics=numerics.get("gated_with"))
                write_json(build_dir / "parity" / f"{artifact.name}.json",
                           {"fingerprint": parity_fp, "report": report.to_json()})
            else:
                reused.append(f"parity:{artifact.name}")
            timings[f"parity:{artifact.name}"] = time.perf_counter() - t
            reports[artifact.name] = report
            parity_fps[artifact.name] = parity_fp
            emit(artifact.name, "parity passed" if report.passed else "parity FAILED")
            if report.passed:
                passing.append(package.PackagedArtifact(
                    name=artifact.name, stage=name, folder=stage.package_folder or name, stage_dir=stage_dir,
                    files=artifact.files, sha256=hashes, metadata=artifact.metadata,
                    skips_padding=artifact.skips_padding))

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
    for note in notes:
        emit("note", note)
    warnings = notes + warnings
    package_dir = None
    bench_report = None
    if not failures and recipe.bench.on_build:
        from pipeline import bench as bench_mod
        from pipeline import traffic

        settings_ = traffic.with_texts(recipe, recipe.bench.settings())
        bench_fp = fingerprint(kind="bench", settings=asdict(settings_), source=source.resolved.fingerprint, cpu=on_cpu,
                               artifacts={a.name: a.sha256 for a in passing})
        previous = _read_json(build_dir / bench_mod.BENCH_JSON)
        t = time.perf_counter()
        if (not options.force and previous is not None and previous.get("fingerprint") == bench_fp
                and (build_dir / bench_mod.BENCH_PNG).is_file()):
            emit("bench", "reused (same artifacts and settings)")
            reused.append("bench")
            bench_report = previous
        else:
            bench_report = bench_mod.run(build_dir, source.loaded, settings_, on_event=emit, fingerprint=bench_fp)
        timings["bench"] = time.perf_counter() - t
    if not failures:
        package_fp = fingerprint(kind="package", recipe=recipe.digest(), source=source.resolved.provenance(),
                                 golden=golden_fp, parity=parity_fps,
                                 artifacts={a.name: a.sha256 for a in passing},
                                 bench=bench_report.get("fingerprint") if bench_report else None)
        t = time.perf_counter()
        if _package_is_current(build_dir, package_fp, options):
            emit("package", "reused")
            reused.append("package")
        else:
            emit("package", "writing the package")
            package.write(build_dir / "package", recipe=recipe, source=source.resolved, task=task,
                          artifacts=passing, parity=parity_json, golden=golden, bench=bench_report,
                          bench_chart=build_dir / package.BENCH_PNG)
            write_json(build_dir / PACKAGE_RECORD, {"fingerprint": package_fp})
        timings["package"] = time.perf_counter() - t
        package_dir = build_dir / "package"
    if "source" not in timings and "loaded" in source.__dict__:
        timings["source"] = source.seconds
    timings["total"] = time.perf_counter() - started
    result = BuildResult(name=recipe.name, build_dir=build_dir, package_dir=package_dir, passed=not failures,
                         stages=runs, parity=parity_json, reused=reused,
                         timings={k: round(v, 3) for k, v in timings.items()}, failures=failures,
                         warnings=warnings, recommended=bench_report["recommended"] if bench_report else None)
    write_json(build_dir / "build.json", result.to_json())
    if failures:
        raise ParityError(failures, parity_json)
    return result


def _read_json(path: Path) -> dict[str, Any] | None:
    """A record, or None where it is missing or unreadable (a damaged record is a cache miss)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _reuse_golden(build_dir: Path, golden_fp: str, options: Options) -> tuple[Any, Any, str]:
    record = _read_json(build_dir / "golden" / GOLDEN_RECORD)
    if options.force:
        return None, None, "--force"
    if record is None:
        return None, None, "none yet"
    if record.get("fingerprint") != golden_fp:
        return None, None, "source, texts, shapes or libraries changed"
    try:
        inputs = parity.load_golden(build_dir / "golden" / package.GOLDEN_INPUTS)
        outputs = parity.load_golden(build_dir / "golden" / package.GOLDEN_OUTPUTS)
        batches = [parity.GoldenBatch(name, inputs[name]) for name in record["batches"]]
        return batches, [outputs[name] for name in record["batches"]], ""
    except (OSError, KeyError, ValueError):
        return None, None, "previous golden files unreadable"


def _reuse_stage(stage_dir: Path, stage_fp: str, options: Options, name: str) -> tuple[dict[str, Any] | None, str]:
    """The stage's record if its output can be reused, else None and why it must be built."""
    if options.force or name in options.force_stages:
        return None, "forced"
    record = _read_json(stage_dir / STAGE_RECORD)
    if record is None:
        return None, "no finished output yet"
    if record.get("fingerprint") != stage_fp:
        return None, "params, source, task or libraries changed"
    for output in record.get("outputs", {}).values():
        for file, entry in output["files"].items():
            path = stage_dir / file
            if not path.is_file() or sha256_file(path) != entry["sha256"]:
                return None, f"{file} changed on disk since it was built"
    return record, ""


def _reuse_parity(build_dir: Path, artifact: str, parity_fp: str, options: Options) -> parity.ArtifactParity | None:
    record = _read_json(build_dir / "parity" / f"{artifact}.json")
    if options.force or record is None or record.get("fingerprint") != parity_fp:
        return None
    return parity.ArtifactParity.from_json(record["report"])


def _package_is_current(build_dir: Path, package_fp: str, options: Options) -> bool:
    record = _read_json(build_dir / PACKAGE_RECORD)
    manifest = _read_json(build_dir / "package" / package.MANIFEST)
    if options.force or record is None or manifest is None or record.get("fingerprint") != package_fp:
        return False
    return package.file_table(build_dir / "package") == package.all_files(manifest)


def _run_stage(stage: Any, name: str, params: Any, recipe: Recipe, source: _Source, stage_dir: Path,
               stage_fp: str) -> dict[str, Any]:
    t = time.perf_counter()
    with atomic_dir(stage_dir) as workdir:
        try:
            artifacts = stage.run(StageContext(recipe=recipe, source=source.loaded, workdir=workdir), params)
        except PipelineError:
            raise
        except Exception as e:  # a stage bug or a library failure: report it as this stage's
            raise StageError(name, f"{type(e).__name__}: {e}", hint="run with --debug for the traceback") from e
        seconds = time.perf_counter() - t
        record = {
            "stage": name,
            "version": stage.version,
            "params": params.model_dump(mode="json"),
            "fingerprint": stage_fp,
            "inputs": {"source": source.resolved.provenance()},
            "order": [a.name for a in artifacts],
            "outputs": {a.name: {"files": {f: {"sha256": sha256_file(workdir / f),
                                               "size": (workdir / f).stat().st_size} for f in a.files},
                                 "metadata": a.metadata, "skips_padding": a.skips_padding, "optional": a.optional}
                        for a in artifacts},
            "timings": {"seconds": round(seconds, 3)},
            "versions": library_versions(),
        }
        write_json(workdir / STAGE_RECORD, record)
    return record


def _artifacts(record: dict[str, Any]) -> list[Artifact]:
    outputs = record["outputs"]
    return [Artifact(name=name, files=tuple(outputs[name]["files"]), metadata=outputs[name]["metadata"],
                     skips_padding=outputs[name].get("skips_padding", False),
                     optional=outputs[name].get("optional", False))
            for name in record.get("order", outputs)]


def bench(recipe: Recipe, out: Path, *, settings: Any = None, on_event: Events | None = None) -> dict[str, Any]:
    """Benchmark an existing build of ``recipe`` (eager and every artifact that passed its gate).

    ``settings`` (a :class:`pipeline.bench.BenchSettings`) defaults to the recipe's ``bench`` section.
    Writes ``bench.json`` and ``bench.png`` into the build folder and returns the report.

    Raises:
        SourceError: the source cannot be loaded (eager is measured too).
        RecipeError: ``bench.texts_file`` is missing, unreadable or outside the recipe's folder.
        PipelineError: there is no completed build to measure.
    """
    from pipeline import bench as bench_mod

    emit = on_event or (lambda step, message: None)
    build_dir = out / recipe.name
    if not (build_dir / "parity.json").is_file():
        raise PipelineError(f"{build_dir}: no build to measure (run `convert build {recipe.path or recipe.name}` "
                            "first)")
    from pipeline import traffic

    settings = traffic.with_texts(recipe, settings or recipe.bench.settings())  # a bad texts file: before loading
    emit("source", f"loading {recipe.source.describe()}")
    loaded = source_mod.load(recipe, source_mod.resolve(recipe))
    return bench_mod.run(build_dir, loaded, settings, on_event=emit)
