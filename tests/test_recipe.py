"""Recipe schema: table-driven errors with file:line:col, the JSON schema, the committed recipes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline import recipe as recipe_mod
from pipeline.cli import main
from tests.conftest import REPO
from tests.tiny import write_recipe

GOOD = """\
name: tiny
source:
  path: model
task: feature-extraction
targets:
  onnx:
    opset: 17
validation:
  texts: [a man is eating food.]
  shapes: [[1, 5], [3, 24]]
  gates:
    onnx: {atol: 1.0e-4}
publish:
  repo: my-org/tiny-cpu
  tag: v1
"""


def _edit(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


# (case id, recipe text, expected error lines as regexes, in order)
CASES = [
    ("opset too low", _edit("opset: 17", "opset: 9"),
     [r":7:12: targets\.onnx\.opset: must be >= 14 \(got 9\)$"]),
    ("opset wrong type", _edit("opset: 17", "opset: seventeen"),
     [r":7:12: targets\.onnx\.opset: expected an integer \(got 'seventeen'\)$"]),
    ("unknown top-level key", GOOD + "extra: 1\n",
     [r":16:1: extra: unknown key \(expected one of: name, source, task, targets, sentence_embedding, validation, "
      r"bench, package, publish, public_values\)$"]),
    ("unknown target", _edit("  onnx:\n    opset: 17", "  onxx:\n    opset: 17"),
     [r":6:3: targets\.onxx: unknown key \(expected one of: onnx"]),
    ("misspelled param", _edit("opset: 17", "opsett: 17"),
     [r":7:5: targets\.onnx\.opsett: unknown key \(expected one of: opset, variants, optional, optimization, int8\)$"]),
    ("missing task", _edit("task: feature-extraction\n", ""), [r":1:1: task: required$"]),
    ("hub id without revision", _edit("  path: model", "  model: org/name"),
     [r":3:3: source: revision is required with a Hub model id \('org/name'\)"]),
    ("two source kinds", _edit("  path: model", "  path: model\n  package: some_pkg"),
     [r":3:3: source: give exactly one of model .* \(got path, package\)$"]),
    ("negative atol", _edit("atol: 1.0e-4", "atol: -1"),
     [r":12:18: validation\.gates\.onnx\.atol: must be >= 0 \(got -1\)$"]),
    ("gate for an artifact not built", _edit("    onnx: {atol", "    torchscript: {atol"),
     [r":1:1: validation\.gates names 'torchscript', which this recipe does not build \(its artifacts: onnx\)"]),
    ("zero batch", _edit("[[1, 5], [3, 24]]", "[[0, 5], [3, 24]]"),
     [r":10:13: validation\.shapes\.0\.0: must be >= 1 \(got 0\)$"]),
    ("bad repo id", _edit("my-org/tiny-cpu", "not a repo"),
     [r":14:9: publish\.repo: must be a Hub id like org/name \(got 'not a repo'\)$"]),
    ("no targets", _edit("  onnx:\n    opset: 17\n", "  onnx: null\n"),
     [r":6:3: targets: name at least one target \(one of: onnx"]),
    ("several problems at once", _edit("opset: 17", "opset: 9").replace("name: tiny", "name: Tiny Model"),
     [r":1:7: name: must be lowercase letters", r":7:12: targets\.onnx\.opset: must be >= 14"]),
    ("duplicate key", _edit("task: feature-extraction", "task: feature-extraction\ntask: fill-mask"),
     [r":5:1: task: duplicate key \(first given on line 4\)$"]),
    ("bench texts_file absolute", GOOD + "bench: {texts_file: /etc/passwd}\n",
     [r":16:21: bench\.texts_file: must be a path relative to the recipe's folder \(got the absolute path "
      r"'/etc/passwd'\)$"]),
    ("bench texts_file climbing out", GOOD + "bench: {texts_file: data/../../texts.txt}\n",
     [r":16:21: bench\.texts_file: must stay inside the recipe's folder \(got 'data/\.\./\.\./texts\.txt', "
      r"which climbs out with '\.\.'\)$"]),
    ("bench traffic decision without traffic", GOOD + "bench: {recommend_on: traffic, traffic_batches: []}\n",
     [r":16:8: bench: recommend_on: traffic needs traffic mode: give traffic_batches \(e\.g\. \[1, 8, 32\]\)$"]),
    ("bench texts_file without traffic", GOOD + "bench: {texts_file: t.txt, traffic_batches: []}\n",
     [r":16:8: bench: texts_file is for traffic mode, which traffic_batches: \[\] turns off$"]),
    ("bench traffic batch size twice", GOOD + "bench: {traffic_batches: [8, 8]}\n",
     [r":16:8: bench: traffic_batches lists a size twice \(got \[8, 8\]\)$"]),
    ("bench traffic batch size zero", GOOD + "bench: {traffic_batches: [0, 8]}\n",
     [r":16:27: bench\.traffic_batches\.0: must be >= 1 \(got 0\)$"]),
    ("bench unknown decision basis", GOOD + "bench: {recommend_on: fastest}\n",
     [r":16:23: bench\.recommend_on: input should be 'primary' or 'traffic' \(got 'fastest'\)$"]),
    ("bench confidence too high", GOOD + "bench: {confidence: 1}\n",
     [r":16:21: bench\.confidence: must be <= 0\.999 \(got 1\)$"]),
    ("a variant twice", _edit("opset: 17", "opset: 17\n    variants: [fp32, int8, fp32]"),
     [r":8:15: targets\.onnx\.variants: each variant once \(got \['fp32', 'int8', 'fp32'\]\)$"]),
    ("yaml syntax error", _edit("  path: model", "  path: [model"),
     [r":\d+:\d+: invalid YAML: "]),
    ("empty file", "", [r": empty recipe: expected a mapping"]),
    ("not a mapping", "- just\n- a list\n",
     [r":1:1: expected a mapping with name, source, task, targets \(got list\)"]),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_recipe_lines_and_exit_code(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert line.startswith(f"error: {path}"), line
        assert re.search(pattern, line), (pattern, line)
    assert "Traceback" not in result.output


def test_good_recipe_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD, encoding="utf-8")
    r = recipe_mod.load(path)
    assert r.target_params()["onnx"].opset == 17
    assert r.validation.shapes == [(1, 5), (3, 24)]
    assert r.publish is not None and r.publish.private is True
    assert r.folder == tmp_path
    assert r.validation.gates["onnx"].atol == 1e-4 and r.validation.gates["onnx"].rtol is None


def test_recipe_digest_ignores_formatting_not_content(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    a.write_text(GOOD, encoding="utf-8")
    b.write_text(yaml.safe_dump(yaml.safe_load(GOOD), sort_keys=True), encoding="utf-8")
    c.write_text(_edit("opset: 17", "opset: 18"), encoding="utf-8")
    assert recipe_mod.load(a).digest() == recipe_mod.load(b).digest()
    assert recipe_mod.load(a).digest() != recipe_mod.load(c).digest()


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.yaml'}: no such file"


def test_binary_garbage_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "garbage.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage\x80")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"error: {path}: not UTF-8 text")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(_edit("opset: 17", "opset: 9"), encoding="utf-8")
    result = CliRunner().invoke(main, ["--debug", "validate", str(path)])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "RecipeError" in result.stderr


def test_unknown_task_is_caught_by_validate_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(_edit("task: feature-extraction", "task: feature-extractoin"), encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {path}:4:7: task: unknown task 'feature-extractoin' "
                                     "(did you mean 'feature-extraction'?)")


def test_schema_command_prints_the_json_schema() -> None:
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert set(schema["required"]) == {"name", "source", "task", "targets"}
    targets = schema["$defs"]["Targets"]
    assert targets["additionalProperties"] is False
    onnx = schema["$defs"][targets["properties"]["onnx"]["anyOf"][0]["$ref"].split("/")[-1]]
    assert onnx["properties"]["opset"]["minimum"] == 14


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_committed_recipes_are_valid_and_portable(path: Path) -> None:
    r = recipe_mod.load(path)
    recipe_mod.check_task(r)
    if r.source.path is not None:
        assert not Path(r.source.path).is_absolute(), "committed recipes use paths relative to the recipe"
    assert "/home/" not in path.read_text() and "/root/" not in path.read_text()


@pytest.mark.parametrize("targets,refused", [({"torchscript": {}}, False), ({"onnx": {}}, True),
                                             ({"onnx": {}, "torch_export": {}}, True)])
def test_only_a_target_needing_optimums_onnx_exporter_refuses_a_model_it_does_not_support(
        tmp_path: Path, targets: dict, refused: bool) -> None:
    """funnel has no ONNX config in optimum: a recipe without the onnx target is not refused for it."""
    from pipeline.errors import UnsupportedModelError

    recipe = recipe_mod.load(write_recipe(tmp_path / "r.yaml", tmp_path, targets=targets))
    if not refused:
        recipe_mod.check_task(recipe, model_type="funnel")
        return
    with pytest.raises(UnsupportedModelError, match="model type 'funnel' is not supported by optimum's ONNX exporter"):
        recipe_mod.check_task(recipe, model_type="funnel")


def test_validate_reads_the_bench_texts_file(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD + "bench: {texts_file: texts/traffic.txt}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {path}:16:21: bench.texts_file: 'texts/traffic.txt': no such file in "
                                     f"{tmp_path.resolve()}")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "traffic.txt").write_bytes(b"\n  \n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "holds no text (one text per line)" in result.stderr
    (tmp_path / "texts" / "traffic.txt").write_bytes(b"caf\xe9\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "is not UTF-8 text (byte 3)" in result.stderr
    (tmp_path / "texts" / "traffic.txt").write_text("A man is eating food.\nHi\n", encoding="utf-8")
    assert CliRunner().invoke(main, ["validate", str(path)]).exit_code == 0
