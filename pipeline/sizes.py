"""Size sanity of a checkpoint before anything is allocated or hashed.

A checkpoint's ``config.json`` decides how much memory building the model allocates, and its
safetensors headers how many bytes the weights hold: both are read here (headers only, never the
tensor data) and compared — with each other, with plausible bounds, and with a memory budget —
before a model is built or a whole file hashed. A config describing a far bigger model than its
weights (``hidden_size: 1000000``, ``num_hidden_layers: 100000``) or a 100 GB sparse weights file
is refused in milliseconds instead of an allocation of terabytes or minutes of hashing.

This module imports only the standard library and :mod:`pipeline.errors`; it raises
:class:`SizeError` (field, message) and leaves it to the caller to say which recipe field it is about.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import EXIT_BAD_INPUT, PipelineError

MAX_HEADER_BYTES = 100 * 2**20  # a safetensors JSON header larger than this is not a checkpoint's
# Plausible upper bounds of config.json fields (far above any published model; an allocation
# from a value beyond them would exhaust any machine).
LIMITS = {
    "vocab_size": 2**22,  # the largest vocabularies are ~256k
    "hidden_size": 2**16, "d_model": 2**16, "dim": 2**16, "n_embd": 2**16, "embedding_size": 2**16,
    "intermediate_size": 2**20, "hidden_dim": 2**20, "ffn_dim": 2**20, "n_inner": 2**20,
    "encoder_ffn_dim": 2**20, "decoder_ffn_dim": 2**20,
    "num_hidden_layers": 1024, "n_layers": 1024, "n_layer": 1024, "num_layers": 1024,
    "encoder_layers": 1024, "decoder_layers": 1024,
    "num_attention_heads": 4096, "n_heads": 4096, "n_head": 4096, "num_key_value_heads": 4096,
    "max_position_embeddings": 2**24, "n_positions": 2**24,
    "image_size": 2**16, "num_labels": 2**20,
}
CONFIG_MISMATCH_FACTOR = 4  # a config may describe up to this many times the weights' parameters...
CONFIG_MISMATCH_SLACK = 10_000_000  # ...plus this many (tied heads, buffers, a rough estimate)
BUILD_MEMORY_FACTOR = 3  # a build holds about 3x the fp32 weights (README, "Scale")
BUILD_MEMORY_BASE_MB = 600
DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
               "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1}


class SizeError(PipelineError):
    """A checkpoint whose sizes are implausible or over the memory budget. ``field`` is the recipe
    field the problem is reported at ("" = the source itself, "max_memory_mb" = the budget)."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Header:
    """What a safetensors header says: bytes of tensor data and number of parameters."""

    data_bytes: int
    parameters: int


