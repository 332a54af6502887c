"""Environment variables the pipeline reads, read here and nowhere else.

(huggingface_hub reads its own: HF_TOKEN, HF_HOME, HF_ENDPOINT; we never read or print the token.)
"""

from __future__ import annotations

import os

THREADS_ENV = "CONVERT_THREADS"


def threads() -> int | None:
    """Intra-op threads for torch and onnxruntime (``CONVERT_THREADS``), or None for their defaults.

    ``convert build DIR --jobs N`` sets it for each job so that jobs × threads ≤ cores.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None
