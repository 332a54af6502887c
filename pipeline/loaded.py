"""What a source is once resolved (a folder and the hashes that identify it) and once loaded (the model).

A leaf: plain dataclasses that stages, parity, the benchmark and the build all take, so none of
them imports the module that resolves and loads (pipeline/source.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.paths import MissingPath, inside
from pipeline.pooling import Pooling


@dataclass(frozen=True)
class ResolvedSource:
    """Where a checkpoint is and what identifies its content."""

    kind: str  # "hub", "folder" or "package"
    folder: Path
    id: str  # hub id, package name or the folder as written in the recipe
    revision: str | None  # hub: the resolved commit sha; package: its version
    files: dict[str, str]  # relative path -> sha256 of every file in the checkpoint folder
    # where the folder's symlinks may lead: the folder itself, or a Hub cache's blobs/ for a snapshot
    links_within: Path | None = None

    def file(self, name: str) -> Path | None:
        """The checkpoint file ``name`` (relative), resolved inside the folder; None where it has none.

        Raises:
            UnsafePath: ``name`` leaves the folder, or is a symlink leading out of it, or not a regular file.
        """
        try:
            return inside(self.folder, name, what="file", kind="file", links_within=self.links_within)
        except MissingPath:
            return None

    @property
    def fingerprint(self) -> str:
        """The hub commit when there is one, else a hash over the files' hashes."""
        if self.kind == "hub" and self.revision:
            return self.revision
        blob = json.dumps(self.files, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def provenance(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "revision": self.revision,
                "fingerprint": self.fingerprint}


@dataclass
class LoadedSource:
    """The source model, loaded once per build and shared by every stage."""

    resolved: ResolvedSource
    task: str
    model: Any  # transformers.PreTrainedModel, in eval mode
    tokenizer: Any  # transformers.PreTrainedTokenizerBase; None for image tasks
    config: Any
    model_type: str
    load_info: dict[str, Any] = field(default_factory=dict)
    processor: Any = None  # the image processor (preprocessor_config.json) of image tasks
    pooling: Pooling | None = None  # the recipe's sentence_embedding, resolved against the checkpoint
