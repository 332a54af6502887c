"""The stage contract and the stage registry.

A stage turns the loaded source model into one or more artifacts in a folder it is given. It must
not decide ordering, caching, gating or packaging: the build owns those. Stage modules import
torch and friends inside ``run``/``runner`` only, so that reading a recipe stays fast.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import field_validator

from pipeline.artifact import Artifact, Inputs, Outputs, Runner
from pipeline.errors import Problem
from pipeline.gate import EXACT, Gate
from pipeline.loaded import LoadedSource
from pipeline.strict import StrictModel

__all__ = ["Artifact", "ClassNumerics", "Gate", "Inputs", "NoParts", "Outputs", "Parts", "RecipeView", "Runner",
           "Stage", "StageContext", "StageParams", "VariantParams",
           "get_stage", "register_stage", "registered_stages", "unregister_stage"]


class StageParams(StrictModel):
    """Base of every target's recipe section: unknown keys are errors, values are immutable, numbers
    are of the declared kind (:class:`pipeline.strict.StrictModel`)."""


class VariantParams(StageParams):
    """Base of a target whose recipe section lists ``variants`` (each its own artifact): each named once.
    The subclass declares ``variants`` (and ``optional``) with its own names."""

    @field_validator("variants", check_fields=False)
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"each variant once (got {value})")
        return value


class ValidationView(Protocol):
    """What a stage may read of the recipe's ``validation`` section."""

    @property
    def texts(self) -> Sequence[str]: ...


class RecipeView(Protocol):
    """What a stage may read of the recipe (a :class:`pipeline.recipe.Recipe` is one). The recipe is a
    layer above the stages (its schema is made from this registry), so it is named by its shape."""

    @property
    def name(self) -> str: ...

    @property
    def task(self) -> str: ...

    @property
    def folder(self) -> Path:
        """The folder the recipe's relative paths are resolved against."""
        ...

    @property
    def validation(self) -> ValidationView: ...

    def problem(self, loc: tuple[str, ...], message: str) -> Problem:
        """A problem at a recipe field (its file:line:col), for a RecipeError."""
        ...


class Parts(Protocol):
    """The steps inside one stage (the ONNX target's exported graph and each variant derived from it),
    each keyed by the one rule (:class:`pipeline.steps.Step`): a part whose key matches the stage's
    previous output, and whose files still hash as recorded, is taken from it instead of made again."""

    def take(self, part: str, key: str) -> list[str] | None:
        """Link the files ``part`` made into the workdir if the previous output made them with ``key``
        and they are intact; their names, or None (then make them, and say so with :meth:`made`)."""
        ...

    def made(self, part: str, key: str, files: Sequence[str]) -> None:
        """``part``, keyed ``key``, made ``files`` (names in the workdir)."""
        ...


class NoParts:
    """Nothing to take (a first build, ``--force``, a test): every part is made."""

    def take(self, part: str, key: str) -> list[str] | None:
        return None

    def made(self, part: str, key: str, files: Sequence[str]) -> None:
        pass


@dataclass(frozen=True)
class StageContext:
    """What a stage gets to work with. ``workdir`` is empty, private and renamed into place later."""

    recipe: RecipeView
    source: LoadedSource
    workdir: Path
    parts: Parts = field(default_factory=NoParts)


@dataclass(frozen=True)
class ClassNumerics:
    """How this machine computes an artifact as a CPU class (pipeline/cpu.py) would, for its per-class gate.

    ``env``: the environment of a child process that does (oneDNN reads ``ONEDNN_MAX_CPU_ISA`` when
    OpenVINO's plugin loads, so only a fresh process can); empty when this process's own gate figures stand
    for the class (the runtime computes the same numbers there, or the gate already used the class's
    arithmetic). ``how`` says which, for the report. ``not_for``: why the file is not offered for the class
    whatever its figures (onnxruntime's U8S8 kernels can saturate on x86 without VNNI), or None.
    """

    how: str
    env: Mapping[str, str] = field(default_factory=dict)
    not_for: str | None = None


P = TypeVar("P", bound=StageParams)


