"""Recipe schema (pydantic v2) and loading with file:line:col for every problem.

A recipe names a source checkpoint, its task, the targets to build, how to validate them and
where to publish. ``load(path)`` returns a :class:`Recipe` or raises :class:`RecipeError` listing
every problem found. This module reads YAML and validates; it never loads a model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath, PureWindowsPath
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from pipeline import cpu, secret_scan, untrusted
from pipeline.bench_settings import BenchSettings
from pipeline.errors import Problem, RecipeError, UnsupportedModelError
from pipeline.gate import Gate
from pipeline.stages import StageParams, registered_stages
from pipeline.strict import StrictModel
from pipeline.tasks import EMBEDDING_TASKS

MAX_RECIPE_BYTES = 1 << 20  # a recipe file over 1 MB is refused before it is parsed
HUB_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
NAME = r"^[a-z0-9][a-z0-9._-]*$"
PY_MODULE = r"^[A-Za-z_][A-Za-z0-9_]*$"
TAG = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
PATTERN_WORDS = {
    HUB_ID: "a Hub id like org/name",
    NAME: "lowercase letters, digits, '.', '_' and '-', starting with a letter or digit",
    PY_MODULE: "an importable module name",
    TAG: "letters, digits, '.', '_' and '-'",
}
DEFAULT_TEXTS = (
    "A man is eating food.",
    "A plane is taking off over the city at dawn, and the passengers are asleep.",
    "Hi",
)


MAX_VALUES = untrusted.MAX_VALUES  # YAML values (scalars, lists, mappings) counted as constructed, aliases expanded
MAX_DEPTH = untrusted.MAX_DEPTH  # levels of nesting
MAX_TEXT_CHARS = 10_000  # characters in one string value (a validation text, a name, …)
MAX_TEXTS = 10_000  # validation.texts


class Strict(StrictModel):
    """A recipe section (see :class:`pipeline.strict.StrictModel`)."""


class Source(Strict):
    """Exactly one of ``model`` (a Hub id, with ``revision``), ``path`` (a folder, relative to the
    recipe file) or ``package`` (an installed Python package that ships the checkpoint)."""

    model: Annotated[str, Field(pattern=HUB_ID, description="Hub model id, e.g. org/name")] | None = None
    revision: str | None = Field(default=None, min_length=1,
                                 description="commit sha (or tag) the Hub model is pinned to")
    path: str | None = Field(default=None, min_length=1,
                             description="local checkpoint folder, relative to the recipe file")
    package: str | None = Field(default=None, pattern=PY_MODULE,
                                description="importable package that ships the checkpoint")
    subfolder: str = Field(default="", description="folder inside `package` holding the checkpoint")
    allow_pickle: bool = Field(default=False, description="accept pickle weights (pytorch_model.bin) when there "
                               "are no safetensors; they are loaded with torch.load(weights_only=True)")
    trust_remote_code: bool = Field(default=False, description="run the checkpoint's own modeling code "
                                    "(auto_map); refused unless set")
    allow_floating_revision: bool = Field(default=False, description="allow publishing a build whose Hub "
                                          "revision is a branch or tag rather than a commit sha")
    max_memory_mb: int | None = Field(default=None, ge=1, description="refuse checkpoints whose build would "
                                      "need more memory than this (estimated as 3x the weights as fp32 + 600 MB); "
                                      "default: the memory available when the build starts (raise it here)")

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        kinds = [k for k in ("model", "path", "package") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of model (Hub id), path (folder) or package "
                             f"(got {', '.join(kinds) or 'none'})")
        if self.model is not None and self.revision is None:
            raise ValueError(f"revision is required with a Hub model id ({self.model!r}): "
                             "pin the commit sha the build must use")
        if self.model is None and self.revision is not None:
            raise ValueError("revision only applies to a Hub model id")
        if self.subfolder and self.package is None:
            raise ValueError("subfolder only applies to package")
        return self

    @property
    def pinned(self) -> bool:
        """True unless this is a Hub source whose revision is not a full commit sha."""
        return self.model is None or bool(re.fullmatch(r"[0-9a-f]{40}", self.revision or ""))

    def describe(self) -> str:
        if self.model is not None:
            return f"{self.model}@{self.revision}"
        if self.package is not None:
            return f"package {self.package}" + (f"/{self.subfolder}" if self.subfolder else "")
        return f"folder {self.path}"


Shape = Annotated[
    tuple[Annotated[int, Field(ge=1, le=1024)], Annotated[int, Field(ge=1, le=8192)]],
    Field(description="[batch, sequence]"),
]


class Validation(Strict):
    texts: list[Annotated[str, Field(min_length=1)]] = Field(
        default=list(DEFAULT_TEXTS), min_length=1, max_length=MAX_TEXTS,
        description="real inputs, tokenized together with padding")
    shapes: list[Shape] = Field(
        default=[(1, 7), (4, 48)],
        description="synthetic [batch, sequence] batches (with padding) to check besides the texts; "
                    "use shapes unlike the export shape")
    gates: dict[str, Gate] = Field(
        default_factory=dict, description="per-artifact tolerances overriding the target's defaults")
    seed: int = Field(default=0, ge=0, description="seed of the synthetic inputs")
    cpu_classes: list[Literal["avx2", "avx512", "avx512_vnni"]] | None = Field(
        default=None, description="CPU classes every artifact is gated as (avx2: AVX2 without AVX-512 or VNNI; "
        "avx512: AVX-512 without VNNI; avx512_vnni: VNNI or AMX); a file is offered only for the classes whose gate "
        "it passes. Default: every class the building machine can emulate (its own and those below it)")

    @field_validator("cpu_classes")
    @classmethod
    def _emulable(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if len(set(value)) != len(value):
            raise ValueError(f"each class once (got {value})")
        can = cpu.emulable()
        if missing := [c for c in value if c not in can]:
            raise ValueError(f"{', '.join(missing)}: this machine cannot compute as a CPU of that class (it is "
                             f"{cpu.current_class() or 'no x86-64 class'}; it can emulate {', '.join(can) or 'none'}: "
                             "classes at or below its own)")
        return value

    def classes(self) -> list[str]:
        """The CPU classes to gate as: the recipe's, or every class this machine can emulate."""
        return list(self.cpu_classes) if self.cpu_classes is not None else cpu.emulable()