def read_header(path: Path) -> Header:
    """Read and check one safetensors header (8-byte length, JSON, then the data it describes).

    Every tensor's byte range must match its dtype and shape, and the ranges must cover the file
    exactly: a truncated, padded or inconsistent file shows here without reading its data.

    Raises:
        ValueError: why the file is not a consistent safetensors file (a short phrase).
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{size} bytes, not even a header")
        length = int.from_bytes(head, "little")
        if length > min(size - 8, MAX_HEADER_BYTES):
            raise ValueError(f"header of {length} bytes in a {size}-byte file")
        try:
            header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError):
            raise ValueError("unreadable header") from None
    if not isinstance(header, dict):
        raise ValueError("unreadable header")
    end = parameters = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = (int(x) for x in entry["data_offsets"])
            shape = [int(d) for d in entry["shape"]]
            width = DTYPE_BYTES.get(entry["dtype"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError("unreadable header") from None
        count = math.prod(shape)
        if width is None or begin < 0 or stop < begin or any(d < 0 for d in shape) \
                or stop - begin != count * width:
            raise ValueError(f"tensor {name[:80]!r}: its byte range does not match its dtype and shape")
        end, parameters = max(end, stop), parameters + count
    if 8 + length + end != size:
        raise ValueError(f"the header describes {end} bytes of tensors, the file holds {size - 8 - length}")
    return Header(data_bytes=end, parameters=parameters)


def _dims(config: dict[str, Any], where: str = "") -> dict[str, int]:
    """The size fields of ``config`` (and of nested sub-configs) that are set, after checking each
    is a positive integer within :data:`LIMITS`."""
    found: dict[str, int] = {}
    for key, value in config.items():
        if isinstance(value, dict) and key.endswith(("_config", "encoder", "decoder")) and not where:
            for sub, number in _dims(value, f"{key}.").items():
                found.setdefault(sub, number)
            continue
        if key not in LIMITS or value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value) or value != int(value) or value < 0:
            raise SizeError(f"config.json: {where}{key}: {value!r} is not a size (expected a positive integer)")
        if value > LIMITS[key]:
            raise SizeError(f"config.json: {where}{key}: {value:g} is not a plausible size (the limit is "
                            f"{LIMITS[key]:,}); refused before building a model that large")
        if not where:
            found[key] = int(value)
        else:
            found.setdefault(key, int(value))
    return found


def _first(dims: dict[str, int], *names: str) -> int | None:
    return next((dims[n] for n in names if dims.get(n)), None)


def estimate_parameters(config: dict[str, Any]) -> int | None:
    """A rough lower estimate of the parameters a transformer ``config`` describes (embeddings and
    the attention and MLP weights of every layer), or None where it names no hidden size.

    Raises:
        SizeError: a size field that is not a positive integer or exceeds :data:`LIMITS`.
    """
    dims = _dims(config)
    hidden = _first(dims, "hidden_size", "d_model", "dim", "n_embd")
    if hidden is None:
        return None
    layers = _first(dims, "num_hidden_layers", "n_layers", "n_layer", "num_layers") or \
        dims.get("encoder_layers", 0) + dims.get("decoder_layers", 0)
    inner = _first(dims, "intermediate_size", "hidden_dim", "ffn_dim", "encoder_ffn_dim", "n_inner") or 4 * hidden
    heads = _first(dims, "num_attention_heads", "n_heads", "n_head")
    kv = dims.get("num_key_value_heads") or heads
    kv_width = hidden * kv // heads if heads and kv else hidden
    attention = 2 * hidden * hidden + 2 * hidden * kv_width
    embedding = _first(dims, "embedding_size") or hidden
    positions = dims.get("n_positions") or (dims.get("max_position_embeddings", 0)
                                            if config.get("position_embedding_type") == "absolute" else 0)
    return dims.get("vocab_size", 0) * embedding + positions * embedding + layers * (attention + 2 * hidden * inner)


def available_memory_mb() -> int | None:
    """Memory the system can give a new process now: MemAvailable from /proc/meminfo (Linux), else
    the free physical pages; None where neither can be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    except (OSError, ValueError, AttributeError):
        return None


def check(config: dict[str, Any], *, parameters: int | None, weight_bytes: int,
          max_memory_mb: int | None) -> None:
    """Refuse a checkpoint whose config is implausible, describes far more parameters than its
    weights hold, or whose build would need more memory than the budget.

    ``parameters``: the safetensors headers' total (None for pickle weights: estimated from their
    bytes). ``max_memory_mb``: the recipe's budget; None = the memory available now.

    Raises:
        SizeError: with the field to report it at.
    """
    estimate = estimate_parameters(config)
    held = parameters if parameters is not None else weight_bytes // 2  # pickles: at least fp16
    if estimate is not None and estimate > CONFIG_MISMATCH_FACTOR * held + CONFIG_MISMATCH_SLACK:
        dims = ", ".join(f"{k} {v:,}" for k, v in _dims(config).items()
                         if k in ("vocab_size", "hidden_size", "d_model", "dim", "n_embd", "num_hidden_layers",
                                  "n_layers", "n_layer", "num_layers", "intermediate_size"))
        raise SizeError(f"config.json describes about {_count(estimate)} parameters ({dims}), the weights hold "
                        f"{_count(held)}: config.json and the weights do not match; refused before building the "
                        "model")
    fp32 = 4 * held if parameters is not None else weight_bytes
    needed = BUILD_MEMORY_FACTOR * fp32 / 2**20 + BUILD_MEMORY_BASE_MB
    budget, why = max_memory_mb, "source.max_memory_mb"
    if budget is None:
        budget = available_memory_mb()
        why = "the memory available now, the default budget; set source.max_memory_mb to raise it"
    if budget is not None and needed > budget:
        raise SizeError(f"the weights are {weight_bytes / 2**20:.0f} MB; a build needs about {needed:.0f} MB "
                        f"({BUILD_MEMORY_FACTOR}x the weights as fp32 + {BUILD_MEMORY_BASE_MB} MB), over the budget "
                        f"of {budget} MB ({why})", field="max_memory_mb")


def _count(n: int) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)
