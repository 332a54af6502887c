"""Bad sources: each a one-line error naming the recipe field, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.tiny import write_recipe


def _copy(checkpoints: dict, tmp_path: Path, arch: str = "bert", task: str = "feature-extraction") -> Path:
    folder = tmp_path / "model"
    shutil.copytree(checkpoints[(arch, task)], folder)
    return folder


def _pickle_only(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


def _remote_code(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))


def _no_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)


def _truncated(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


def _no_config(folder: Path) -> None:
    (folder / "config.json").unlink()


def _other_shapes(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 64
    (folder / "config.json").write_text(json.dumps(config))


# (id, how to break the checkpoint, recipe overrides, expected message fragments)
CASES = [
    ("missing folder", None, {"source": {"path": "no-such-model"}},
     [":3:9: source.path: folder not found: ", "no-such-model"]),
    ("pickle weights only", _pickle_only, {},
     [":3:9: source.path: ", "has only pickle weights (pytorch_model.bin)", "only safetensors are accepted",
      "source.allow_pickle: true"]),
    ("remote code", _remote_code, {},
     [":3:9: source.path: ", "needs remote code (auto_map: AutoModel)", "never run unless the recipe sets "
      "source.trust_remote_code: true"]),
    ("no config", _no_config, {}, [":3:9: source.path: no config.json in "]),
    ("truncated safetensors", _truncated, {},
     [":3:9: source.path: model.safetensors is truncated or corrupt: the header describes "]),
    ("over the memory budget", None, {"source": {"path": "model", "max_memory_mb": 100}},
     [":4:18: source.max_memory_mb: the weights are 0 MB; a build needs about 600 MB", "over the budget of 100 MB"]),
    ("no tokenizer", _no_tokenizer, {}, [":3:9: source.path: no usable tokenizer in "]),
    ("config does not match weights", _other_shapes, {},
     [":3:9: source.path: ", "does not match", "other shapes than config.json"]),
    ("task the checkpoint has no head for", None, {"task": "text-classification"},
     [":4:7: task: the checkpoint does not match BertForSequenceClassification", "missing 2 weights"]),
    ("task not exportable for the model type", None, {"task": "text-generation"},
     [":4:7: task: 'text-generation' is not supported by the ONNX exporter for model type 'bert'"]),
    ("unknown task", None, {"task": "sentiment"}, [":4:7: task: unknown task 'sentiment'"]),
    ("package not installed", None, {"source": {"package": "no_such_package_here"}},
     [":3:12: source.package: package 'no_such_package_here' is not installed"]),
]


@pytest.mark.parametrize("breaker,overrides,fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_source_is_one_clear_line(tmp_path: Path, checkpoints: dict, breaker, overrides: dict,
                                      fragments: list[str]) -> None:
    folder = _copy(checkpoints, tmp_path)
    if breaker:
        breaker(folder)
    recipe = write_recipe(tmp_path / "recipe.yaml", folder, **overrides)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert errors[0].startswith(f"error: {recipe}:"), errors[0]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert "Traceback" not in result.output
    assert not (out / "tiny" / "package").exists() and not (out / "tiny" / "stages").exists()


def test_pickle_weights_load_when_allowed(tmp_path: Path, checkpoints: dict) -> None:
    import torch
    from safetensors.torch import load_file

    folder = _copy(checkpoints, tmp_path)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    recipe = write_recipe(tmp_path / "recipe.yaml", folder, source={"path": "model", "allow_pickle": True})
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output


def test_a_pickle_that_runs_code_is_refused_even_when_pickles_are_allowed(tmp_path: Path, checkpoints: dict) -> None:
    import pickle

    folder = _copy(checkpoints, tmp_path)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (open, (str(marker), "w"))

    with (folder / "pytorch_model.bin").open("wb") as f:
        pickle.dump({"weight": Evil()}, f)
    recipe = write_recipe(tmp_path / "recipe.yaml", folder, source={"path": "model", "allow_pickle": True})
    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "the checkpoint does not match its config: cannot load weights" in result.stderr
    assert not marker.exists()  # weights_only=True never ran the payload


def test_remote_code_runs_only_when_the_recipe_opts_in(tmp_path: Path, checkpoints: dict) -> None:
    folder = _copy(checkpoints, tmp_path)
    (folder / "modeling_custom.py").write_text(
        "from pathlib import Path\nfrom transformers import BertModel\n"
        "class CustomBert(BertModel):\n"
        "    def __init__(self, config):\n"
        "        super().__init__(config)\n"
        f"        Path({str(tmp_path / 'ran')!r}).write_text('custom code ran')\n")
    _remote_code(folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomBert"}
    (folder / "config.json").write_text(json.dumps(config))
    refused = write_recipe(tmp_path / "refused.yaml", folder)
    assert CliRunner().invoke(main, ["build", str(refused), "--out", str(tmp_path / "o1")]).exit_code == 2
    assert not (tmp_path / "ran").exists()
    allowed = write_recipe(tmp_path / "allowed.yaml", folder, source={"path": "model", "trust_remote_code": True})
    result = CliRunner().invoke(main, ["build", str(allowed), "--out", str(tmp_path / "o2"), "--json"])
    assert (tmp_path / "ran").read_text() == "custom code ran"
    assert result.exit_code == 0, result.output