class Bench(Strict):
    shapes: list[Shape] = Field(default=[(1, 128), (8, 128)], min_length=1,
                                description="[batch, sequence] shapes to time; the first is the primary shape "
                                            "the recommended artifact is chosen at")
    padding: float = Field(default=0.0, ge=0, lt=1,
                           description="share of padding tokens in every row but the first")
    threads: int = Field(default=2, ge=1, le=256, description="intra-op threads for every runtime")
    warmup: int = Field(default=3, ge=0, le=1000)
    runs: int = Field(default=10, ge=1, le=100000,
                      description="timed rounds: each runs every artifact once on every shape and traffic batch size, "
                                  "the artifacts interleaved")
    on_build: bool = Field(default=False, description="run the benchmark as part of `convert build`")
    traffic_batches: list[Annotated[int, Field(ge=1, le=1024)]] = Field(
        default=[1, 8, 32], max_length=8,
        description="traffic mode: batch sizes the texts are run in, each batch padded to its own longest row; "
                    "[] turns traffic mode off")
    texts_file: str | None = Field(
        default=None, min_length=1,
        description="traffic texts, one a line: a UTF-8 file inside the recipe's folder (default: validation.texts)")
    sort_by_length: bool = Field(default=False, description="traffic mode: sort the texts longest first before "
                                 "batching (as sentence-transformers' encode does), so a batch pads little")
    recommend_on: Literal["primary", "traffic"] = Field(
        default="primary", description="what the recommendation is decided on: the primary (first) shape, or "
        "one pass over the traffic texts at every traffic batch size")
    confidence: float = Field(default=0.95, ge=0.5, le=0.999,
                              description="level of the bootstrap intervals around each median")
    seed: int = Field(default=0, ge=0, description="seed of the bootstrap (the same timings give the same result)")

    @field_validator("texts_file")
    @classmethod
    def _inside_the_recipe_folder(cls, value: str | None) -> str | None:
        if value is None:
            return value
        path = PurePath(value)
        if path.is_absolute() or PureWindowsPath(value).is_absolute():
            raise ValueError(f"must be a path relative to the recipe's folder (got the absolute path {value!r})")
        if ".." in path.parts:
            raise ValueError(f"must stay inside the recipe's folder (got {value!r}, which climbs out with '..')")
        return value

    @model_validator(mode="after")
    def _traffic_to_decide_on(self) -> Bench:
        if self.recommend_on == "traffic" and not self.traffic_batches:
            raise ValueError("recommend_on: traffic needs traffic mode: give traffic_batches (e.g. [1, 8, 32])")
        if len(set(self.traffic_batches)) != len(self.traffic_batches):
            raise ValueError(f"traffic_batches lists a size twice (got {self.traffic_batches})")
        if self.texts_file is not None and not self.traffic_batches:
            raise ValueError("texts_file is for traffic mode, which traffic_batches: [] turns off")
        return self

    def settings(self) -> BenchSettings:
        return BenchSettings(shapes=tuple(tuple(s) for s in self.shapes), padding=self.padding,  # type: ignore[misc]
                             threads=self.threads, warmup=self.warmup, runs=self.runs,
                             traffic_batches=tuple(self.traffic_batches), sort_by_length=self.sort_by_length,
                             recommend_on=self.recommend_on, confidence=self.confidence, seed=self.seed)


