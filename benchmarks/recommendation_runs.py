"""Is the recommendation stable? `convert bench` of a built recipe N times in a row, one line per run.

Issue 14's goal: the recommended artifact is the same in 3 consecutive `convert bench` runs of the
demo on this machine. Each run is the library function `convert bench` calls (interleaved rounds,
bootstrap intervals, the tie rule of pipeline/stats.py); this script prints what each run
recommended, on what basis, why, and the noise it saw, then whether all runs agreed. Build first
(`make demo`); the build folder is read, never changed except its bench.json/bench.png.

    python benchmarks/recommendation_runs.py recipes/all-minilm-l6-v2.yaml [--times 3] [--runs N]
        [--threads N] [--out artifacts] [--json runs.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--times", type=int, default=3, help="consecutive `convert bench` runs")
    parser.add_argument("--runs", type=int, help="rounds per run (default: the recipe's)")
    parser.add_argument("--threads", type=int, help="threads (default: the recipe's)")
    parser.add_argument("--out", type=Path, default=Path("artifacts"))
    parser.add_argument("--json", type=Path, help="also write every run's decision and noise here")
    args = parser.parse_args()

    from pipeline import build as build_mod
    from pipeline import cpu
    from pipeline import recipe as recipe_mod

    recipe = recipe_mod.load(args.recipe)
    settings = recipe.bench.settings()
    settings = dataclasses.replace(settings, **{k: v for k, v in (("runs", args.runs), ("threads", args.threads))
                                                if v})
    print(f"{recipe.name}: {args.times} runs of `convert bench`, {settings.runs} rounds, {settings.threads} "
          f"threads, on {cpu.summary()}")
    runs = []
    for i in range(args.times):
        report = build_mod.bench(recipe, args.out, settings=settings)
        decision, noise = report["decision"], report["noise"]
        runs.append({"recommended": report["recommended"], "decision": decision, "noise": noise})
        print(f"run {i + 1}: {report['recommended']} (lowest median: {decision['lowest_median']}; intervals "
              f"{noise['median_ci_rel_width']:.1%} wide in the median, {noise['max_ci_rel_width']:.1%} at most) — "
              f"{decision['reason']}")
    same = len({r["recommended"] for r in runs}) == 1
    print(f"the same in all {args.times} runs: {'yes' if same else 'no'}")
    if args.json:
        args.json.write_text(json.dumps({"recipe": recipe.name, "cpu": cpu.current(), "runs": runs, "same": same},
                                        indent=2) + "\n", encoding="utf-8")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
