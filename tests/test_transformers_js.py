"""transformers.js (Node.js) loads a built package from its folder and reproduces the embeddings:
the fp32 graph matches eager PyTorch's golden outputs, the int8 graph (dtype q8) matches onnxruntime
on the same graph, and the tokenizer files give the same ids as the Python tokenizer."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.parity import load_golden
from pipeline.stages.onnx import ort_runner
from tests.conftest import REPO
from tests.coverage import record
from tests.tiny import write_recipe

JS = REPO / "js"


def _consume(pkg: Path, dtype: str, texts: list[str]) -> list[dict]:
    node = shutil.which("node")
    assert node, "Node.js is required for the transformers.js consumer test"
    assert (JS / "node_modules" / "@huggingface" / "transformers").is_dir(), "run `make test` (installs js/)"
    proc = subprocess.run([node, str(JS / "consume.mjs"), str(pkg), dtype, *texts], capture_output=True, text=True,
                          timeout=120, cwd=JS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_transformers_js_reproduces_the_package(tmp_path: Path, checkpoints: dict, arch: str) -> None:
    from transformers import AutoTokenizer

    texts = ["a man is eating food.", "hi", "the girl is carrying a baby on a plane at dawn"]
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[(arch, "feature-extraction")], validation={"texts": texts},
                          targets={"onnx": {"opset": 17, "variants": ["fp32", "int8"]}})
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    pkg = tmp_path / "out" / "tiny" / "package"
    golden_in = load_golden(pkg / "golden_inputs.npz")["texts"]
    golden_out = load_golden(pkg / "golden_outputs.npz")["texts"]["last_hidden_state"]
    tokenizer = AutoTokenizer.from_pretrained(pkg)

    fp32 = _consume(pkg, "fp32", texts)
    for row, (text, got) in enumerate(zip(texts, fp32, strict=True)):
        ids = tokenizer(text)["input_ids"]
        assert got["ids"] == ids  # tokenizer.json/config as shipped give the Python tokenizer's ids
        n = int(golden_in["attention_mask"][row].sum())
        assert golden_in["input_ids"][row, :n].tolist() == ids
        hidden = np.asarray(got["data"], dtype=np.float32).reshape(got["dims"])[0]
        assert hidden.shape == golden_out[row, :n].shape
        assert float(np.abs(hidden - golden_out[row, :n]).max()) < 1e-4  # eager PyTorch, padded batch

    q8 = _consume(pkg, "q8", texts)
    run = ort_runner(pkg / "onnx" / "model_quantized.onnx")
    for got in q8:
        ids = np.asarray([got["ids"]], dtype=np.int64)
        expected = run({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
        hidden = np.asarray(got["data"], dtype=np.float32).reshape(got["dims"])
        assert float(np.abs(hidden - expected["last_hidden_state"]).max()) < 1e-3
    record(arch, "feature-extraction", "onnx", built=True, parity=True,
           consumer="transformers.js (Node, fp32 and q8)")
