"""The instruction set of the CPU this process runs on, as far as it shapes artifact numbers and speed.

Read from ``/proc/cpuinfo`` (Linux) and ``platform.machine()``; nothing is imported and nothing
is run. int8 kernels differ by instruction set (onnxruntime's U8S8 path is exact with VNNI, AMX and
ARM64 dot products, and can saturate on x86 without VNNI), and so do fp32 kernels' rounding and
every speed figure: the manifest, ``bench.json``, the model card and ``convert verify`` name the CPU
that gated, measured or re-checked an artifact. This module only describes; it decides nothing.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
# The flags that matter here, in the order they are shown, as /proc/cpuinfo spells them.
X86_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
             "amx_int8", "amx_bf16")
ARM_FLAGS = ("asimd", "asimddp", "i8mm", "sve", "bf16")  # asimddp: the dot product extension (dotprod)
ARM_NAMES = {"asimddp": "dotprod"}


def describe_flags(machine: str, flags: set[str], model: str | None = None) -> dict[str, Any]:
    """The record of a CPU from its architecture and /proc/cpuinfo flags (pure: testable with any flags).

    ``int8_preset`` is the optimum/sentence-transformers int8 preset that suits the CPU, and
    ``exact_u8s8`` whether onnxruntime's U8S8 (QInt8-weight) kernels compute exactly on it.
    """
    arch = {"aarch64": "arm64", "arm64": "arm64", "amd64": "x86_64"}.get(machine.lower(), machine.lower())
    if arch == "arm64":
        isa = [ARM_NAMES.get(f, f) for f in ARM_FLAGS if f in flags]
        preset, exact = "arm64", True
    elif arch == "x86_64":
        isa = [f for f in X86_FLAGS if f in flags]
        vnni = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)
        preset = "avx512_vnni" if vnni else "avx512" if "avx512bw" in flags else "avx2"
        exact = vnni
    else:
        isa, preset, exact = [], None, False
    return {"arch": arch, "isa": isa, "int8_preset": preset, "exact_u8s8": exact, "model": model}


@functools.cache
def current() -> dict[str, Any]:
    """This machine's record (see :func:`describe_flags`); the model name is informational."""
    flags: set[str] = set()
    model = None
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key == "model name" and model is None:
            model = value.strip()
    return describe_flags(platform.machine(), flags, model)


def summary(record: dict[str, Any] | None = None) -> str:
    """One line: ``x86_64 avx2 fma avx512f … (AMD EPYC); int8 preset avx512_vnni, U8S8 exact``."""
    r = record or current()
    exact = "U8S8 exact" if r["exact_u8s8"] else "U8S8 may saturate (no VNNI)"
    model = f" ({r['model']})" if r.get("model") else ""
    return f"{r['arch']} {' '.join(r['isa']) or 'baseline'}{model}; int8 preset {r['int8_preset']}, {exact}"


def numerics_record(record: dict[str, Any] | None = None) -> dict[str, Any]:
    """What of the record shapes artifact numbers (no model name: machines of one kind share it)."""
    r = record or current()
    return {k: r[k] for k in ("arch", "isa", "int8_preset", "exact_u8s8")}
