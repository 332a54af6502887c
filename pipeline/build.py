"""Orchestration: run each target's stage, gate every artifact, package — reusing what is unchanged.

The build folder's layout (``<out>/<recipe name>/``: ``stages/<target>/``, ``golden/``, ``parity/``,
``package/`` and the records) is named in pipeline/layout.py.

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
import errno
import fcntl
import functools
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline import bench as bench_mod
from pipeline import cpu, package, parity, regate, settings, traffic
from pipeline import source as source_mod
from pipeline.artifact import Outputs
from pipeline.atomic import atomic_dir, link_or_copy, sweep_temporaries, write_json
from pipeline.bench_settings import BenchSettings
from pipeline.errors import DiskFullError, InputError, ParityError, PipelineError, StageError
from pipeline.filehash import StatCache, sha256_file
from pipeline.gate import Gate
from pipeline.layout import GOLDEN_INPUTS, GOLDEN_OUTPUTS, GOLDEN_RECORD, STAGE_RECORD, BuildDir
from pipeline.loaded import LoadedSource, ResolvedSource
from pipeline.recipe import Recipe, check_installed
from pipeline.source import CheckedSource
from pipeline.stages import Artifact, Stage, StageContext, StageParams, get_stage
from pipeline.steps import Reasons, Records, Step
from pipeline.versions import library_versions

Events = Callable[[str, str], None]  # (step, message)


@dataclass
class StageRun:
    stage: str
    status: str  # "built" or "reused"
    reason: str  # why it was built, or what matched
    seconds: float
    fingerprint: str
    artifacts: list[str]
    optional: list[str] = field(default_factory=list)
    reused_parts: list[str] = field(default_factory=list)  # parts taken from its previous output (built only)


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


def stage_step(stage: Stage[Any], params: dict[str, Any], source_fingerprint: str, task: str,
               model_options: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None) -> Step:
    """What shapes a stage's output: its code version and params, the task, the recipe's options on the
    model itself (:func:`model_options`), the source, what else the stage reads
    (:meth:`pipeline.stages.Stage.fingerprint_inputs`, e.g. calibration texts), and the libraries it declares."""
    return Step("stage", version=stage.version, params={"stage": stage.name, "params": params, "task": task,
                                                          **(model_options or {})},
                inputs={"source": source_fingerprint, **(inputs or {})}, libraries=stage.libraries)


def model_options(recipe: Recipe) -> dict[str, Any]:
    """Recipe sections that change what the model outputs, for every target and the eager reference
    alike (``sentence_embedding``). Empty when none is set, so fingerprints without them stay as they were."""
    if recipe.sentence_embedding is None:
        return {}
    # max_seq_length is what sentence-transformers truncates to: it shapes the package, not the model's outputs
    return {"sentence_embedding": recipe.sentence_embedding.model_dump(mode="json", exclude={"max_seq_length"})}


@dataclass(frozen=True)
class Options:
    force: bool = False  # rebuild everything
    force_stages: frozenset[str] = frozenset()  # rebuild these stages


class _Source:
    """The source, resolved and checked at once, loaded only when a step needs the model."""

    def __init__(self, recipe: Recipe, resolved: ResolvedSource, checked: CheckedSource, emit: Events) -> None:
        self.recipe, self.resolved, self.emit = recipe, resolved, emit
        self.checked = checked  # once per build (source.resolve_checked): config.json and the pooling
        self.config = self.checked.config
        self.seconds = 0.0

    @functools.cached_property
    def loaded(self) -> LoadedSource:
        self.emit("source", f"loading {self.resolved.folder.name} for {self.recipe.task}")
        t = time.perf_counter()
        loaded = source_mod.load(self.recipe, self.resolved, self.checked)
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
    with BuildDir(build_dir).lock.open("a+") as handle:
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
    check_installed(recipe)  # a target whose optional extra is missing: before anything is read
    _out_outside_the_checkpoint(recipe, out)
    emit("source", f"resolving {recipe.source.describe()}")
    build_dir = out / recipe.name
    stat_cache = StatCache(BuildDir(build_dir).state)  # an unchanged file (by its stat) is not read again
    # read-only: a bad source writes nothing
    source = _Source(recipe, *source_mod.resolve_checked(recipe, stat_cache.sha256), emit)
    for name, params in recipe.target_params().items():  # a model a target cannot build: before any loading
        get_stage(name).check(params, source.config, recipe.task)
    # what else each stage reads (a calibration file): read now, so a missing one is refused before loading
    stage_inputs = {name: get_stage(name).fingerprint_inputs(params, recipe)
                    for name, params in recipe.target_params().items()}
    if recipe.bench.on_build:  # a benchmark the build would fail at after all its work: refuse it now
        bench_mod.check_task(source.config.get("model_type", "?"), recipe.task)
        if recipe.bench.traffic_batches:  # a missing bench.texts_file, too
            traffic.read_texts(recipe)
    try:
        with build_lock(build_dir, emit):
            for folder in (build_dir, BuildDir(build_dir).stages):  # what killed builds left (under the lock)
                for stale in sweep_temporaries(folder):
                    emit("build", f"removed {stale.name}, left by an interrupted build")
            try:
                return _build(recipe, build_dir, source, emit, options or Options(), started, stat_cache,
                              stage_inputs)
            finally:
                stat_cache.save()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise _disk_full(e, build_dir, source.resolved) from e
        raise


def _disk_full(e: OSError, build_dir: Path, resolved: ResolvedSource) -> DiskFullError:
    """One line: the output folder, what ran out, the space free there and what the build needs."""
    probe = build_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 1e6
    weights = sum((resolved.folder / rel).stat().st_size for rel in resolved.files
                  if rel.endswith(".safetensors") and (resolved.folder / rel).is_file()) / 1e6
    writing = f", writing {Path(e.filename).name}" if e.filename else ""
    return DiskFullError(f"{build_dir}: out of space ({e.strerror or e}{writing}); {free:.0f} MB free there, and "
                         f"each artifact of this checkpoint needs about {max(weights, 1):.0f} MB (the size of its "
                         "weights) besides the package: free some space or choose another --out (earlier outputs "
                         "are left as they were)")


def _out_outside_the_checkpoint(recipe: Recipe, out: Path) -> None:
    """``--out`` inside a checkpoint folder would fold every build's outputs into the source's
    fingerprint (each build then rebuilds everything, and hashes its own outputs): refused.

    Raises:
        InputError: ``out`` is the checkpoint folder or inside it.
    """
    if recipe.source.path is None:
        return
    checkpoint = (recipe.folder / recipe.source.path).resolve()
    where = out.resolve()
    if where == checkpoint or where.is_relative_to(checkpoint):
        raise InputError(f"--out {out} is inside the checkpoint folder {checkpoint} (source.path): its outputs "
                         "would become part of the source; put --out outside the checkpoint")


def _build(recipe: Recipe, build_dir: Path, source: _Source, emit: Events, options: Options,
           started: float, stat_cache: StatCache, stage_inputs: dict[str, dict[str, Any]]) -> BuildResult:
    timings: dict[str, float] = {}
    reused: list[str] = []
    task = recipe.task
    paths = BuildDir(build_dir)
    records = Records(emit)

    t = time.perf_counter()
    # eager outputs, parity figures and timings belong to the CPU that computed them (stage outputs do not)
    on_cpu = cpu.numerics_record()
    classes = recipe.validation.classes()  # the CPU classes every artifact is gated as (pipeline/regate.py)
    sentence = source.checked.carried.sentence if source.checked.carried else None
    max_seq_length = sentence.max_seq_length if sentence else None  # what sentence-transformers truncates to
    # 2: long-text batches at max_seq_length (pipeline.batches.long_batches)
    golden_fp = Step("golden", version=2,
                     params={"task": task, "cpu": on_cpu, "texts": recipe.validation.texts,
                             "shapes": recipe.validation.shapes, "seed": recipe.validation.seed,
                             "long_length": parity.long_length(max_seq_length), **model_options(recipe)},
                     inputs={"source": source.resolved.fingerprint}).key()
    batches, reference, why = _reuse_golden(paths, records, golden_fp, options)
    if batches is None:
        emit("golden", f"computing eager outputs on golden inputs ({why})")
        batches, reference = parity.golden(source.loaded, recipe.validation.texts, recipe.validation.shapes,
                                           seed=recipe.validation.seed, max_seq_length=max_seq_length)
        with atomic_dir(paths.golden) as tmp:
            parity.save_golden(tmp / GOLDEN_INPUTS, tmp / GOLDEN_OUTPUTS, batches, reference)
            write_json(tmp / GOLDEN_RECORD, {"fingerprint": golden_fp, "batches": [b.name for b in batches]})
    else:
        emit("golden", "reused")
        reused.append("golden")
    golden = paths.golden_files
    timings["golden"] = time.perf_counter() - t

    runs: list[StageRun] = []
    reports: dict[str, parity.ArtifactParity] = {}
    parity_fps: dict[str, str] = {}
    passing: list[package.PackagedArtifact] = []
    measured: list[bench_mod.Measured] = []
    notes: list[str] = []
    for name, params in recipe.target_params().items():
        stage = get_stage(name)
        stage_dir = paths.stage(name)
        stage_fp = stage_step(stage, params.model_dump(mode="json"), source.resolved.fingerprint, task,
                              model_options(recipe), stage_inputs[name]).key()
        t = time.perf_counter()
        record, why = records.reuse(stage_dir / STAGE_RECORD, stage_fp, reasons=STAGE_REASONS,
                                    forced=options.force or name in options.force_stages,
                                    check=functools.partial(_changed_output, stage_dir, stat_cache=stat_cache))
        if record is None:
            emit(name, f"building: {why}")
            forced = options.force or name in options.force_stages
            previous = None if forced else records.read(stage_dir / STAGE_RECORD)[0]
            record = _run_stage(stage, name, params, recipe, source, stage_dir, stage_fp, previous, stat_cache)
            if record["reused_parts"]:
                emit(name, f"reused from its previous output: {', '.join(record['reused_parts'])}")
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
                             [a.name for a in artifacts if a.optional],
                             record.get("reused_parts", []) if status == "built" else []))

        fresh: list[tuple[Artifact, Gate, parity.ArtifactParity]] = []  # gated now: their classes to re-gate
        for artifact in artifacts:
            gate = stage.gate_for(artifact.name, task).merged(recipe.validation.gates.get(artifact.name))
            # how each CPU class the recipe names computes it (pipeline/regate.py): a change re-gates
            class_numerics = {c: asdict(stage.class_numerics(artifact, c)) for c in classes}
            files = record["outputs"][artifact.name]["files"]
            hashes = {f: files[f]["sha256"] for f in artifact.files}
            numerics = artifact.metadata.get("numerics", {})  # an int8 graph: which arithmetic gates it
            parity_fp = Step("parity", params={"gate": gate.model_dump(), "skips_padding": artifact.skips_padding,
                                               "numerics": numerics or None, "cpu_classes": class_numerics},
                             inputs={"files": hashes, "golden": golden_fp}, libraries=stage.libraries).key()
            t = time.perf_counter()
            previous, _ = records.reuse(paths.parity_record(artifact.name), parity_fp, forced=options.force)
            if previous is None:
                emit(artifact.name, "checking parity against eager")
                report = parity.check_artifact(artifact.name, stage.runner(stage_dir, artifact), batches,
                                               reference, gate, skips_padding=artifact.skips_padding,
                                               token_outputs=artifact.metadata.get("token_outputs"),
                                               numerics=numerics.get("gated_with"))
                fresh.append((artifact, gate, report))
            else:
                report = parity.ArtifactParity.from_json(previous["report"])
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
                measured.append(bench_mod.Measured(stage=name, stage_dir=stage_dir, artifact=artifact,
                                                   file_mb=sum(files[f]["size"] for f in artifact.files) / 1e6))
        if fresh:  # the gate once per CPU class, for what passed here; then the parity records
            t = time.perf_counter()
            passed = [item for item in fresh if item[2].passed]
            if passed and classes:
                emit(name, f"gating {', '.join(a.name for a, _, _ in passed)} per CPU class ({', '.join(classes)})")
            per_class = regate.cpu_classes(stage, stage_dir, passed, classes, golden, [b.name for b in batches]) \
                if passed and classes else {}
            for artifact, _, report in fresh:
                report.cpu_classes = per_class.get(artifact.name, {})
                write_json(paths.parity_record(artifact.name), {"fingerprint": parity_fps[artifact.name],
                                                                "report": report.to_json()})
            timings[f"cpu_classes:{name}"] = time.perf_counter() - t

    parity_json = {
        "golden": [{"batch": b.name, "shape": list(b.shape), "padded_tokens": b.padded_tokens} for b in batches],
        "artifacts": {k: v.to_json() for k, v in reports.items()},
    }
    write_json(paths.parity, parity_json)
    optional = {a for run in runs for a in run.optional}
    failures = [f for name, r in reports.items() if name not in optional for f in r.failures]
    warnings = [f"{f} (optional: not packaged)" for name, r in reports.items() if name in optional
                for f in r.failures]
    for warning in warnings:
        emit("parity", warning)
    notes += list(source.checked.carried.notes if source.checked.carried else ())
    for note in notes:
        emit("note", note)
    warnings = notes + warnings
    package_dir = None
    bench_report = None
    libraries = {lib for a in passing for lib in get_stage(a.stage).libraries}
    if not failures and recipe.bench.on_build:
        settings_ = traffic.with_texts(recipe, recipe.bench.settings())
        bench_fp = Step("bench", params={"settings": asdict(settings_), "cpu": on_cpu},
                        inputs={"source": source.resolved.fingerprint,
                                "artifacts": {a.name: a.sha256 for a in passing}}, libraries=libraries).key()
        t = time.perf_counter()
        previous, _ = records.reuse(paths.bench_json, bench_fp, forced=options.force,
                                    check=lambda _: None if paths.bench_png.is_file() else "no chart")
        if previous is not None:
            emit("bench", "reused (same artifacts and settings)")
            reused.append("bench")
            bench_report = previous
        else:
            bench_report = bench_mod.run(build_dir, source.loaded, settings_, on_event=emit, fingerprint=bench_fp,
                                         held=(parity_json["artifacts"], measured))
        timings["bench"] = time.perf_counter() - t
    if not failures:
        package_fp = Step("package", version=2, params={"recipe": recipe.digest()},  # 2: sentence-transformers files
                          inputs={"source": source.resolved.provenance(), "golden": golden_fp, "parity": parity_fps,
                                  "artifacts": {a.name: a.sha256 for a in passing},
                                  "bench": bench_report.get("fingerprint") if bench_report else None},
                          libraries=libraries).key()
        t = time.perf_counter()
        previous, _ = records.reuse(paths.package_record, package_fp, forced=options.force,
                                    check=lambda _: _package_changed(paths, records, stat_cache))
        if previous is not None:
            emit("package", "reused")
            reused.append("package")
        else:
            emit("package", "writing the package")
            package.write(paths.package, recipe=recipe, source=source.resolved, task=task,
                          artifacts=passing, parity=parity_json, golden=golden, bench=bench_report,
                          bench_chart=paths.bench_png, carried=source.checked.carried)
            write_json(paths.package_record, {"fingerprint": package_fp})
        timings["package"] = time.perf_counter() - t
        package_dir = paths.package
    if "source" not in timings and "loaded" in source.__dict__:
        timings["source"] = source.seconds
    timings["total"] = time.perf_counter() - started
    result = BuildResult(name=recipe.name, build_dir=build_dir, package_dir=package_dir, passed=not failures,
                         stages=runs, parity=parity_json, reused=reused,
                         timings={k: round(v, 3) for k, v in timings.items()}, failures=failures,
                         warnings=warnings, recommended=bench_report["recommended"] if bench_report else None)
    write_json(paths.build_record, result.to_json())
    if failures:
        raise ParityError(failures, parity_json)
    return result


GOLDEN_REASONS = Reasons(forced="--force", missing="none yet", changed="source, texts, shapes or libraries changed",
                         damaged="previous golden record unreadable")
STAGE_REASONS = Reasons(changed="params, source, task or libraries changed")


def _reuse_golden(paths: BuildDir, records: Records, golden_fp: str,
                  options: Options) -> tuple[list[parity.GoldenBatch] | None, list[Outputs] | None, str]:
    record, why = records.reuse(paths.golden_record, golden_fp, forced=options.force, reasons=GOLDEN_REASONS)
    if record is None:
        return None, None, why
    try:
        inputs = parity.load_golden(paths.golden_files[0])
        outputs = parity.load_golden(paths.golden_files[1])
        batches = [parity.GoldenBatch(name, inputs[name]) for name in record["batches"]]
        return batches, [outputs[name] for name in record["batches"]], ""
    except (OSError, KeyError, ValueError, TypeError):
        return None, None, "previous golden files unreadable"


def _changed_output(stage_dir: Path, record: dict[str, Any], stat_cache: StatCache) -> str | None:
    """Why a stage's recorded outputs cannot be trusted (a file missing or changed), or None."""
    for output in record["outputs"].values():
        for file, entry in output["files"].items():
            path = stage_dir / file
            if not path.is_file() or stat_cache.sha256(path) != entry["sha256"]:
                return f"{file} changed on disk since it was built"
    return None