class SentenceEmbedding(Strict):
    """Sentence embeddings computed inside the exported graph, as sentence-transformers models need.

    The ONNX graph gets a second output, ``sentence_embedding`` ([batch, hidden]): the token
    embeddings pooled over real tokens and, if asked, L2-normalized. The eager reference computes
    the same from the eager model's outputs, so the parity gate compares the pooled embeddings too.
    ``auto`` reads the checkpoint's sentence-transformers files (modules.json, 1_Pooling/config.json).
    """

    pooling: Literal["auto", "mean", "cls", "max"] = Field(
        default="auto", description="auto: as the checkpoint's 1_Pooling/config.json says; mean: mean of the "
        "token embeddings over real tokens; cls: the first token's; max: elementwise max over real tokens")
    normalize: bool | Literal["auto"] = Field(
        default="auto", description="L2-normalize the pooled embedding; auto: when the checkpoint's modules.json "
        "lists a Normalize module")
    max_seq_length: Annotated[int, Field(ge=1, le=1_000_000)] | Literal["auto"] = Field(
        default="auto", description="tokens sentence-transformers keeps per text (longer texts are truncated), "
        "written to the package's sentence_bert_config.json; auto: the checkpoint's sentence_bert_config.json, "
        "else the smaller of the tokenizer's model_max_length and the model's max_position_embeddings")


class PackageOptions(Strict):
    """What the package carries besides the artifacts."""

    source_weights: bool | Literal["auto"] = Field(
        default="auto", description="ship the checkpoint's safetensors weights at the package root "
        "(model.safetensors), so sentence-transformers' backend=\"torch\" and transformers' from_pretrained load "
        "the package; never pickles. auto: when the checkpoint's README names a license known to allow "
        "redistribution (Apache-2.0, MIT, BSD, CC-BY, …); a checkpoint with no or another license ships none")


class Publish(Strict):
    repo: str = Field(pattern=HUB_ID, description="Hub repo id to push to")
    tag: str | None = Field(default=None, pattern=TAG)
    private: bool = True


