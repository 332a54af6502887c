"""Environment variables the pipeline reads, read here and nowhere else.

(huggingface_hub reads its own: HF_TOKEN, HF_HOME, HF_ENDPOINT; we never read or print the token.)
"""

from __future__ import annotations

import os

THREADS_ENV = "CONVERT_THREADS"
ORT_SESSION_CONFIG_ENV = "CONVERT_ORT_SESSION_CONFIG"


def threads() -> int | None:
    """Intra-op threads for torch and onnxruntime (``CONVERT_THREADS``), or None for their defaults.

    ``convert build DIR --jobs N`` sets it for each job so that jobs × threads ≤ cores.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


# onnxruntime's worker threads keep spinning for a while after each run by default. Every session the pipeline
# opens shares its process, and the cores, with other runtimes (the gate runs eager torch beside it, the
# benchmark interleaves every artifact round by round), and that spinning took the cores from whatever ran
# next: in `convert bench` of the demo on 2 cores the OpenVINO fp32 IR measured 0.66x eager at 1x128 after
# onnxruntime runs and 2.13x with spinning off (onnxruntime's own graphs got faster too, 1.44x -> 1.68x).
ORT_DEFAULT_SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}


def ort_session_config() -> dict[str, str]:
    """onnxruntime session config entries for every session the pipeline opens: no idle spinning
    (:data:`ORT_DEFAULT_SESSION_CONFIG`), then ``CONVERT_ORT_SESSION_CONFIG="key=value,key=value"``'s, which
    win, e.g. ``session.x64quantprecision=1`` to force onnxruntime's exact U8U8 int8 kernels on any x86 CPU (a
    check that nothing depends on the CPU) or ``session.intra_op.allow_spinning=1`` to spin again."""
    value = os.environ.get(ORT_SESSION_CONFIG_ENV, "")
    pairs = (item.partition("=") for item in value.split(",") if item.strip())
    return {**ORT_DEFAULT_SESSION_CONFIG, **{k.strip(): v.strip() for k, _, v in pairs if k.strip() and v.strip()}}


HUB_TIMEOUT_ENV = "CONVERT_HUB_TIMEOUT"
DEFAULT_HUB_TIMEOUT_S = 60.0


def hub_timeout() -> float:
    """Seconds any one Hub request may wait to connect or for the next bytes of an answer
    (``CONVERT_HUB_TIMEOUT``, default 60): a Hub that accepts connections but never answers is an
    error in bounded time, not a hang."""
    try:
        value = float(os.environ.get(HUB_TIMEOUT_ENV, ""))
    except ValueError:
        return DEFAULT_HUB_TIMEOUT_S
    return value if value > 0 else DEFAULT_HUB_TIMEOUT_S


ONEDNN_ISA_ENV = "ONEDNN_MAX_CPU_ISA"  # oneDNN's own: the highest ISA OpenVINO's CPU plugin uses, read at plugin load


def onednn_max_isa() -> str | None:
    """``ONEDNN_MAX_CPU_ISA`` of this process (upper case), or None: with it, OpenVINO computes as a CPU
    of that instruction set would (pipeline/cpu.py maps it to a CPU class)."""
    value = os.environ.get(ONEDNN_ISA_ENV, "").strip().upper()
    return value or None
