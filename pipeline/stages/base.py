"""The stage contract and the stage registry.

A stage turns the loaded source model into one or more artifacts in a folder it is given. It must
not decide ordering, caching, gating or packaging: the build owns those. Stage modules import
torch and friends inside ``run``/``runner`` only, so that reading a recipe stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from pipeline.recipe import Recipe
    from pipeline.source import LoadedSource


class StageParams(BaseModel):
    """Base of every target's recipe section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Gate(BaseModel):
    """Tolerances an artifact's outputs must meet against the eager model.

    ``atol``/``rtol`` apply elementwise as ``|a - e| <= atol + rtol * |e|``; ``min_cosine`` to the
    cosine similarity of each sample's flattened output; ``min_pooled_cosine`` to the cosine of
    each sample's mean-pooled token embeddings (attention mask applied, as sentence-transformers
    pools); ``min_argmax_agreement`` to the share of positions whose argmax over the last axis
    agrees (only for outputs named ``*logits``). A field left out (None) is not gated. ``batches``
    says which golden batches the gate applies to; metrics are reported for all of them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    atol: float | None = Field(default=None, ge=0, description="absolute tolerance")
    rtol: float | None = Field(default=None, ge=0, description="relative tolerance")
    min_cosine: float | None = Field(default=None, ge=-1, le=1,
                                     description="lowest per-sample cosine similarity")
    min_pooled_cosine: float | None = Field(default=None, ge=-1, le=1,
                                            description="lowest per-sample cosine of mean-pooled embeddings")
    min_argmax_agreement: float | None = Field(default=None, ge=0, le=1,
                                               description="lowest share of equal argmax (logits)")
    batches: Literal["all", "texts"] = Field(
        default="all", description="gate every golden batch, or only the recipe's real texts")

    def merged(self, override: Gate | None) -> Gate:
        """This gate with the fields ``override`` sets replacing ours."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True))


Inputs = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]
Runner = Callable[[Inputs], Outputs]


@dataclass(frozen=True)
class StageContext:
    """What a stage gets to work with. ``workdir`` is empty, private and renamed into place later."""

    recipe: Recipe
    source: LoadedSource
    workdir: Path


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


P = TypeVar("P", bound=StageParams)


class Stage(Generic[P]):
    """A target. Subclasses set ``name`` (via :func:`register_stage`), ``params_model``,
    ``version`` (bump when the output bytes change) and ``default_gate``."""

    name: ClassVar[str]
    params_model: ClassVar[type[StageParams]]
    version: ClassVar[int] = 1
    default_gate: ClassVar[Gate] = Gate(atol=1e-4, rtol=1e-4, min_cosine=0.9999,
                                        min_argmax_agreement=1.0)
    description: ClassVar[str] = ""
    package_folder: ClassVar[str] = ""  # folder of the package holding this stage's files; "" = name

    def artifact_names(self, params: P) -> list[str]:
        """Names of the artifacts ``run`` will produce for these params (used to check gates)."""
        return [self.name]

    def gate_for(self, artifact: str, task: str) -> Gate:
        """The default gate of one of this stage's artifacts (the recipe may override fields)."""
        return self.default_gate

    def check(self, params: P, config: Mapping[str, Any], task: str) -> None:
        """Refuse a model this target cannot build, from its config.json alone (``task`` as the recipe
        writes it), before the build loads anything. Raises UnsupportedModelError; the default accepts."""

    def run(self, ctx: StageContext, params: P) -> list[Artifact]:
        raise NotImplementedError

    def runner(self, stage_dir: Path, artifact: Artifact, threads: int | None = None) -> Runner:
        """A callable that runs ``artifact`` (found under ``stage_dir``) on numpy inputs.

        ``threads`` fixes the runtime's intra-op thread count (torch runners use the process-wide
        ``torch.set_num_threads`` instead, which the caller sets).
        """
        raise NotImplementedError


_REGISTRY: dict[str, type[Stage[Any]]] = {}

S = TypeVar("S", bound=type[Stage[Any]])


def register_stage(name: str) -> Callable[[S], S]:
    """Class decorator adding a stage to the registry; a name registered twice raises."""

    def decorate(cls: S) -> S:
        if name in _REGISTRY:
            raise ValueError(f"stage {name!r} is already registered by {_REGISTRY[name].__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def unregister_stage(name: str) -> None:
    """Remove a stage (for tests that register their own)."""
    del _REGISTRY[name]


def registered_stages() -> dict[str, type[Stage[Any]]]:
    """A copy of the registry, in registration order."""
    return dict(_REGISTRY)


def get_stage(name: str) -> Stage[Any]:
    return _REGISTRY[name]()
