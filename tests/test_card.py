"""The model card takes its tags, library_name and usage from the targets actually packaged."""

from __future__ import annotations

from typing import Any

import yaml

from pipeline.card import render


def _card(artifacts: dict[str, tuple[str, str]], task: str = "feature-extraction") -> tuple[dict[str, Any], str]:
    """Render a card for packaged ``artifacts`` ({name: (stage, file)}); returns (front matter, text)."""
    entries = {name: {"stage": stage, "folder": stage, "files": [f"{stage}/{file}"],
                      "metadata": {"file": file, "outputs": ["last_hidden_state"]}}
               for name, (stage, file) in artifacts.items()}
    manifest = {"task": task, "name": "tiny", "source": {"id": "org/tiny", "kind": "hub", "revision": "0" * 40},
                "artifacts": entries, "recipe_sha256": "a" * 64, "recommended": None,
                "files": {f: {"size": 1000} for e in entries.values() for f in e["files"]}}
    gate = {"atol": 1e-4, "rtol": None, "min_cosine": None, "min_pooled_cosine": None, "min_argmax_agreement": None,
            "batches": "all"}
    parity = {"golden": [{"batch": "texts", "shape": [2, 7], "padded_tokens": 3}],
              "artifacts": {name: {"gate": gate, "batches": [], "passed": True} for name in artifacts}}
    text = render(repo_id="org/tiny-cpu", manifest=manifest, parity=parity, bench=None, license=None)
    return yaml.safe_load(text.split("---", 2)[1]), text


def test_a_torch_only_package_is_not_tagged_onnx() -> None:
    meta, text = _card({"torchscript": ("torchscript", "model.pt"), "torch_export": ("torch_export", "model.pt2")})
    assert meta["library_name"] == "pytorch"
    assert not {"onnx", "optimum", "transformers.js"} & set(meta["tags"])
    assert {"torchscript", "torch_export", "parity-gated"} <= set(meta["tags"])
    assert 'torch.jit.load(hf_hub_download("org/tiny-cpu", "torchscript/model.pt"))' in text
    assert 'torch.export.load(hf_hub_download("org/tiny-cpu", "torch_export/model.pt2"))' in text
    assert "onnxruntime" not in text and "transformers.js" not in text


def test_an_onnx_package_names_its_consumers() -> None:
    meta, text = _card({"onnx": ("onnx", "model.onnx"), "torchscript": ("torchscript", "model.pt")})
    assert meta["library_name"] == "onnx"
    assert {"onnx", "optimum", "transformers.js", "torchscript", "parity-gated"} <= set(meta["tags"])
    assert 'ORTModelForFeatureExtraction.from_pretrained("org/tiny-cpu", subfolder="onnx", file_name="model.onnx")' \
        in text
    assert text.index("With optimum") < text.index("`torchscript` with torch alone")  # targets in package order
