"""A no-op rebuild, measured: wall and CPU seconds of `convert build RECIPE` when every step is reused.

Builds the recipe once if it has no build yet (not timed), checks that a rebuild reuses every step,
then times N rebuilds of the whole `convert` process and prints min/median/max wall and CPU seconds
(CPU: user + system of the child, which load from other processes moves less than wall) and the
machine's load average before and after, since wall time on a shared machine says as much about
the neighbours as about the build.

    python benchmarks/noop_rebuild.py [RECIPE] [--out artifacts] [-n 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONVERT = str(Path(sys.executable).parent / "convert")


def run(recipe: str, out: str) -> tuple[float, float, dict]:
    """One `convert build --json`: (wall s, cpu s, its JSON result)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([CONVERT, "build", recipe, "--out", out, "--json"], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"convert build {recipe} failed:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default=str(REPO / "recipes" / "all-minilm-l6-v2.yaml"))
    parser.add_argument("--out", default="artifacts")
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    _, _, first = run(args.recipe, args.out)  # builds what is missing, and warms the stat cache
    steps = {s["stage"] for s in first["stages"]} | {"golden", "package"}
    _, _, data = run(args.recipe, args.out)
    not_reused = sorted(steps - set(data["reused"]))
    if not_reused:
        raise SystemExit(f"not a no-op rebuild: {', '.join(not_reused)} ran again")
    load_before = os.getloadavg()
    walls, cpus = [], []
    for _ in range(args.n):
        wall, cpu, _ = run(args.recipe, args.out)
        walls.append(wall)
        cpus.append(cpu)
    load_after = os.getloadavg()
    results = {"runs": args.n, "wall_s": [min(walls), statistics.median(walls), max(walls)],
               "cpu_s": [min(cpus), statistics.median(cpus), max(cpus)],
               "load_1m_before_after": [load_before[0], load_after[0]], "cores": os.cpu_count(),
               "steps_reused": sorted(data["reused"])}
    print(f"no-op rebuild of {Path(args.recipe).name}, {args.n} runs (min / median / max)")
    print(f"  wall s  {' / '.join(f'{v:.3f}' for v in results['wall_s'])}")
    print(f"  cpu s   {' / '.join(f'{v:.3f}' for v in results['cpu_s'])}")
    print(f"  load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after, {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
