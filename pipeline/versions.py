"""Versions of the libraries that shape an artifact's bytes, read from installed metadata.

``BASE`` shapes every step (it loads the source and computes the eager reference); each target adds
the libraries its output and its runner depend on (:attr:`pipeline.stages.Stage.libraries`), so a new
onnxruntime re-runs what onnxruntime made and nothing else.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
from collections.abc import Iterable

BASE = ("pipeline-convert", "torch", "transformers", "huggingface-hub", "numpy", "safetensors", "tokenizers")


@functools.cache
def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def library_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Python's version and those of ``BASE`` and ``extra`` (a step's declared libraries)."""
    return {"python": platform.python_version(), **{name: _version(name) for name in sorted({*BASE, *extra})}}
