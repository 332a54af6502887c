"""What the benchmark runs besides fixed shapes, and the interleaved loop that times it.

Traffic: real texts (the recipe's ``validation.texts``, or ``bench.texts_file``, a file inside the
recipe's folder) tokenized in batches of each of ``bench.traffic_batches`` sizes, every batch padded
to its own longest row as consumers do (optionally sorted longest first, as sentence-transformers'
``encode`` sorts, so rows of a batch are alike in length). Every artifact gets the very same
batches. Timing: every artifact runs every workload once per round, in an order that rotates each
round (ABC, BCA, CAB, …: :func:`pipeline.stats.round_order`), so a slow minute on a shared machine
falls on all of them alike rather than on whichever ran then. This module builds inputs and times
callables; it loads no artifact, computes no statistics and decides nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import untrusted
from pipeline.errors import RecipeError
from pipeline.stats import round_order

Inputs = Mapping[str, np.ndarray]
MAX_TEXTS_BYTES = 16 << 20
VALIDATION_TEXTS = "validation.texts"


@dataclass(frozen=True)
class TrafficSet:
    """The texts in batches of ``size`` (the last one may be smaller), each padded to its longest row."""

    size: int
    batches: tuple[dict[str, np.ndarray], ...]

    @property
    def texts(self) -> int:
        return sum(int(b["input_ids"].shape[0]) for b in self.batches)

    def describe(self) -> dict[str, Any]:
        """Shapes and padding of the batches, for ``bench.json``."""
        tokens = sum(int(b["input_ids"].size) for b in self.batches)
        real = sum(int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["input_ids"].size)
                   for b in self.batches)
        return {"batch_size": self.size, "batches": len(self.batches), "texts": self.texts,
                "shapes": [list(b["input_ids"].shape) for b in self.batches], "tokens": tokens,
                "padding_share": round(1 - real / tokens, 4) if tokens else 0.0}


def workload_key(size: int) -> str:
    """The name of a traffic workload in timings and reports: ``traffic/8``."""
    return f"traffic/{size}"


def read_texts(recipe: Any) -> tuple[tuple[str, ...], str]:
    """The texts traffic mode runs and where they came from: ``bench.texts_file`` (one text per
    line, blank lines skipped) when the recipe names one, else ``validation.texts``.

    Raises:
        RecipeError: the file leaves the recipe's folder (after following links), is missing,
            unreadable, too large, not UTF-8, or holds no text.
    """
    name = recipe.bench.texts_file
    if name is None:
        return tuple(recipe.validation.texts), VALIDATION_TEXTS
    loc = ("bench", "texts_file")
    folder = recipe.folder.resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder):
        raise RecipeError([recipe.problem(loc, f"{name!r} leads outside the recipe's folder {folder} (to {path}): "
                                               "put the texts file next to the recipe or below it")])
    try:
        raw = untrusted.read_bytes(path, MAX_TEXTS_BYTES)
    except untrusted.Refused as e:
        reason = {"folder": "is a folder, expected a text file", "size": f"is larger than {MAX_TEXTS_BYTES} bytes"}
        raise RecipeError([recipe.problem(loc, f"{name!r} {reason.get(e.kind, e.reason)}")]) from None
    except FileNotFoundError:
        raise RecipeError([recipe.problem(loc, f"{name!r}: no such file in {folder}")]) from None
    except OSError as e:
        raise RecipeError([recipe.problem(loc, f"{name!r}: cannot read: {e.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError([recipe.problem(loc, f"{name!r} is not UTF-8 text (byte {e.start})")]) from None
    texts = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not texts:
        raise RecipeError([recipe.problem(loc, f"{name!r} holds no text (one text per line)")])
    return texts, f"bench.texts_file: {name}"


def with_texts(recipe: Any, settings: Any) -> Any:
    """``settings`` (a :class:`pipeline.bench.BenchSettings`) with the recipe's traffic texts filled
    in, unless traffic mode is off or the texts are already there."""
    if not settings.traffic_batches or settings.texts:
        return settings
    texts, origin = read_texts(recipe)
    return dataclasses.replace(settings, texts=texts, texts_source=origin)


def traffic_sets(tokenizer: Any, texts: Sequence[str], sizes: Sequence[int], *, sort_by_length: bool,
                 max_length: int) -> list[TrafficSet]:
    """``texts`` in batches of each size, each batch tokenized and padded to its own longest row
    (truncated at ``max_length``); longest text first when ``sort_by_length``."""
    ordered = list(texts)
    if sort_by_length:
        lengths = [len(ids) for ids in tokenizer(ordered, truncation=True, max_length=max_length)["input_ids"]]
        ordered = [ordered[i] for i in sorted(range(len(ordered)), key=lambda i: -lengths[i])]  # stable
    out = []
    for size in sizes:
        batches = []
        for start in range(0, len(ordered), size):
            encoded = tokenizer(ordered[start:start + size], padding="longest", truncation=True,
                                max_length=max_length, return_tensors="np")
            batches.append({k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()})
        out.append(TrafficSet(size, tuple(batches)))
    return out


def warm_up(run: Callable[[Inputs], object], workloads: Mapping[str, Sequence[Inputs]], times: int) -> None:
    """Run every workload ``times`` times (a traffic pass at most once: it holds many batches)."""
    for key, batches in workloads.items():
        for _ in range(min(times, 1) if key.startswith("traffic/") else times):
            for inputs in batches:
                run(inputs)


def interleaved(runners: Mapping[str, Callable[[Inputs], object]], workloads: Mapping[str, Sequence[Inputs]],
                rounds: int, clock: Callable[[], float] = time.perf_counter) -> dict[str, dict[str, list[float]]]:
    """Time every runner on every workload once per round, in milliseconds.

    A sample is one pass over a workload's batches (a fixed shape is one batch). Within a round,
    each workload runs on all runners back to back, the runners in the rotating order of
    :func:`pipeline.stats.round_order`; every runner gets the same input objects.
    """
    names = list(runners)
    samples: dict[str, dict[str, list[float]]] = {name: {key: [] for key in workloads} for name in names}
    for r in range(rounds):
        order = round_order(names, r)
        for key, batches in workloads.items():
            for name in order:
                run = runners[name]
                start = clock()
                for inputs in batches:
                    run(inputs)
                samples[name][key].append((clock() - start) * 1000)
    return samples

