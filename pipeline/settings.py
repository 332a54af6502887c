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
