"""Versions of the libraries that shape an artifact's bytes, read from installed metadata.

``BASE`` shapes every step (it loads the source and computes the eager reference); each target adds
the libraries its output and its runner depend on (:attr:`pipeline.stages.Stage.libraries`), so a new
onnxruntime re-runs what onnxruntime made and nothing else.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import re
from collections.abc import Iterable

BASE = ("pipeline-convert", "torch", "transformers", "huggingface-hub", "numpy", "safetensors", "tokenizers")


@functools.cache
def _version(name: str) -> str:
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
    # the Version field read directly: parsing all of METADATA as an email took most of a no-op rebuild's
    # time spent here (torch's METADATA is long)
    text = dist.read_text("METADATA") or ""
    match = re.search(r"^Version:[ \t]*(\S+)", text, re.MULTILINE)
    return match.group(1) if match else dist.version


def library_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Python's version and those of ``BASE`` and ``extra`` (a step's declared libraries)."""
    return {"python": platform.python_version(), **{name: _version(name) for name in sorted({*BASE, *extra})}}
