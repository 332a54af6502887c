"""`make test`'s passes as the lower CPU classes: the ``cpu_sensitive`` tests once per class this machine can
emulate below its own (pipeline/cpu.py), each in its own pytest process with that class's environment.

oneDNN (OpenVINO) reads ``ONEDNN_MAX_CPU_ISA`` when its plugin loads, so each class needs a fresh process;
onnxruntime's int8 files run on the class's exact U8U8 path (``CONVERT_ORT_SESSION_CONFIG``). On a VNNI machine
that is two passes (avx512, avx2), on an AVX-512 machine one (avx2), on an AVX2-only machine none: the main pass
already computes as its CPU does. ``python -m tests.cpu_passes`` exits with the first failing pass's code.
"""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline import cpu, settings

FILES = ["tests/test_cpu_classes.py", "tests/test_openvino.py", "tests/test_int8_cpu.py",
         "tests/test_sentence_transformers.py"]


def lower_classes(record: dict | None = None) -> list[str]:
    """The classes below this process's own that it can compute as, highest first (``record``: a CPU record
    of pipeline/cpu.py, this machine's by default)."""
    own = cpu.current_class(record)
    return sorted((c for c in cpu.emulable(record) if c != own), key=lambda c: -cpu.CLASSES[c].rank)


def env_for(name: str) -> dict[str, str]:
    """The environment of a pass that computes as class ``name``."""
    c = cpu.CLASSES[name]
    config = ",".join(f"{k}={v}" for k, v in c.ort_session_config.items())
    return {**os.environ, settings.ONEDNN_ISA_ENV: c.onednn_isa, **({settings.ORT_SESSION_CONFIG_ENV: config}
                                                                   if config else {})}


def main() -> int:
    classes = lower_classes()
    print(f"cpu passes: this machine is {cpu.current_class()}; emulated passes: {', '.join(classes) or 'none'}",
          flush=True)
    for name in classes:
        print(f"cpu pass as {name} ({cpu.CLASSES[name].description})", flush=True)
        rc = subprocess.call([sys.executable, "-m", "pytest", "-m", "cpu_sensitive", *FILES], env=env_for(name))
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
