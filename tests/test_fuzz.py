"""Property-based recipes: valid, subtly wrong, garbage or hostile — never a crash, never a write.

Every generated file must either load as a Recipe, or make `convert validate` and `convert build`
exit 2 with one `file[:line:col]: field: message` line per problem, no traceback, and nothing
written under the output folder.
"""

from __future__ import annotations

import copy
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import recipe as recipe_mod
from pipeline.cli import main
from pipeline.errors import RecipeError

BASE: dict[str, Any] = {
    "name": "fuzz",
    "source": {"path": "model"},
    "task": "feature-extraction",
    "targets": {"onnx": {"opset": 17, "variants": ["fp32", "int8"], "int8": {"per_channel": True}}},
    "validation": {"texts": ["a man is eating food."], "shapes": [[1, 5], [3, 24]],
                   "gates": {"onnx": {"atol": 1e-4}}},
    "bench": {"runs": 3},
    "publish": {"repo": "org/fuzz", "tag": "v1"},
}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**18, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x2FFFF), max_size=8),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def _set(data: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return data


@st.composite
def mutated(draw: st.DrawFn) -> str:
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(data)))
        action = draw(st.sampled_from(["set", "delete", "unknown key", "wrap", "stringify"]))
        target = data
        for part in path[:-1] if path else ():
            target = target[part]
        if action == "set":
            data = _set(data, path, draw(values))
        elif action == "delete" and path and isinstance(target, dict | list):
            del target[path[-1]]
        elif action == "unknown key" and isinstance(target, dict):
            target[draw(st.text(min_size=1, max_size=8))] = draw(values)
        elif action == "wrap" and path:
            data = _set(data, path, [target[path[-1]]] if draw(st.booleans()) else {"x": target[path[-1]]})
        elif action == "stringify" and path:
            data = _set(data, path, str(target[path[-1]]))
    text = yaml.safe_dump(data, allow_unicode=draw(st.booleans()), sort_keys=False)
    if draw(st.integers(0, 9)) == 0:  # a duplicate key
        text += text.splitlines()[0] + "\n"
    return text


def _alias_bomb(depth: int, width: int) -> str:
    lines = ["name: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, depth):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


texts = st.one_of(
    mutated(),
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.builds(_alias_bomb, st.integers(2, 9), st.integers(2, 9)),
    st.integers(1, 300).map(lambda n: "targets: " + "[" * n + "]" * n + "\n"),
    st.just(""), st.just("---\n...\n"), st.just("name: [unclosed\n"), st.just("\t- tab\n"),
)

LINE = re.compile(r"^error: (?P<path>[^:]+)(:\d+(:\d+)?)?: .+$")


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(texts)
def test_any_recipe_loads_or_fails_cleanly(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.yaml"
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        try:
            recipe = recipe_mod.load(path)
        except RecipeError as e:
            assert e.problems and all(str(p).startswith(str(path)) for p in e.problems)
            recipe = None
        out = Path(tmp) / "out"
        for command in (["validate", str(path)], ["build", str(path), "--out", str(out)]):
            result = CliRunner().invoke(main, command)
            assert "Traceback" not in result.output
            if recipe is None:
                assert result.exit_code == 2, (command, result.output)
                lines = result.stderr.strip().splitlines()
                assert lines and all((m := LINE.match(line)) and m["path"] == str(path) for line in lines), lines
            else:  # a valid recipe; its source folder does not exist, which is a clean error too
                assert result.exit_code in (0, 2), result.output
        assert not out.exists() or recipe is not None and not any(out.rglob("*"))
