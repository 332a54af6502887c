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


def ort_session_config() -> dict[str, str]:
    """Extra onnxruntime session config entries for every session the pipeline opens
    (``CONVERT_ORT_SESSION_CONFIG="key=value,key=value"``), e.g. ``session.x64quantprecision=1`` to
    force onnxruntime's exact U8U8 int8 kernels on any x86 CPU: a check that nothing depends on the CPU."""
    value = os.environ.get(ORT_SESSION_CONFIG_ENV, "")
    pairs = (item.partition("=") for item in value.split(",") if item.strip())
    return {k.strip(): v.strip() for k, _, v in pairs if k.strip() and v.strip()}