def _package_changed(paths: BuildDir, records: Records, stat_cache: StatCache) -> str | None:
    """Why the package folder is not the one its manifest describes, or None."""
    manifest, _ = records.read(paths.package / package.MANIFEST) if (paths.package / package.MANIFEST).is_file() \
        else (None, False)
    if manifest is None:
        return "no package yet"
    table = package.file_table(paths.package, sha256=stat_cache.sha256)
    return None if table == package.all_files(manifest) else "package files changed"


class _PreviousParts:
    """A stage's parts (:class:`pipeline.stages.Parts`) taken from its previous output when their keys match."""

    def __init__(self, stage_dir: Path, previous: dict[str, Any] | None, workdir: Path,
                 stat_cache: StatCache) -> None:
        self.stage_dir, self.workdir, self.stat_cache = stage_dir, workdir, stat_cache
        parts = (previous or {}).get("parts")
        self.previous: dict[str, Any] = parts if isinstance(parts, dict) else {}
        self.parts: dict[str, dict[str, Any]] = {}  # part -> {"key", "files": {name: sha256 or None}}
        self.taken: list[str] = []

    def take(self, part: str, key: str) -> list[str] | None:
        entry = self.previous.get(part)
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("files"), dict):
            return None
        files: dict[str, str] = entry["files"]
        for file, sha in files.items():
            path = self.stage_dir / file
            if not path.is_file() or self.stat_cache.sha256(path) != sha:
                return None
        for file in files:
            link_or_copy(self.stage_dir / file, self.workdir / file)
        self.parts[part] = {"key": key, "files": dict(files)}
        self.taken.append(part)
        return list(files)

    def made(self, part: str, key: str, files: Sequence[str]) -> None:
        self.parts[part] = {"key": key, "files": dict.fromkeys(files)}

    def record(self) -> dict[str, Any]:
        """The parts whose files are all in the finished output, with their sha256."""
        out = {}
        for part, entry in self.parts.items():
            if all((self.workdir / f).is_file() for f in entry["files"]):
                out[part] = {"key": entry["key"], "files": {f: sha or sha256_file(self.workdir / f)
                                                            for f, sha in entry["files"].items()}}
        return out


