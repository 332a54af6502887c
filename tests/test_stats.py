"""The statistics and the recommendation rule, on synthetic timings (no model, no clock)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stats import Candidate, decide, median_interval, noise, round_order, spread

FP32 = (0.0, 0.0)


def _timings(center: float, jitter: float, n: int = 15, seed: int = 1) -> tuple[float, ...]:
    rng = np.random.default_rng(seed)
    return tuple(float(x) for x in center + rng.uniform(-jitter, jitter, n))


def test_separated_intervals_the_faster_wins_whatever_its_accuracy_or_size() -> None:
    lossy_and_big = Candidate("onnx-int8", _timings(30.0, 1.0), accuracy=(1.0, 5e-3), size=500.0)
    exact = Candidate("onnx", _timings(60.0, 1.0, seed=2), accuracy=FP32, size=90.0)
    decision = decide([exact, lossy_and_big])
    assert decision.recommended == "onnx-int8"
    assert "faster than every other" in decision.reason
    by_name = {r.name: r for r in decision.ranked}
    assert by_name["onnx"].slower_than == ["onnx-int8"] and not by_name["onnx"].tied
    assert by_name["onnx-int8"].tied and by_name["onnx-int8"].interval.high < by_name["onnx"].interval.low
    assert [r.name for r in decision.ranked] == ["onnx-int8", "onnx"]  # fastest first


def test_overlapping_intervals_tie_and_the_more_accurate_wins_even_if_slower() -> None:
    # int8's median is lower, but within the noise: it is not called faster
    lossy = Candidate("onnx-int8", _timings(49.0, 8.0), accuracy=(1.0, 5e-3), size=70.0)
    exact = Candidate("onnx", _timings(51.0, 8.0, seed=2), accuracy=FP32, size=90.0)
    decision = decide([lossy, exact])
    assert decision.ranked[0].name == "onnx-int8"  # the lower median ...
    assert decision.recommended == "onnx"  # ... yet a tie, which goes to the more accurate
    assert all(r.tied for r in decision.ranked)
    assert "ties with onnx-int8" in decision.reason and "most accurate" in decision.reason


def test_a_tie_between_equally_accurate_artifacts_goes_to_the_smaller() -> None:
    big = Candidate("bettertransformer", _timings(50.0, 5.0), accuracy=FP32, size=182.0)
    small = Candidate("torchscript", _timings(50.5, 5.0, seed=2), accuracy=FP32, size=91.0)
    same = Candidate("torch_export", _timings(49.5, 5.0, seed=3), accuracy=FP32, size=91.0)
    decision = decide([big, small, same])
    assert decision.recommended == "torch_export"  # as small as torchscript: then by name
    decision = decide([big, small])
    assert decision.recommended == "torchscript" and "smallest of the most accurate" in decision.reason
    # among lossy artifacts, the smaller error is the more accurate
    a = Candidate("onnx-int8", _timings(50.0, 5.0), accuracy=(1.0, 8e-3), size=20.0)
    b = Candidate("onnx-int8-avx2", _timings(50.0, 5.0, seed=2), accuracy=(1.0, 2e-3), size=70.0)
    assert decide([a, b]).recommended == "onnx-int8-avx2"


def test_a_candidate_beaten_beyond_the_noise_is_out_even_if_it_overlaps_the_fastest() -> None:
    # A is noisy and overlaps everyone; C lies wholly below B: B is out, although B overlaps A
    a = Candidate("a", (10.0, 40.0, 12.0, 38.0, 25.0, 11.0, 39.0), accuracy=(1.0, 0.1), size=1.0)
    b = Candidate("b", _timings(30.0, 0.5), accuracy=FP32, size=1.0)
    c = Candidate("c", _timings(20.0, 0.5, seed=2), accuracy=(1.0, 0.01), size=1.0)
    decision = decide([a, b, c])
    by_name = {r.name: r for r in decision.ranked}
    assert by_name["b"].slower_than == ["c"] and not by_name["b"].tied
    assert by_name["a"].tied and by_name["c"].tied
    assert decision.recommended == "c"  # more accurate than a


def test_deterministic_under_a_seed() -> None:
    samples = _timings(40.0, 6.0, n=12)
    first = median_interval(samples, seed=7)
    assert median_interval(samples, seed=7) == first
    assert median_interval(list(reversed(samples)), seed=7).median == first.median
    assert first.low <= first.median <= first.high and first.n == 12
    cands = [Candidate("x", samples, FP32, 2.0), Candidate("y", _timings(41.0, 6.0, 12, seed=5), FP32, 1.0)]
    assert decide(cands, seed=3).to_json() == decide(cands, seed=3).to_json()
    assert decide(list(reversed(cands)), seed=3).recommended == decide(cands, seed=3).recommended


def test_interval_narrows_with_less_noise_and_confidence() -> None:
    quiet = median_interval(_timings(40.0, 0.5, n=30))
    noisy = median_interval(_timings(40.0, 10.0, n=30))
    assert quiet.rel_width < noisy.rel_width
    assert median_interval(_timings(40.0, 10.0, n=30), confidence=0.5).rel_width < noisy.rel_width
    single = median_interval([5.0])
    assert (single.low, single.median, single.high, single.rel_width) == (5.0, 5.0, 5.0, 0.0)
    with pytest.raises(ValueError, match="no samples"):
        median_interval([])
    with pytest.raises(ValueError, match="confidence"):
        median_interval([1.0, 2.0], confidence=1.0)


def test_noise_is_recorded_per_artifact() -> None:
    intervals = {"onnx": median_interval(_timings(40.0, 0.5)), "eager": median_interval(_timings(80.0, 20.0))}
    spreads = {"onnx": spread(_timings(40.0, 0.5)), "eager": spread(_timings(80.0, 20.0))}
    summary = noise(intervals, spreads)
    assert set(summary["ci_rel_width"]) == {"onnx", "eager"}
    assert summary["ci_rel_width"]["eager"] > summary["ci_rel_width"]["onnx"]
    assert summary["max_ci_rel_width"] == summary["ci_rel_width"]["eager"]
    assert summary["spread_rel"]["eager"] > summary["spread_rel"]["onnx"]
    assert decide([]).recommended is None


def test_rounds_interleave_and_rotate() -> None:
    names = ["a", "b", "c"]
    orders = [round_order(names, r) for r in range(4)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert round_order([], 3) == []
