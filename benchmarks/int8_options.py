"""int8 options for the demo's ONNX graph: accuracy on held-out sentences and speed, side by side.

For an existing build of RECIPE (its fp32 ONNX graph; `make demo` makes one), quantizes the plain
graph with the stage's own code (``pipeline.stages.onnx.quantize_int8``) under each option — weight
type (QInt8 / QUInt8), per-channel or per-tensor, ``reduce_range``, the recipe's ``exclude_nodes`` or
every MatMul — and runs each graph with onnxruntime natively and, for QInt8 weights, also with
``session.x64quantprecision=1`` (exact U8U8 arithmetic, what a VNNI or ARM64 CPU computes).

Accuracy: worst and mean cosine of the mean-pooled embeddings against eager PyTorch on sentences
that are not in the recipe (benchmarks/data/heldout_sentences.txt), tokenized together (padded),
and the worst on the recipe's own texts (what the int8 gate checks).
Speed: B=8 S=128 (all tokens real), 2 threads, eager and every option timed in interleaved rounds
(one run of each per round, ABCABC…), median per option; the ratio is to eager's median in the
same run. Prints the CPU it ran on.

    python benchmarks/int8_options.py recipes/all-minilm-l6-v2.yaml [--rounds 20] [--out artifacts] [--json F]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import cpu  # noqa: E402
from pipeline import recipe as recipe_mod  # noqa: E402
from pipeline.parity import mean_pool, synthetic_batch  # noqa: E402
from pipeline.stages.onnx import (  # noqa: E402
    EXACT_INT8_SESSION,
    ONNX_FILE,
    ort_runner,
    prepare_int8_input,
    quantize_int8,
)

HELDOUT = REPO / "benchmarks" / "data" / "heldout_sentences.txt"


def cosines(actual: np.ndarray, eager: np.ndarray, mask: np.ndarray) -> np.ndarray:
    a, e = mean_pool(actual, mask), mean_pool(eager, mask)
    return (a * e).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(e, axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "artifacts")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()

    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    logging.disable(logging.WARNING)
    torch.set_num_threads(args.threads)
    recipe = recipe_mod.load(args.recipe)
    base = recipe.target_params()["onnx"].int8  # type: ignore[attr-defined]
    build = args.out / recipe.name
    graph = build / "stages" / "onnx" / ONNX_FILE
    if not graph.is_file():
        sys.exit(f"{graph}: no fp32 graph: build the recipe first (convert build {args.recipe})")
    package = build / "package"
    tokenizer = AutoTokenizer.from_pretrained(package)
    from pipeline import source as source_mod

    model = AutoModel.from_pretrained(source_mod.resolve(recipe).folder, use_safetensors=True).eval()
    texts = [t for t in HELDOUT.read_text(encoding="utf-8").splitlines() if t.strip()]
    assert not set(texts) & set(recipe.validation.texts), "held-out sentences must not be in the recipe"
    held = {k: np.asarray(v, dtype=np.int64) for k, v in tokenizer(texts, padding=True, truncation=True,
                                                                     max_length=256, return_tensors="np").items()}
    gated = {k: np.asarray(v, dtype=np.int64) for k, v in tokenizer(list(recipe.validation.texts), padding=True,
                                                                      truncation=True, max_length=256,
                                                                      return_tensors="np").items()}
    timed = synthetic_batch(tokenizer, set(held), 8, 128, np.random.default_rng(0), lengths=[128] * 8)
    with torch.inference_mode():
        eager_held = model(**{k: torch.from_numpy(v) for k, v in held.items()}).last_hidden_state.numpy()
        eager_gated = model(**{k: torch.from_numpy(v) for k, v in gated.items()}).last_hidden_state.numpy()

    def eager_run(feed: dict[str, np.ndarray]) -> object:
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in feed.items()})

    options = []  # (name, weights, per_channel, reduce_range, excluded)
    for excluded in ((), tuple(base.exclude_nodes)):
        keep = f", {len(excluded)} MatMuls fp32" if excluded else ", all MatMuls"
        for weights, per_channel, reduce_range in (("qint8", True, False), ("qint8", True, True),
                                                   ("quint8", True, False), ("qint8", False, False),
                                                   ("quint8", False, False)):
            name = f"{weights}{' per-channel' if per_channel else ' per-tensor'}" \
                   f"{' reduce_range' if reduce_range else ''}{keep}"
            options.append((name, weights, per_channel, reduce_range, list(excluded)))
    runners = {"eager": eager_run}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = AutoConfig.from_pretrained(package)
        folder = Path(tmp)
        prepare_int8_input(graph, folder, config, base)
        for i, (name, weights, per_channel, reduce_range, excluded) in enumerate(options):
            params = base.model_copy(update={"per_channel": per_channel})
            path = quantize_int8(folder, params, weights=weights, reduce_range=reduce_range,
                                 nodes_to_exclude=excluded, file_name=f"model_option{i}.onnx")
            sessions = [("native", None)]
            if weights == "qint8" and not reduce_range:
                sessions.append(("x64quantprecision=1", EXACT_INT8_SESSION))
            for label, config_entries in sessions:
                run = ort_runner(path, threads=args.threads, session_config=config_entries)
                cos = cosines(run(held)["last_hidden_state"], eager_held, held["attention_mask"])
                texts_cos = cosines(run(gated)["last_hidden_state"], eager_gated, gated["attention_mask"])
                key = f"{name} [{label}]"
                runners[key] = run
                rows.append({"option": key, "worst_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
                             "recipe_texts_worst_cosine": float(texts_cos.min())})
        for run in runners.values():  # warm-up
            run(timed)
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(args.rounds):  # interleaved: drift in machine speed hits every option alike
            for key, run in runners.items():
                start = time.perf_counter()
                run(timed)
                times[key].append((time.perf_counter() - start) * 1000)
    eager_ms = statistics.median(times["eager"])
    print(f"CPU: {cpu.summary()}; {args.threads} threads; {len(texts)} held-out sentences; B=8 S=128, "
          f"{args.rounds} interleaved rounds; eager p50 {eager_ms:.1f} ms")
    print("| option | held-out worst pooled cosine | held-out mean | recipe texts worst (the gate's) | p50 ms | "
          "x eager |\n| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        row["p50_ms"] = statistics.median(times[row["option"]])
        row["x_eager"] = eager_ms / row["p50_ms"]
        print(f"| {row['option']} | {row['worst_cosine']:.4f} | {row['mean_cosine']:.5f} | "
              f"{row['recipe_texts_worst_cosine']:.4f} | {row['p50_ms']:.1f} | {row['x_eager']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu.current(), "eager_p50_ms": eager_ms, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
