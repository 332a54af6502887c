"""Are two clean builds of one recipe byte-identical? Files identical / total, and which differ.

Builds RECIPE twice, each in its own process with its own ``PYTHONHASHSEED`` and its own output
folder (what two release runners do), with the benchmark on build switched off (timings are not
meant to repeat), and compares the two packages' manifests file by file (sha256). ``--checkout DIR``
runs the build from another checkout of this repository (e.g. a ``git worktree`` of an older
commit) with the same interpreter, to measure before/after.

    python benchmarks/reproducible.py recipes/all-minilm-l6-v2.yaml [--checkout DIR] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def build(recipe: Path, out: Path, seed: int, checkout: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "build", str(recipe), "--out", str(out)],
                          cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"build failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    name = yaml.safe_load(recipe.read_text(encoding="utf-8"))["name"]
    manifest = json.loads((out / name / "package" / "manifest.json").read_text(encoding="utf-8"))
    return {path: entry["sha256"] if isinstance(entry, dict) else entry for path, entry in manifest["files"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--checkout", type=Path, default=REPO, help="the checkout whose pipeline builds")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()

    data = yaml.safe_load(args.recipe.read_text(encoding="utf-8"))
    data.setdefault("bench", {})["on_build"] = False  # timings never repeat; the package is what must
    with tempfile.TemporaryDirectory(prefix="reproducible-") as tmp:
        if data["source"].get("path"):  # a local folder, relative to the recipe: keep it findable from the copy
            data["source"]["path"] = str((args.recipe.parent / data["source"]["path"]).resolve())
        recipe = Path(tmp) / args.recipe.name
        recipe.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        one = build(recipe, Path(tmp) / "runner-a", 1, args.checkout.resolve())
        two = build(recipe, Path(tmp) / "runner-b", 2023, args.checkout.resolve())
    names = sorted(set(one) | set(two))
    differing = [n for n in names if one.get(n) != two.get(n)]
    print(f"{len(names) - len(differing)}/{len(names)} files identical across two clean builds "
          f"(PYTHONHASHSEED 1 and 2023, two output folders, two processes)")
    for name in differing:
        print(f"  differs: {name}")
    if args.json:
        args.json.write_text(json.dumps({"total": len(names), "differing": differing}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
