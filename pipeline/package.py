"""Lay out passing artifacts as a Hub model repo folder, with a manifest of hashes and provenance.

Layout: ``config.json`` and tokenizer files at the top (what ``from_pretrained`` reads), each
target's files in its own folder (``onnx/model.onnx`` …), the golden inputs and eager outputs,
``parity.json``, the model card ``README.md`` (and ``bench.json``/``bench.png`` when the build
measured them) and ``manifest.json``. The package is written to a temporary folder and renamed
into place, so a failed build never replaces a good package. Only artifacts that passed their
gate are given to this module; it does not check parity itself.

The manifest is deterministic: the same recipe built twice gives the same manifest, except its
``timing`` section, which holds the benchmark and the files that show it (README.md, bench.*).
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import __version__, cpu
from pipeline.atomic import atomic_dir, link_or_copy, write_json
from pipeline.card import render
from pipeline.carry import Carried, checkpoint_license
from pipeline.filehash import sha256_file
from pipeline.layout import BENCH_JSON, BENCH_PNG, CARD, GOLDEN_INPUTS, GOLDEN_OUTPUTS, MANIFEST, PARITY
from pipeline.loaded import ResolvedSource
from pipeline.recipe import Recipe
from pipeline.stages import get_stage
from pipeline.versions import library_versions

__all__ = ["BENCH_PNG", "CARD", "GOLDEN_INPUTS", "GOLDEN_OUTPUTS", "MANIFEST", "PARITY", "PackagedArtifact",
           "all_files", "file_table", "rebuild_command", "recommended_by_class", "write"]
MANIFEST_FORMAT = 1
TIMING_FILES = (CARD, BENCH_JSON, BENCH_PNG)  # their bytes depend on measured times


@dataclass(frozen=True)
class PackagedArtifact:
    name: str
    stage: str
    folder: str  # folder inside the package
    stage_dir: Path
    files: tuple[str, ...]
    sha256: dict[str, str]  # file -> sha256, as the stage record has them
    metadata: dict[str, Any] = field(default_factory=dict)
    skips_padding: bool = False


# Copied from the checkpoint as they are (never re-serialized, so two builds give the same bytes
# whatever the tokenizer was used for in between): what from_pretrained and transformers.js read.
SOURCE_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
                "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "spm.model",
                "tokenizer.model")


def write(target: Path, *, recipe: Recipe, source: ResolvedSource, task: str, artifacts: list[PackagedArtifact],
          parity: dict[str, Any], golden: tuple[Path, Path], bench: dict[str, Any] | None = None,
          bench_chart: Path | None = None, carried: Carried | None = None) -> dict[str, Any]:
    """Write the package folder ``target`` atomically; returns its manifest.

    ``bench`` (a benchmark report of this build) names the recommended artifact and adds the
    benchmark table and ``bench_chart`` to the card. ``carried`` (:func:`pipeline.carry.plan`, decided
    when the source was checked) adds the sentence-transformers files and the source weights.
    """
    sentence = carried.sentence if carried is not None else None
    weights = carried.weights if carried is not None else None
    with atomic_dir(target) as tmp:
        # copied, never linked: the checkpoint is not ours to share; source.file keeps to the checkpoint folder
        copied = [*SOURCE_FILES, *(sentence.copied if sentence else ()), *(weights.files if weights else ())]
        for name in dict.fromkeys(copied):
            if (found := source.file(name)) is not None:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(found, tmp / name)
        for name, data in sentence.written if sentence else ():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        known: dict[str, str] = {}
        for artifact in artifacts:
            (tmp / artifact.folder).mkdir(parents=True, exist_ok=True)
            for name in artifact.files:
                link_or_copy(artifact.stage_dir / name, tmp / artifact.folder / name)
                known[f"{artifact.folder}/{name}"] = artifact.sha256[name]
        link_or_copy(golden[0], tmp / GOLDEN_INPUTS)
        link_or_copy(golden[1], tmp / GOLDEN_OUTPUTS)
        write_json(tmp / PARITY, parity)
        if bench is not None:
            write_json(tmp / BENCH_JSON, bench)
            if bench_chart is not None and bench_chart.is_file():
                shutil.copyfile(bench_chart, tmp / BENCH_PNG)
        manifest = {
            "format": MANIFEST_FORMAT,
            "name": recipe.name,
            "task": task,
            "recipe": recipe.normalized(),
            "recipe_sha256": recipe.digest(),
            "source": source.provenance(),
            "command": rebuild_command(recipe),
            "artifacts": {
                a.name: {"stage": a.stage, "folder": a.folder, "files": [f"{a.folder}/{f}" for f in a.files],
                         "metadata": a.metadata, "skips_padding": a.skips_padding, "parity": "passed",
                         # the gate per CPU class (pipeline/regate.py): figures, and whether it is offered there
                         "cpu_classes": parity["artifacts"].get(a.name, {}).get("cpu_classes") or {}}
                for a in artifacts
            },
            "recommended": bench["recommended"] if bench else None,
            "recommended_by_class": recommended_by_class(
                {a.name: parity["artifacts"].get(a.name, {}).get("cpu_classes") or {} for a in artifacts}, bench),
            "golden": {"inputs": GOLDEN_INPUTS, "outputs": GOLDEN_OUTPUTS},
            # what sentence-transformers loads (None: not a sentence-transformers repo), and the source weights
            "sentence_transformers": sentence.record() if sentence else None,
            "source_weights": weights.record() if weights else None,
            "versions": library_versions(lib for a in artifacts for lib in get_stage(a.stage).libraries),
            # parity numbers (and which int8 kernels ran) belong to the CPU that gated them
            "gated_on": cpu.numerics_record(),
        }
        table = file_table(tmp, known)
        manifest["files"] = table  # before the card: the card shows sizes
        card = tmp / CARD
        card.write_text(render(repo_id=recipe.publish.repo if recipe.publish else None, manifest=manifest,
                               parity=parity, bench=bench, license=checkpoint_license(source)), encoding="utf-8")
        table = {**table, CARD: {"sha256": sha256_file(card), "size": card.stat().st_size}}
        manifest["files"] = {k: v for k, v in table.items() if k not in TIMING_FILES}
        manifest["timing"] = {
            "bench": {k: bench.get(k) for k in ("settings", "primary_shape", "recommended", "decision", "results",
                                                "traffic", "noise")} if bench else None,
            "files": {k: v for k, v in table.items() if k in TIMING_FILES},
        }
        write_json(tmp / MANIFEST, manifest)
    return manifest


def recommended_by_class(classes: dict[str, dict[str, dict[str, Any]]],
                         bench: dict[str, Any] | None) -> dict[str, str | None]:
    """Per CPU class: the benchmark's recommendation where it is offered for the class, else the fastest
    artifact offered there at the primary shape (speeds as measured on the building CPU); None without a
    benchmark or where nothing is offered. ``classes``: each artifact's per-class records."""
    names = sorted({c for records in classes.values() for c in records})
    if not bench:
        return dict.fromkeys(names)
    primary = bench.get("primary_shape")
    speed = sorted((r["p50_ms"], r["artifact"]) for r in bench.get("results", []) if r["shape"] == primary)
    out: dict[str, str | None] = {}
    for name in names:
        offered = {a for a, records in classes.items() if records.get(name, {}).get("offered")}
        pick = bench.get("recommended") if bench.get("recommended") in offered else None
        out[name] = pick or next((a for _, a in speed if a in offered), None)
    return out


def rebuild_command(recipe: Recipe) -> str:
    """The command that rebuilds this package: the recipe (also in the manifest, normalized) as a
    path relative to the working folder, with the tool version the manifest records."""
    path = recipe.path
    shown = "recipe.yaml"
    if path is not None:
        relative = os.path.relpath(path.resolve(), Path.cwd())
        shown = relative if not relative.startswith("..") else path.name
    return f"pip install pipeline-convert=={__version__} && convert build {shlex.quote(shown)}"


def all_files(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every file the manifest lists, deterministic and timing ones alike."""
    return {**manifest.get("files", {}), **(manifest.get("timing") or {}).get("files", {})}


def file_table(folder: Path, known: dict[str, str] | None = None,
               sha256: Callable[[Path], str] = sha256_file) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file below ``folder`` except the manifest itself.

    ``known`` holds hashes computed moments ago for files linked in from a stage folder; ``sha256``
    hashes the others (a :class:`pipeline.filehash.StatCache` reads an unchanged file once).
    """
    known = known or {}
    table = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != MANIFEST:
            table[rel] = {"sha256": known.get(rel) or sha256(p), "size": p.stat().st_size}
    return table
