"""Statistics of benchmark timings and the decision which artifact to recommend.

Pure functions over numbers: a median with a seeded bootstrap confidence interval, the noise a set
of timings shows, the order in which interleaved rounds visit artifacts, and the recommendation
rule. An artifact is called faster than another only when their intervals separate; candidates
that no other candidate is faster than tie, and a tie goes to the more accurate, then the smaller
artifact (then the name, so the choice never depends on dict order). numpy and the standard library
only: this module imports nothing of the pipeline, loads nothing and times nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

RESAMPLES = 2000  # bootstrap resamples: the interval's ends move by well under 1 % of their width above this


@dataclass(frozen=True)
class Interval:
    """The median of some timings and a bootstrap confidence interval around it."""

    median: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def rel_width(self) -> float:
        """The interval's width relative to the median: the noise seen, in one number."""
        return (self.high - self.low) / self.median if self.median > 0 else float("inf")

    def separates_below(self, other: Interval) -> bool:
        """True when this interval lies wholly below ``other``'s: faster, beyond the noise."""
        return self.high < other.low


def median_interval(samples: Sequence[float], *, confidence: float = 0.95, seed: int = 0,
                    resamples: int = RESAMPLES) -> Interval:
    """The median of ``samples`` and its percentile-bootstrap interval at ``confidence``.

    The same samples and seed give the same interval. One sample gives a zero-width interval:
    nothing is known about its noise, and the report says how many samples there were.

    Raises:
        ValueError: no samples, or ``confidence`` outside (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (got {confidence})")
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples")
    median = float(np.median(values))
    if values.size == 1:
        return Interval(median, median, median, 1, confidence)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, values.size, size=(resamples, values.size))
    medians = np.median(values[picks], axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return Interval(median, float(low), float(high), int(values.size), confidence)


def spread(samples: Sequence[float]) -> float:
    """(p90 - p10) / median of the samples: how much single timings wander, whatever the interval."""
    values = np.asarray(samples, dtype=np.float64)
    median = float(np.median(values))
    p10, p90 = np.percentile(values, [10, 90])
    return float((p90 - p10) / median) if median > 0 else float("inf")


def round_order(names: Sequence[str], round_index: int) -> list[str]:
    """The order artifacts run in round ``round_index``: all of them once, each round starting one
    further along (ABC, BCA, CAB, …), so no artifact always follows the same one."""
    if not names:
        return []
    k = round_index % len(names)
    return [*names[k:], *names[:k]]


@dataclass(frozen=True)
class Candidate:
    """An artifact that may be recommended: its timings, how accurate it is and how big.

    ``accuracy`` sorts ascending, most accurate first (the caller derives it from the parity
    report, e.g. ``(0, 0.0)`` for fp32-class numerics and ``(1, error)`` for lossy ones);
    ``size`` is its file size in bytes (or any unit, the same for all).
    """

    name: str
    samples: tuple[float, ...]
    accuracy: tuple[float, ...]
    size: float


@dataclass
class Ranked:
    name: str
    interval: Interval
    accuracy: tuple[float, ...]
    size: float
    tied: bool  # no other candidate is faster beyond the noise
    slower_than: list[str] = field(default_factory=list)  # candidates whose interval lies wholly below this one's


@dataclass
class Decision:
    recommended: str | None
    reason: str
    ranked: list[Ranked]  # by median, fastest first

    def to_json(self) -> dict[str, object]:
        return {
            "recommended": self.recommended,
            "reason": self.reason,
            "candidates": [{"artifact": r.name, "median_ms": round(r.interval.median, 4),
                            "ci_ms": [round(r.interval.low, 4), round(r.interval.high, 4)],
                            "ci_rel_width": round(r.interval.rel_width, 4), "samples": r.interval.n,
                            "accuracy": list(r.accuracy), "size": r.size, "tied": r.tied,
                            "slower_than": r.slower_than} for r in self.ranked],
        }


def decide(candidates: Sequence[Candidate], *, confidence: float = 0.95, seed: int = 0,
           resamples: int = RESAMPLES) -> Decision:
    """Recommend one of ``candidates``: among those no other is faster than (intervals separate),
    the most accurate, then the smallest, then the first by name.

    Every interval is computed with the same ``seed``, so the same timings give the same decision.
    """
    if not candidates:
        return Decision(None, "no artifact passed its gate", [])
    ranked = []
    for c in candidates:
        interval = median_interval(c.samples, confidence=confidence, seed=seed, resamples=resamples)
        ranked.append(Ranked(c.name, interval, tuple(c.accuracy), c.size, tied=True))
    for r in ranked:
        r.slower_than = sorted(o.name for o in ranked if o is not r and o.interval.separates_below(r.interval))
        r.tied = not r.slower_than
    ranked.sort(key=lambda r: (r.interval.median, r.name))
    tied = [r for r in ranked if r.tied]
    best = min(tied, key=lambda r: (r.accuracy, r.size, r.name))
    level = f"{confidence:.0%}"
    if len(tied) == 1:
        reason = (f"{best.name} is faster than every other passing artifact: its {level} interval lies below "
                  "theirs")
    else:
        others = [r for r in tied if r is not best]
        names = ", ".join(r.name for r in others)
        if all(r.accuracy > best.accuracy for r in others):
            why = "the most accurate of them"
        elif all(r.accuracy > best.accuracy or r.size > best.size for r in others):
            why = "the smallest of the most accurate"
        else:
            why = "first by name among equally accurate and equally large"
        reason = (f"{best.name} ties with {names} (their {level} intervals overlap, so none is called faster) "
                  f"and is {why}")
    return Decision(best.name, reason, ranked)


def noise(intervals: dict[str, Interval], spreads: dict[str, float] | None = None) -> dict[str, object]:
    """A summary of the noise seen: the relative width of every interval (and spread), with the
    median and the widest, so a reader can tell a quiet run from a noisy one."""
    widths = {k: round(v.rel_width, 4) for k, v in intervals.items()}
    values = list(widths.values())
    out: dict[str, object] = {
        "ci_rel_width": widths,
        "median_ci_rel_width": round(float(np.median(values)), 4) if values else None,
        "max_ci_rel_width": round(max(values), 4) if values else None,
    }
    if spreads is not None:
        out["spread_rel"] = {k: round(v, 4) for k, v in spreads.items()}
        out["max_spread_rel"] = round(max(spreads.values()), 4) if spreads else None
    return out
