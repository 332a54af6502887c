"""What a stage hands the build: an artifact (its files and metadata) and the runner contract.

A leaf (numpy only). A runner is the one way the build, the benchmark and ``convert verify`` run an
artifact: numpy inputs by name in, numpy outputs by name out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

Inputs = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]


class Runner(Protocol):
    """A loaded artifact: takes a batch of named numpy inputs (those it does not take are ignored),
    returns its named outputs as numpy arrays. It may raise on inputs it cannot run (parity reports
    that as the artifact's failure)."""

    def __call__(self, inputs: Inputs, /) -> Outputs: ...


@dataclass(frozen=True)
class Artifact:
    """One runnable output of a stage: its files (relative to the stage folder) and how to run it."""

    name: str
    files: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    # True where the artifact's outputs at padding positions are undefined by design (e.g. nested
    # tensors skip them): parity then compares token-level outputs at real tokens only.
    skips_padding: bool = False
    # True where the recipe marked this artifact optional: a failed gate is reported, the artifact
    # is not packaged, and the build still succeeds.
    optional: bool = False
