"""Incremental and parallel builds, measured.

1. The demo recipe: a full build (--force) vs a no-op rebuild, wall time of the `convert` process.
2. Four tiny recipes (built locally from configs) with `--jobs 1` vs `--jobs 2`, each from scratch.

    python benchmarks/incremental_and_jobs.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CONVERT = str(Path(sys.executable).parent / "convert")


def timed(*args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([CONVERT, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode not in (0,):
        raise SystemExit(f"convert {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from tests.tiny import make_checkpoint, write_recipe

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        demo = str(REPO / "recipes" / "all-minilm-l6-v2.yaml")
        results["demo_full_build_s"] = timed("build", demo, "--out", str(work / "demo"), "--force")
        results["demo_noop_rebuild_s"] = min(timed("build", demo, "--out", str(work / "demo")) for _ in range(3))

        recipes = work / "recipes"
        for i, arch in enumerate(("bert", "roberta", "distilbert", "bert")):
            folder = make_checkpoint(work / "models" / f"{i}-{arch}", arch, seed=i)
            write_recipe(recipes / f"{i}-{arch}.yaml", folder, name=f"tiny-{i}-{arch}",
                         targets={"onnx": {"opset": 17, "variants": ["fp32", "int8"]}})
        for jobs in (1, 2):
            results[f"four_tiny_jobs{jobs}_s"] = timed("build", str(recipes), "--out", str(work / f"j{jobs}"),
                                                       "--jobs", str(jobs))
    results["jobs2_speedup"] = results["four_tiny_jobs1_s"] / results["four_tiny_jobs2_s"]
    for key, value in results.items():
        print(f"{key:24} {value:7.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
