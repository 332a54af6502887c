"""benchmarks/peers.py's pure parts: which entries --only keeps, the paired ratio to eager, the table
(synthetic numbers: no model is loaded and nothing is timed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("peers_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


NAMES = ["ours-onnx-optimized", "ours-onnx-int8", "ours-onnx-int8-avx512_vnni", "optimum-cli-fp32", "optimum-cli-avx2",
         "st-O2", "st-avx2", "ov-fp32", "ov-int8-weights"]


def test_only_keeps_names_and_dash_prefixes_in_order(peers) -> None:  # type: ignore[no-untyped-def]
    assert peers.selected(NAMES, None) == NAMES
    assert peers.selected(NAMES, ["st", "ov"]) == ["st-O2", "st-avx2", "ov-fp32", "ov-int8-weights"]
    assert peers.selected(NAMES, ["ours-onnx-int8"]) == ["ours-onnx-int8"]  # a whole name keeps just that entry
    assert peers.selected(NAMES, ["ours-onnx"]) == NAMES[:3]
    assert peers.selected(NAMES, ["st-O2"]) == ["st-O2"]
    with pytest.raises(ValueError, match="no entry named st-O9"):
        peers.selected(NAMES, ["st-O9"])
    with pytest.raises(ValueError, match="no entry named s\\b"):  # a prefix must end at a dash
        peers.selected(NAMES, ["s"])


def test_ratio_pairs_rounds_so_drift_that_hits_a_whole_round_cancels(peers) -> None:  # type: ignore[no-untyped-def]
    drift = np.array([1.0, 3.0, 1.5, 2.5, 1.0, 4.0, 1.2, 2.0, 3.5, 1.1])  # the machine's speed, round by round
    eager = list(100.0 * drift)
    twice_as_fast = list(50.0 * drift)
    ratio = peers.ratio_interval(eager, twice_as_fast)
    assert ratio.median == pytest.approx(2.0) and ratio.low == pytest.approx(2.0) and ratio.high == pytest.approx(2.0)
    assert ratio.n == 10
    with pytest.raises(ValueError, match="not paired"):
        peers.ratio_interval(eager, twice_as_fast[:-1])


def test_table_shows_figures_and_a_failed_row_with_its_error(peers) -> None:  # type: ignore[no-untyped-def]
    rows = [{"name": "eager", "how": "PyTorch", "runs_with": "torch", "file_mb": 90.87,
             "ratio": {"1x128": {"median": 1.0, "low": 1.0, "high": 1.0},
                       "8x128": {"median": 1.0, "low": 1.0, "high": 1.0}},
             "worst_cosine": 1.0, "mean_cosine": 1.0},
            {"name": "st-avx2", "how": "quantized", "runs_with": "st", "file_mb": 23.0,
             "ratio": {"1x128": {"median": 1.234, "low": 1.1, "high": 1.3},
                       "8x128": {"median": 2.0, "low": 1.95, "high": 2.111}},
             "worst_cosine": 0.97081, "mean_cosine": 0.991674},
            {"name": "st-ov-qint8-static", "how": "NNCF", "error": "ImportError: Please install datasets"}]
    lines = peers.markdown_table(rows).splitlines()
    assert lines[0].startswith("| name | how made | runs with | file | B=1 × eager | B=8 S=128 × eager [95 % CI]")
    assert len(lines) == 2 + len(rows) and all(line.count("|") == lines[0].count("|") for line in lines)
    assert "| st-avx2 | quantized | st | 23.0 MB | 1.23 | 2.00 [1.95, 2.11] | 0.9708 | 0.99167 |" in lines
    assert "**failed**: ImportError: Please install datasets" in lines[-1]


def test_cpu_line_names_the_flags_that_matter(peers) -> None:  # type: ignore[no-untyped-def]
    zen4 = {"arch": "x86_64", "isa": ["avx2", "fma"], "model": "AMD EPYC 9R14"}
    assert peers.cpu_line(zen4, 2) == ("CPU: AMD EPYC 9R14; avx2 yes, avx512f no, avx512_vnni no, avx_vnni no, "
                                       "amx no; 2 threads")
    sapphire = {"arch": "x86_64", "isa": ["avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"], "model": None}
    assert peers.cpu_line(sapphire, 4).endswith("avx512_vnni yes, avx_vnni no, amx yes; 4 threads")
    assert peers.cpu_line(sapphire, 4).startswith("CPU: x86_64;")


def test_pooling_matches_sentence_transformers_mean_then_normalize(peers) -> None:  # type: ignore[no-untyped-def]
    tokens = np.array([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]], dtype=np.float32)  # last position is padding
    mask = np.array([[1, 1, 0]])
    out = peers.pooled({"last_hidden_state": tokens}, mask)
    assert out == pytest.approx(np.array([[2.0, 2.0]]) / np.sqrt(8.0))
    given = np.array([[0.6, 0.8]], dtype=np.float32)
    assert np.array_equal(peers.pooled({"sentence_embedding": given, "last_hidden_state": tokens}, mask), given)
