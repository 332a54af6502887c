"""The instruction set of the CPU this process runs on, as far as it shapes artifact numbers and speed.

Read from ``/proc/cpuinfo`` (Linux) and ``platform.machine()``; nothing is imported and nothing
is run. int8 kernels differ by instruction set (onnxruntime's U8S8 path is exact with VNNI, AMX and
ARM64 dot products, and can saturate on x86 without VNNI), and so do fp32 kernels' rounding and
every speed figure: the manifest, ``bench.json``, the model card and ``convert verify`` name the CPU
that gated, measured or re-checked an artifact. This module only describes; it decides nothing.

CPU classes (:data:`CLASSES`) are the x86-64 kinds a consumer's CPU falls into as far as int8 kernels go:
``avx2`` (AVX2 + FMA, no AVX-512, no VNNI), ``avx512`` (AVX-512 without VNNI) and ``avx512_vnni`` (VNNI or
AMX). Each says how this machine computes as such a CPU would: OpenVINO through oneDNN's
``ONEDNN_MAX_CPU_ISA`` (read when the plugin loads, so in a fresh process), onnxruntime through its exact
U8U8 path (``session.x64quantprecision=1``) where the class lacks VNNI. A machine can stand in only for
classes at or below its own instruction set (:func:`emulable`).
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import settings

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
    cls = f"; CPU class {r['cpu_class']}" if r.get("cpu_class") else ""
    return f"{r['arch']} {' '.join(r['isa']) or 'baseline'}{model}; int8 preset {r['int8_preset']}, {exact}{cls}"


def numerics_record(record: dict[str, Any] | None = None) -> dict[str, Any]:
    """What of the record shapes artifact numbers (no model name: machines of one kind share it)."""
    r = record or current()
    return {**{k: r[k] for k in ("arch", "isa", "int8_preset", "exact_u8s8")}, "cpu_class": current_class(r)}


@dataclass(frozen=True)
class CpuClass:
    """A kind of x86-64 CPU whose int8 numbers differ from the others', and how to compute as it does."""

    name: str
    rank: int  # higher: more instructions (a machine emulates the classes at or below its own)
    onednn_isa: str  # ONEDNN_MAX_CPU_ISA that makes OpenVINO's CPU plugin use this class's kernels
    exact_u8s8: bool  # onnxruntime's U8S8 kernels compute exactly (VNNI): else they can saturate
    # onnxruntime session config of the numbers this class gets where U8S8 would saturate: its exact U8U8 path
    ort_session_config: dict[str, str] = field(default_factory=dict)
    description: str = ""


CLASSES: dict[str, CpuClass] = {c.name: c for c in (
    CpuClass("avx2", 0, "AVX2", False, {"session.x64quantprecision": "1"}, "x86-64 with AVX2, no AVX-512, no VNNI"),
    CpuClass("avx512", 1, "AVX512_CORE", False, {"session.x64quantprecision": "1"},
             "x86-64 with AVX-512, no VNNI"),
    CpuClass("avx512_vnni", 2, "AVX512_CORE_VNNI", True, {}, "x86-64 with AVX-512 VNNI, AVX-VNNI or AMX"),
)}
# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) at or above a class's, highest first: what caps a process at that class
_ISA_CLASS = {"AVX2": "avx2", "AVX2_VNNI": "avx2", "AVX2_VNNI_2": "avx2", "AVX512_CORE": "avx512",
              "AVX512_CORE_VNNI": "avx512_vnni", "AVX512_CORE_BF16": "avx512_vnni", "AVX512_CORE_FP16": "avx512_vnni",
              "AVX512_CORE_AMX": "avx512_vnni", "AVX512_CORE_AMX_FP16": "avx512_vnni", "ALL": "avx512_vnni"}


def machine_class(record: dict[str, Any] | None = None) -> str | None:
    """The CPU class of a machine by its flags (None: not x86-64, or below AVX2)."""
    r = record or current()
    if r["arch"] != "x86_64" or "avx2" not in r["isa"]:
        return None
    return r["int8_preset"] if r["int8_preset"] in CLASSES else None


def current_class(record: dict[str, Any] | None = None) -> str | None:
    """The class this process computes as: the machine's, capped by ``ONEDNN_MAX_CPU_ISA`` where it names a
    lower one (a process run as an AVX2 CPU, e.g. `make test`'s emulated pass)."""
    own = machine_class(record)
    capped = _ISA_CLASS.get(settings.onednn_max_isa() or "ALL")  # None: capped below AVX2
    if own is None or capped is None:
        return None
    return min(own, capped, key=lambda c: CLASSES[c].rank)


def emulable(record: dict[str, Any] | None = None) -> list[str]:
    """The classes this process can compute as (at or below its own; AVX-512 ones need AVX-512 instructions)."""
    r = record or current()
    own = current_class(r)
    if own is None:
        return []
    top = CLASSES[own].rank
    return [c.name for c in CLASSES.values()
            if c.rank <= top and (c.name in ("avx2", own) or "avx512bw" in r["isa"])]


def emulation_env(name: str, record: dict[str, Any] | None = None) -> dict[str, str]:
    """The environment of a child process that computes as class ``name`` does (empty for this process's own)."""
    return {} if name == current_class(record) else {settings.ONEDNN_ISA_ENV: CLASSES[name].onednn_isa}
