"""Lay out passing artifacts as a Hub model repo folder, with a manifest of hashes and provenance.

Layout: ``config.json`` and tokenizer files at the top (what ``from_pretrained`` reads), each
target's files in its own folder (``onnx/model.onnx`` …), the golden inputs and eager outputs,
``parity.json`` and ``manifest.json``. The package is written to a temporary folder and renamed
into place, so a failed build never replaces a good package. Only artifacts that passed their
gate are given to this module; it does not check parity itself.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_dir, link_or_copy, write_json
from pipeline.recipe import Recipe
from pipeline.source import ResolvedSource, sha256_file
from pipeline.versions import library_versions

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
GOLDEN_INPUTS = "golden_inputs.npz"
GOLDEN_OUTPUTS = "golden_outputs.npz"
PARITY = "parity.json"


@dataclass(frozen=True)
class PackagedArtifact:
    name: str
    stage: str
    folder: str  # folder inside the package
    stage_dir: Path
    files: tuple[str, ...]
    sha256: dict[str, str]  # file -> sha256, as the stage record has them
    metadata: dict[str, Any] = field(default_factory=dict)


# Copied from the checkpoint as they are (never re-serialized, so two builds give the same bytes
# whatever the tokenizer was used for in between): what from_pretrained and transformers.js read.
SOURCE_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
                "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


def write(target: Path, *, recipe: Recipe, source: ResolvedSource, task: str, artifacts: list[PackagedArtifact],
          parity: dict[str, Any], golden: tuple[Path, Path]) -> dict[str, Any]:
    """Write the package folder ``target`` atomically; returns its manifest."""
    with atomic_dir(target) as tmp:
        for name in SOURCE_FILES:
            if (source.folder / name).is_file():  # copied, never linked: the checkpoint is not ours to share
                shutil.copyfile(source.folder / name, tmp / name)
        known: dict[str, str] = {}
        for artifact in artifacts:
            (tmp / artifact.folder).mkdir(parents=True, exist_ok=True)
            for name in artifact.files:
                link_or_copy(artifact.stage_dir / name, tmp / artifact.folder / name)
                known[f"{artifact.folder}/{name}"] = artifact.sha256[name]
        link_or_copy(golden[0], tmp / GOLDEN_INPUTS)
        link_or_copy(golden[1], tmp / GOLDEN_OUTPUTS)
        write_json(tmp / PARITY, parity)
        manifest = {
            "format": MANIFEST_FORMAT,
            "name": recipe.name,
            "task": task,
            "recipe": recipe.normalized(),
            "recipe_sha256": recipe.digest(),
            "source": source.provenance(),
            "artifacts": {
                a.name: {"stage": a.stage, "files": [f"{a.folder}/{f}" for f in a.files],
                         "metadata": a.metadata, "parity": "passed"}
                for a in artifacts
            },
            "golden": {"inputs": GOLDEN_INPUTS, "outputs": GOLDEN_OUTPUTS},
            "versions": library_versions(),
            "files": file_table(tmp, known),
        }
        write_json(tmp / MANIFEST, manifest)
    return manifest


def file_table(folder: Path, known: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file below ``folder`` except the manifest itself.

    ``known`` holds hashes computed moments ago for files linked in from a stage folder.
    """
    known = known or {}
    table = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != MANIFEST:
            table[rel] = {"sha256": known.get(rel) or sha256_file(p), "size": p.stat().st_size}
    return table
