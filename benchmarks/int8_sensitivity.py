"""Choose, by measurement, which MatMuls the int8 variant keeps in fp32.

For an existing build of RECIPE (its fp32 ONNX graph and golden eager outputs), quantize one
MatMul at a time — with the stage's own quantization code and settings — and measure the worst
mean-pooled cosine on the recipe's texts; then keep the most damaging ones in fp32, one more at a
time, until the worst cosine reaches --target. Prints the table and the `exclude_nodes` list to
paste under `targets.onnx.int8`.

    python benchmarks/int8_sensitivity.py recipes/all-minilm-l6-v2.yaml [--target 0.99] [--out artifacts]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import recipe as recipe_mod  # noqa: E402
from pipeline.parity import TEXTS, load_golden, mean_pool  # noqa: E402
from pipeline.stages.onnx import ONNX_FILE, ort_runner, prepare_int8_input, quantize_int8  # noqa: E402


def worst_pooled_cosine(path: Path, inputs: dict[str, np.ndarray], eager: np.ndarray) -> float:
    out = ort_runner(path, threads=2)(inputs)["last_hidden_state"]
    a, e = mean_pool(out, inputs["attention_mask"]), mean_pool(eager, inputs["attention_mask"])
    cos = (a * e).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(e, axis=1))
    return float(cos.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "artifacts")
    parser.add_argument("--target", type=float, default=0.99)
    args = parser.parse_args()

    import onnx
    from transformers import AutoConfig

    logging.disable(logging.WARNING)
    recipe = recipe_mod.load(args.recipe)
    params = recipe.target_params()["onnx"].int8  # type: ignore[attr-defined]
    build = args.out / recipe.name
    inputs = load_golden(build / "golden" / "golden_inputs.npz")[TEXTS]
    eager = load_golden(build / "golden" / "golden_outputs.npz")[TEXTS]["last_hidden_state"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare_int8_input(build / "stages" / "onnx" / ONNX_FILE, folder, AutoConfig.from_pretrained(
            build / "package"), params)
        graph = onnx.load(str(folder / ONNX_FILE))
        weights = {i.name for i in graph.graph.initializer}
        nodes = [n.name for n in graph.graph.node
                 if n.op_type in params.operators and any(i in weights for i in n.input)]

        def worst(**kwargs: list[str]) -> float:
            return worst_pooled_cosine(quantize_int8(folder, params, **kwargs), inputs, eager)

        print(f"{len(nodes)} quantizable nodes; all quantized: worst pooled cosine {worst():.4f}")
        damage = sorted((worst(nodes_to_quantize=[n]), n) for n in nodes)
        print("most sensitive alone:")
        for cos, name in damage[:10]:
            print(f"  {cos:.5f}  {name}")
        excluded: list[str] = []
        for _, name in damage:
            excluded.append(name)
            cos = worst(nodes_to_exclude=excluded)
            print(f"keeping {len(excluded):2d} in fp32: worst pooled cosine {cos:.4f}")
            if cos >= args.target:
                break
        print("\nexclude_nodes:")
        for name in excluded:
            print(f"  - {name}")


if __name__ == "__main__":
    main()
