"""The benchmark's settings: what the recipe's ``bench`` section and ``convert bench`` options give the harness.

A leaf (a dataclass), so the recipe can build it without importing the harness (pipeline/bench.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchSettings:
    shapes: tuple[tuple[int, int], ...] = ((1, 128), (8, 128))
    padding: float = 0.0  # share of padding tokens in every row but the first
    threads: int = 2
    warmup: int = 3
    runs: int = 10  # interleaved rounds: timed runs per artifact and workload
    traffic_batches: tuple[int, ...] = (1, 8, 32)
    texts: tuple[str, ...] = ()  # traffic mode's texts (none: traffic mode is skipped)
    texts_source: str = ""  # where they came from, for the report
    sort_by_length: bool = False
    recommend_on: str = "primary"  # "primary" (the first shape) or "traffic"
    confidence: float = 0.95
    seed: int = 0