class Recipe(Strict):
    """A validated recipe. ``targets`` is a model generated from the stage registry."""

    name: str = Field(pattern=NAME, max_length=96,
                      description="build name; the output folder is <out>/<name>")
    source: Source
    task: str = Field(description="an optimum task name, e.g. feature-extraction")
    targets: BaseModel
    sentence_embedding: SentenceEmbedding | None = Field(
        default=None, validate_default=True,
        description="also output a pooled (and normalized) sentence embedding from the graph; tasks "
        f"{', '.join(EMBEDDING_TASKS)} only (sentence-similarity: on by default, with auto settings)")
    validation: Validation = Field(default_factory=Validation)
    bench: Bench = Field(default_factory=Bench)
    package: PackageOptions = Field(default_factory=PackageOptions)
    publish: Publish | None = None
    public_values: list[str] = Field(
        default_factory=list, description="fields (dotted, as errors name them, e.g. validation.texts.2) whose "
        "values look like a credential (hf_…, ghp_…, AKIA…, a high-entropy *_token) but are public: a recipe "
        "holding such a value elsewhere is refused, since it is copied into the published manifest and card")

    _path: Path | None = PrivateAttr(default=None)
    _positions: dict[tuple[str, ...], tuple[int, int]] = PrivateAttr(default_factory=dict)
    base_targets: ClassVar[tuple[str, ...]] = ()

    @field_validator("targets", mode="after")
    @classmethod
    def _not_empty(cls, value: BaseModel) -> BaseModel:
        if not any(v is not None for v in value.__dict__.values()):
            raise ValueError(f"name at least one target (one of: {', '.join(registered_stages())})")
        return value

    @field_validator("sentence_embedding", mode="after")
    @classmethod
    def _embedding_needs_token_embeddings(cls, value: SentenceEmbedding | None,
                                          info: ValidationInfo) -> SentenceEmbedding | None:
        task = info.data.get("task")
        if value is None and task == "sentence-similarity":  # what the task means: one vector per text
            return SentenceEmbedding()
        if value is not None and task is not None and task not in EMBEDDING_TASKS:
            raise ValueError(f"pools token embeddings: needs task {' or '.join(EMBEDDING_TASKS)} (got {task!r})")
        return value

    @model_validator(mode="after")
    def _gates_name_artifacts(self) -> Recipe:
        known = {a for name, params in self.target_params().items()
                 for a in registered_stages()[name]().artifact_names(params)}
        unknown = sorted(set(self.validation.gates) - known)
        if unknown:
            raise ValueError(f"validation.gates names {', '.join(map(repr, unknown))}, which this recipe "
                             f"does not build (its artifacts: {', '.join(sorted(known))})")
        return self

    def target_params(self) -> dict[str, StageParams]:
        """The requested targets in registry order, with their params."""
        return {k: v for k, v in self.targets.__dict__.items() if v is not None}

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def folder(self) -> Path:
        """The folder relative paths in the recipe are resolved against."""
        return self._path.parent if self._path is not None else Path.cwd()

    def problem(self, loc: tuple[str, ...], message: str) -> Problem:
        """A problem at a field, for errors found after schema validation (file:line:col kept)."""
        line, col = self._positions.get(loc, (None, None))
        return Problem(str(self._path) if self._path else "<recipe>", line, col, ".".join(loc), message)

    def normalized(self) -> dict[str, Any]:
        """The recipe with defaults filled in, as plain JSON data (for manifests and hashing)."""
        data = self.model_dump(mode="json")
        if not data["public_values"]:  # absent unless used: recipes without it hash as they always did
            del data["public_values"]
        data["targets"] = {k: v.model_dump(mode="json") for k, v in self.target_params().items()}
        return data

    def digest(self) -> str:
        blob = json.dumps(self.normalized(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


@functools.cache
def _recipe_model(stages: tuple[tuple[str, type[StageParams]], ...]) -> type[Recipe]:
    fields: dict[str, Any] = {
        name: (params | None, Field(default=None, description=f"build the {name} target"))
        for name, params in stages
    }
    targets = create_model("Targets", __config__=ConfigDict(extra="forbid", frozen=True), **fields)
    return create_model("Recipe", __base__=Recipe, targets=(targets, ...))


def recipe_model() -> type[Recipe]:
    """The Recipe model for the stages registered now."""
    return _recipe_model(tuple((n, s.params_model) for n, s in registered_stages().items()))


def json_schema() -> dict[str, Any]:
    schema = recipe_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "convert recipe"
    return schema


# --- YAML with positions -------------------------------------------------------------------


RECIPE_LIMITS = untrusted.Limits(max_bytes=MAX_RECIPE_BYTES, max_values=MAX_VALUES, max_depth=MAX_DEPTH,
                                 max_chars=MAX_TEXT_CHARS, what="a recipe")


def _parse(text: str, path: str) -> tuple[Any, dict[tuple[str, ...], tuple[int, int]]]:
    try:
        data, positions, issues = untrusted.parse_yaml(text, RECIPE_LIMITS)
    except untrusted.Refused as e:
        raise RecipeError([Problem(path, e.line, e.col, "", e.reason)]) from None
    if issues:
        raise RecipeError([Problem(path, i.line, i.col, i.field, i.message) for i in issues])
    if data is None and not positions:
        raise RecipeError([Problem(path, None, None, "", "empty recipe: expected a mapping with name, source, task, "
                                   "targets")])
    if not isinstance(data, dict):
        raise RecipeError([Problem(path, 1, 1, "", "expected a mapping with name, source, task, targets "
                                   f"(got {type(data).__name__})")])
    return data, positions


# --- pydantic errors as one line each ------------------------------------------------------


def _allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str] | None:
    """The keys a mapping at ``loc`` (inside ``model``) accepts, if it is a model."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            f = current.model_fields.get(str(part))
            if f is None:
                return None
            current = f.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: Any, model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        return "unknown key" + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit
        return f"must be {bounds[kind]} {limit} (got {_short(value)})"
    if kind in ("too_long", "too_short"):
        bound = ctx.get("max_length") if kind == "too_long" else ctx.get("min_length")
        unit = "items" if isinstance(value, list | tuple | dict) else "characters"
        return f"{'at most' if kind == 'too_long' else 'at least'} {bound} {unit} (got {ctx.get('actual_length')})"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        return f"must be {PATTERN_WORDS.get(pattern, 'of the form ' + pattern)} (got {_short(value)})"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    expected = {"int_type": "an integer", "int_parsing": "an integer", "float_type": "a number",
                "float_parsing": "a number", "bool_type": "true or false", "bool_parsing": "true or false",
                "string_type": "a string", "list_type": "a list", "dict_type": "a mapping",
                "model_type": "a mapping", "model_attributes_type": "a mapping", "tuple_type": "a list",
                "int_from_float": "an integer"}.get(kind)
    if expected:
        return f"expected {expected} (got {_short(value)})"
    return f"{err['msg'][0].lower()}{err['msg'][1:]} (got {_short(value)})"


def _problems(exc: ValidationError, model: type[BaseModel], path: str,
              positions: dict[tuple[str, ...], tuple[int, int]]) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = tuple(str(p) for p in loc)
        pos = None
        if err["type"] == "extra_forbidden":
            pos = positions.get((*key, "<key>"))
        probe = key
        while pos is None:
            pos = positions.get(probe)
            if not probe:
                break
            probe = probe[:-1]
        line, col = pos if pos else (None, None)
        out.append(Problem(path, line, col, ".".join(key), _message(err, model, loc)))
    return out


def from_data(data: dict[str, Any], *, path: Path | None = None,
              positions: dict[tuple[str, ...], tuple[int, int]] | None = None) -> Recipe:
    """Validate already-parsed recipe data (``path`` is used for messages and relative paths)."""
    model = recipe_model()
    shown = str(path) if path else "<recipe>"
    try:
        recipe = model.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_problems(e, model, shown, positions or {})) from None
    recipe._path = path
    recipe._positions = positions or {}
    return recipe


def load(path: str | Path) -> Recipe:
    """Read and validate a recipe file.

    Raises:
        RecipeError: the file is missing, unreadable, not YAML, or does not match the schema;
            one :class:`Problem` per issue found.
    """
    path = Path(path)
    shown = str(path)
    try:
        raw = untrusted.read_bytes(path, MAX_RECIPE_BYTES)
    except untrusted.Refused as e:
        reason = {"folder": "is a folder, expected a recipe file",
                  "size": f"{e.size} bytes: over the limit of {MAX_RECIPE_BYTES} bytes (1 MB) for a recipe file"}
        raise RecipeError([Problem(shown, None, None, "", reason.get(e.kind, e.reason))]) from None
    except FileNotFoundError:
        raise RecipeError([Problem(shown, None, None, "", "no such file")]) from None
    except OSError as e:
        raise RecipeError([Problem(shown, None, None, "", f"cannot read: {e.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError([Problem(shown, None, None, "", f"not UTF-8 text (byte {e.start})")]) from None
    data, positions = _parse(text, shown)
    _refuse_secrets(data, shown, positions)
    return from_data(data, path=path, positions=positions)


def _refuse_secrets(data: dict[str, Any], path: str, positions: dict[tuple[str, ...], tuple[int, int]]) -> None:
    """A value that looks like a credential is refused before validation (whose messages quote values)
    and long before the manifest and card copy the recipe; the value itself is never shown."""

    declared = data.get("public_values")
    public = {str(v) for v in declared} if isinstance(declared, list) else set()
    problems = []
    for loc, kind in secret_scan.find(data, public=public):
        line, col = positions.get(loc, (None, None))
        field = ".".join(loc)
        problems.append(Problem(path, line, col, field, f"looks like {kind}; a recipe is copied into the published "
                                "manifest and model card, so it must hold no secret: remove it (the Hub token "
                                f"comes from HF_TOKEN), or, if the value is public, list {field or '(top level)'!r} "
                                "in public_values"))
    if problems:
        raise RecipeError(problems)


def check_task(recipe: Recipe, model_type: str | None = None) -> None:
    """Check the task against optimum's task registry (imports optimum: slow, so not in ``load``).

    With ``model_type``, also ask each requested target whether the optimum exporter it needs (if any)
    supports the model type and task (:meth:`pipeline.stages.Stage.check_exporter`).
    """
    from optimum.exporters.tasks import TasksManager

    known = TasksManager.get_all_tasks()
    try:
        task = TasksManager.map_from_synonym(recipe.task)
    except Exception:  # map_from_synonym raises for nothing but is version-dependent
        task = recipe.task
    if task.removesuffix("-with-past") not in known:  # optimum's exporter takes "<task>-with-past" for its cache
        close = _closest(recipe.task, known)
        raise RecipeError([recipe.problem(("task",), f"unknown task {recipe.task!r}" + (
            f" (did you mean {close!r}?)" if close else f" (expected one of: {', '.join(sorted(known))})"))])
    if model_type is None:
        return
    for name in recipe.target_params():
        problem = registered_stages()[name]().check_exporter(model_type, task, shown=recipe.task)
        if problem is not None:
            field, message = problem
            raise UnsupportedModelError(str(recipe.problem((field,), message)))


def check_installed(recipe: Recipe) -> None:
    """Refuse a recipe whose targets need an optional extra that is not installed (one problem each,
    at the target's line, naming the install command): before any model is loaded.

    Raises:
        RecipeError: a target's extra is missing.
    """
    problems = [recipe.problem(("targets", name), missing) for name in recipe.target_params()
                if (missing := registered_stages()[name]().missing_extra()) is not None]
    if problems:
        raise RecipeError(problems)


def _closest(word: str, options: Iterable[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.75)
    return match[0] if match else None