def _run_stage(stage: Stage[Any], name: str, params: StageParams, recipe: Recipe, source: _Source, stage_dir: Path,
               stage_fp: str, previous: dict[str, Any] | None = None,
               stat_cache: StatCache | None = None) -> dict[str, Any]:
    t = time.perf_counter()
    with atomic_dir(stage_dir) as workdir:
        parts = _PreviousParts(stage_dir, previous, workdir, stat_cache or StatCache())
        try:
            artifacts = stage.run(StageContext(recipe=recipe, source=source.loaded, workdir=workdir, parts=parts),
                                  params)
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
            "versions": library_versions(stage.libraries),
            "parts": parts.record(),
            "reused_parts": parts.taken,
        }
        write_json(workdir / STAGE_RECORD, record)
    return record


def _artifacts(record: dict[str, Any]) -> list[Artifact]:
    outputs = record["outputs"]
    return [Artifact(name=name, files=tuple(outputs[name]["files"]), metadata=outputs[name]["metadata"],
                     skips_padding=outputs[name].get("skips_padding", False),
                     optional=outputs[name].get("optional", False))
            for name in record.get("order", outputs)]


def bench(recipe: Recipe, out: Path, *, settings: BenchSettings | None = None,
          on_event: Events | None = None) -> dict[str, Any]:
    """Benchmark an existing build of ``recipe`` (eager and every artifact that passed its gate).

    ``settings`` (a :class:`pipeline.bench.BenchSettings`) defaults to the recipe's ``bench`` section.
    Writes ``bench.json`` and ``bench.png`` into the build folder and returns the report.

    Raises:
        SourceError: the source cannot be loaded (eager is measured too).
        RecipeError: ``bench.texts_file`` is missing, unreadable or outside the recipe's folder.
        PipelineError: there is no completed build to measure.
    """
    emit = on_event or (lambda step, message: None)
    check_installed(recipe)  # the runners of every built target are needed to measure them
    build_dir = out / recipe.name
    if not BuildDir(build_dir).parity.is_file():
        raise PipelineError(f"{build_dir}: no build to measure (run `convert build {recipe.path or recipe.name}` "
                            "first)")
    settings = traffic.with_texts(recipe, settings or recipe.bench.settings())  # a bad texts file: before loading
    emit("source", f"loading {recipe.source.describe()}")
    loaded = source_mod.load(recipe, *source_mod.resolve_checked(recipe))
    return bench_mod.run(build_dir, loaded, settings, on_event=emit)
