"""Versions of the libraries that shape an artifact's bytes, read from installed metadata."""

from __future__ import annotations

import functools
import importlib.metadata
import platform

LIBRARIES = ("pipeline-convert", "torch", "transformers", "optimum", "optimum-onnx", "onnx",
             "onnxruntime", "huggingface-hub", "numpy", "safetensors", "tokenizers")


@functools.cache
def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