class Stage(Generic[P]):
    """A target. Subclasses set ``name`` (via :func:`register_stage`), ``params_model``,
    ``version`` (bump when the output bytes change) and ``default_gate``."""

    name: ClassVar[str]
    params_model: ClassVar[type[StageParams]]
    version: ClassVar[int] = 1
    default_gate: ClassVar[Gate] = EXACT
    description: ClassVar[str] = ""
    package_folder: ClassVar[str] = ""  # folder of the package holding this stage's files; "" = name
    # optimum's exporter registry this target needs (TasksManager's name, and how messages name it), if any
    exporter: ClassVar[str | None] = None
    exporter_label: ClassVar[str] = ""
    # distributions whose versions shape this target's output and runs, beyond those that shape every step
    # (pipeline.versions.BASE): they enter its fingerprint and its parity's
    libraries: ClassVar[tuple[str, ...]] = ()
    # the model card's library_name when this target's files are packaged (the first target's that names one)
    library_name: ClassVar[str | None] = None
    card_tags: ClassVar[tuple[str, ...]] = ()  # model card tags its packaged files earn (its name is always one)
    # sentence-transformers' ``backend=`` that loads this target's packaged files (each artifact's metadata
    # "file", as ``model_kwargs={"file_name": "<folder>/<file>"}``) when the package is a sentence-transformers repo
    sentence_transformers_backend: ClassVar[str | None] = None
    # model types this target claims by a map of its own (tests/test_completeness.py holds it to them);
    # () where it takes what its exporter or tracer takes
    architectures: ClassVar[tuple[str, ...]] = ()
    # the optional extra (pyproject's [project.optional-dependencies]) this target needs, and the modules it
    # brings that the target imports: a recipe asking for the target without them is refused before loading
    extra: ClassVar[str | None] = None
    extra_modules: ClassVar[tuple[str, ...]] = ()

    def artifact_names(self, params: P) -> list[str]:
        """Names of the artifacts ``run`` will produce for these params (used to check gates)."""
        return [self.name]

    def gate_for(self, artifact: str, task: str) -> Gate:
        """The default gate of one of this stage's artifacts (the recipe may override fields)."""
        return self.default_gate

    def class_numerics(self, artifact: Artifact, cpu_class: str) -> ClassNumerics:
        """How ``artifact`` is computed as CPU class ``cpu_class`` would (one this machine can emulate). The
        default: as here (the runtime's kernels give one class's numbers as another's, as far as the gate sees)."""
        return ClassNumerics(how="this machine's own numbers (the runtime's kernels do not depend on the class)")

    def check(self, params: P, config: Mapping[str, Any], task: str) -> None:
        """Refuse a model this target cannot build, from its config.json alone (``task`` as the recipe
        writes it), before the build loads anything. Raises UnsupportedModelError; the default accepts."""

    def missing_extra(self) -> str | None:
        """Why this target cannot run in this environment (its extra's modules are not installed), naming
        the install command; None when they are. The modules are found, not imported: this is fast."""
        missing = [m for m in self.extra_modules if not _installed(m)]
        if not missing:
            return None
        return (f"needs the optional extra {self.extra!r} ({', '.join(missing)} not installed): "
                f"pip install 'pipeline-convert[{self.extra}]' (in a checkout: pip install -c constraints.txt "
                f"-e '.[{self.extra}]')")

    def fingerprint_inputs(self, params: P, recipe: RecipeView) -> dict[str, Any]:
        """What besides its params, the task and the source shapes this stage's output (e.g. texts it
        calibrates on, read from the recipe or a file it names): it enters the stage's fingerprint, so a
        change rebuilds the stage. Raises RecipeError for an input it cannot read; the default is none."""
        return {}

    def check_exporter(self, model_type: str, task: str, shown: str | None = None) -> tuple[str, str] | None:
        """Whether the optimum exporter this target needs (``exporter``) supports ``model_type`` and
        ``task`` (optimum's name; ``shown`` as the recipe writes it): None, or the recipe field at fault
        and why. Imports optimum: called when the source is loaded, not when a recipe is read."""
        if self.exporter is None:
            return None
        from optimum.exporters.tasks import TasksManager

        self.register_exporter_configs()
        label = self.exporter_label or self.exporter
        supported_types = TasksManager._LIBRARY_TO_SUPPORTED_MODEL_TYPES["transformers"]
        if self.exporter not in supported_types.get(model_type, {}):
            return "source", f"model type {model_type!r} is not supported by optimum's {label} exporter"
        supported = TasksManager.get_supported_tasks_for_model_type(model_type, self.exporter,
                                                                    library_name="transformers")
        if task not in supported:
            return "task", (f"{shown or task!r} is not supported by the {label} exporter for model type "
                            f"{model_type!r} (supported: {', '.join(sorted(supported))})")
        return None

    def register_exporter_configs(self) -> None:
        """Import what registers ``exporter``'s per-model-type configs with optimum's TasksManager."""

    def run(self, ctx: StageContext, params: P) -> list[Artifact]:
        raise NotImplementedError

    def ignored_settings(self, metadata: Mapping[str, Any]) -> list[str]:
        """Runtime settings in an artifact's ``metadata`` (session options, compile settings) that are
        not ones this stage itself writes, one note each: :meth:`runner` does not honour them. A
        downloaded manifest is hostile; only the settings the project records are applied."""
        return []

    def runner(self, stage_dir: Path, artifact: Artifact, threads: int | None = None) -> Runner:
        """A callable that runs ``artifact`` (found under ``stage_dir``) on numpy inputs.

        Every stage takes ``threads``: it fixes the runtime's intra-op thread count where the runtime
        has a per-session setting (onnxruntime); torch runners ignore it and run with the process-wide
        ``torch.set_num_threads`` the caller sets.
        """
        raise NotImplementedError

    def usage(self, repo: str, task: str, artifacts: Mapping[str, Mapping[str, Any]],
              recommended: str | None) -> list[str]:
        """Markdown lines for the model card: how a consumer loads this target's packaged artifacts
        (``artifacts``: their manifest entries, by name; ``repo``: the Hub id or the package's name)."""
        return []

    def card_section(self, artifacts: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Markdown lines the model card adds after the parity table about this target's packaged files."""
        return []

    def suits(self, entry: Mapping[str, Any]) -> str:
        """The CPUs a packaged artifact (its manifest entry) is meant for, as the model card says it."""
        return "any CPU"


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported (found on the path; a module set to None in sys.modules is not)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False


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
