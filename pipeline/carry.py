"""What a package carries from its checkpoint besides config and tokenizer: the sentence-transformers
files, and the source weights.

A sentence-transformers checkpoint (one with ``modules.json``) has its ``modules.json``,
``sentence_bert_config.json``, ``config_sentence_transformers.json`` and module folders
(``1_Pooling/`` …) copied as they are, so ``SentenceTransformer(package, backend=…)`` builds the same
Transformer → Pooling → (Normalize) with the same ``max_seq_length``. A plain checkpoint whose recipe
has a ``sentence_embedding`` section gets those files written from the resolved pooling, and so does
a checkpoint whose pooling the recipe overrides (the package then serves what the build gated).
The source weights (``model.safetensors``, or its index and shards) are shipped when the recipe's
``package.source_weights`` says so, by default when the checkpoint's license is one known to allow
redistribution. Pickle weights are never shipped.

Every checkpoint path is read through :mod:`pipeline.paths` (inside the folder; a symlink leaving it
is refused). This module decides and renders bytes; it reads the checkpoint and writes nothing
(``pipeline.package`` writes what it returns).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline import untrusted
from pipeline.errors import Problem, SourceError
from pipeline.loaded import ResolvedSource
from pipeline.paths import MissingPath, UnsafePath, inside, parts, regular_files
from pipeline.pooling import Pooling

ProblemAt = Callable[[tuple[str, ...], str], Problem]

MODULES = "modules.json"
TRANSFORMER_CONFIG = "sentence_bert_config.json"
ST_CONFIG = "config_sentence_transformers.json"
_TYPES = {"sentence_transformers.models.Transformer": "Transformer",
          "sentence_transformers.models.Pooling": "Pooling",
          "sentence_transformers.models.Normalize": "Normalize"}
_POOLING_FLAGS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
                  "max": "pooling_mode_max_tokens"}
_OTHER_FLAGS = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
WEIGHTS, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"
# Licenses (the Hub's ids) that let anyone redistribute the weights, with attribution at most. Anything
# else — none, "other", "unknown", non-commercial, use-restricted (OpenRAIL, Llama, Gemma) — is not assumed:
# the weights ship only when the recipe says package.source_weights: true.
REDISTRIBUTABLE = frozenset({
    "apache-2.0", "mit", "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "isc", "zlib", "bsl-1.0",
    "mpl-2.0", "afl-3.0", "ecl-2.0", "artistic-2.0", "unlicense", "wtfpl", "cc0-1.0", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0", "odc-by", "pddl",
})


class PackageSpec(Protocol):
    """The recipe's ``package`` section (pipeline.recipe.PackageOptions)."""

    @property
    def source_weights(self) -> bool | str: ...


class EmbeddingSpec(Protocol):
    """The recipe's ``sentence_embedding`` section (pipeline.recipe.SentenceEmbedding)."""

    @property
    def pooling(self) -> str: ...

    @property
    def normalize(self) -> bool | str: ...

    @property
    def max_seq_length(self) -> int | str: ...


@dataclass(frozen=True)
class SentenceRepo:
    """The sentence-transformers files of a package: checkpoint files copied as they are
    (``copied``: checkpoint-relative paths, the same in the package) and files written (``written``:
    package path and bytes)."""

    origin: str  # "copied from the checkpoint" or "written from sentence_embedding"
    modules: tuple[str, ...]  # Transformer, Pooling, Normalize, in order
    max_seq_length: int | None
    copied: tuple[str, ...] = ()
    written: tuple[tuple[str, bytes], ...] = ()

    @property
    def files(self) -> list[str]:
        return sorted([*self.copied, *(name for name, _ in self.written)])

    def record(self) -> dict[str, Any]:
        return {"origin": self.origin, "modules": list(self.modules), "max_seq_length": self.max_seq_length,
                "files": self.files}


@dataclass(frozen=True)
class SourceWeights:
    """Whether the package ships the checkpoint's safetensors weights, which files, and why."""

    shipped: bool
    files: tuple[str, ...]  # checkpoint-relative (and package) paths; () when not shipped
    reason: str

    def record(self) -> dict[str, Any]:
        return {"shipped": self.shipped, "files": list(self.files), "reason": self.reason}


@dataclass(frozen=True)
class Carried:
    """What :func:`plan` decided, and what the build should say about it (``notes``)."""

    sentence: SentenceRepo | None
    weights: SourceWeights
    license: str | None
    notes: tuple[str, ...] = ()


README_LIMITS = untrusted.Limits(max_bytes=4 * 2**20, max_values=10_000, max_depth=32, max_chars=10_000,
                                 what="a README's front matter")
LICENSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]{0,63}$")  # an SPDX-style id ("apache-2.0", "mit", "other")


def checkpoint_license(resolved: ResolvedSource, notes: list[str] | None = None) -> str | None:
    """The ``license`` of the checkpoint's own README front matter (read inside the folder, through
    the bounded reader), if it is a short SPDX-style id; anything else is dropped, with a note in
    ``notes`` saying why (the value goes into the model card's metadata, so it must be plain)."""
    try:
        readme = resolved.file("README.md")
    except UnsafePath:
        return None  # the source check refuses such a folder; the license is then not needed
    if readme is None:
        return None

    def drop(why: str) -> None:
        if notes is not None:
            notes.append(f"the checkpoint's README.md license was not carried into the card: {why}")

    try:
        text = untrusted.read_bytes(readme, README_LIMITS.max_bytes).decode("utf-8", errors="replace")
    except (untrusted.Refused, OSError) as e:
        drop(getattr(e, "reason", None) or type(e).__name__)
        return None
    if not text.startswith("---"):
        return None
    parts_ = text.split("---", 2)
    if len(parts_) < 3:
        return None
    try:
        meta, _, issues = untrusted.parse_yaml(parts_[1], README_LIMITS)
    except untrusted.Refused as e:
        drop(f"its front matter: {e.reason}")
        return None
    if issues:
        drop(f"its front matter, line {issues[0].line}: {issues[0].message}")
        return None
    value = meta.get("license") if isinstance(meta, dict) else None
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not LICENSE_ID.match(value):
        drop(f"{_shown(value)} is not a licence id (expected an SPDX-style id such as apache-2.0, or 'other')")
        return None
    return value


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else f"a {type(value).__name__}"
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 60 else text[:57] + "..."


def plan(resolved: ResolvedSource, config: Mapping[str, Any], *, task: str, embedding_tasks: tuple[str, ...],
         spec: EmbeddingSpec | None, pooling: Pooling | None, package: PackageSpec,
         problem: ProblemAt) -> Carried:
    """Decide what the package carries from the checkpoint in ``resolved`` (files only: nothing loaded).

    Raises:
        SourceError: a sentence-transformers file or module path leaving the checkpoint folder (or a
            symlink out of it), an unreadable modules.json or sentence_bert_config.json, a pickle file in
            a module folder, or ``sentence_embedding.max_seq_length`` over the model's positions.
    """
    notes: list[str] = []
    sentence = None
    if task in embedding_tasks:
        sentence = _sentence_repo(resolved, config, spec, pooling, problem, notes)
    license = checkpoint_license(resolved, notes)
    weights = _weights(resolved, package, license, problem)
    return Carried(sentence=sentence, weights=weights, license=license, notes=tuple(notes))


def _file(resolved: ResolvedSource, rel: str, problem: ProblemAt, loc: tuple[str, ...]) -> Path | None:
    try:
        return resolved.file(rel)
    except UnsafePath as e:
        raise SourceError(str(problem(loc, f"{resolved.folder / rel} {e.reason}: only regular files inside "
                                           "the checkpoint folder are read"))) from None


def _json(path: Path, problem: ProblemAt, loc: tuple[str, ...]) -> Any:
    try:
        return untrusted.read_json(path, untrusted.CHECKPOINT_JSON)
    except untrusted.Refused as e:
        raise SourceError(str(problem(loc, f"{path}: {e.reason}"))) from None
    except OSError as e:
        raise SourceError(str(problem(loc, f"{path}: cannot read: {e.strerror}"))) from None


def _sentence_repo(resolved: ResolvedSource, config: Mapping[str, Any], spec: EmbeddingSpec | None,
                   pooling: Pooling | None, problem: ProblemAt, notes: list[str]) -> SentenceRepo | None:
    loc = ("sentence_embedding",) if spec is not None else ("source",)
    modules_path = _file(resolved, MODULES, problem, loc)
    if modules_path is None:
        if spec is None or pooling is None:
            return None  # a plain checkpoint and no sentence_embedding: not a sentence-transformers package
        return _written(resolved, config, spec, pooling, problem, checkpoint_length=None)
    entries = _json(modules_path, problem, loc)
    try:
        modules = [(str(e["type"]), str(e.get("path", ""))) for e in entries]
    except (KeyError, TypeError, AttributeError):
        raise SourceError(str(problem(loc, f"{modules_path} is not a sentence-transformers modules.json"))) from None
    unknown = sorted({kind for kind, _ in modules if kind not in _TYPES})
    transformer_paths = [path for kind, path in modules if _TYPES.get(kind) == "Transformer"]
    why_not = None
    if unknown:
        why_not = f"modules.json lists {', '.join(unknown)}"
    elif transformer_paths != [""]:
        why_not = "modules.json has no single Transformer module at the checkpoint root (path \"\")"
    if why_not:
        if spec is not None and pooling is not None:  # the recipe says what the embedding is: write that
            notes.append(f"sentence-transformers files written from sentence_embedding, not copied: {why_not}")
            return _written(resolved, config, spec, pooling, problem, checkpoint_length=None)
        notes.append(f"not packaged as a sentence-transformers repo: {why_not} (only Transformer, Pooling and "
                     "Normalize are)")
        return None
    kinds = tuple(_TYPES[kind] for kind, _ in modules)
    length = _checkpoint_length(resolved, problem, loc)
    if pooling is not None and spec is not None:
        own = _checkpoint_pooling(resolved, modules, problem, loc)
        wanted_length = spec.max_seq_length
        if own != (pooling.mode, pooling.normalize) or (wanted_length != "auto" and wanted_length != length):
            return _written(resolved, config, spec, pooling, problem, checkpoint_length=length)
    copied = [name for name in (MODULES, TRANSFORMER_CONFIG, ST_CONFIG)
              if _file(resolved, name, problem, loc) is not None]
    for kind, path in modules:
        if path == "":
            continue
        copied += _module_files(resolved, kind, path, problem, loc)
    return SentenceRepo(origin="copied from the checkpoint", modules=kinds, max_seq_length=length,
                        copied=tuple(sorted(copied)))


def _module_files(resolved: ResolvedSource, kind: str, path: str, problem: ProblemAt,
                  loc: tuple[str, ...]) -> list[str]:
    """The regular files of a module's folder (checkpoint-relative); none if the folder is absent
    (a Normalize module has nothing to save)."""
    where = f"{resolved.folder / MODULES}: the {_TYPES[kind]} module's path {path!r}"
    try:
        names = parts(path, what="path")
        folder = inside(resolved.folder, "/".join(names), what="path", kind="dir", links_within=resolved.links_within)
        found = regular_files(folder, links_within=resolved.links_within)
    except MissingPath:
        return []
    except UnsafePath as e:
        raise SourceError(str(problem(loc, f"{where} {e.reason}: module paths must stay inside the checkpoint "
                                           "folder"))) from None
    prefix = "/".join(names)
    out = []
    for rel in found:
        full = f"{prefix}/{rel}"
        if full.endswith(PICKLE_SUFFIXES):
            raise SourceError(str(problem(loc, f"{resolved.folder / full} is a pickle file; pickles can run code "
                                               "when loaded, so the package never carries one")))
        _file(resolved, full, problem, loc)  # the same rule, from the checkpoint root
        out.append(full)
    return out


def _checkpoint_length(resolved: ResolvedSource, problem: ProblemAt, loc: tuple[str, ...]) -> int | None:
    path = _file(resolved, TRANSFORMER_CONFIG, problem, loc)
    if path is None:
        return None
    data = _json(path, problem, loc)
    value = data.get("max_seq_length") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _checkpoint_pooling(resolved: ResolvedSource, modules: list[tuple[str, str]], problem: ProblemAt,
                        loc: tuple[str, ...]) -> tuple[str, bool] | None:
    """(mode, normalize) as the checkpoint's modules say, or None where the Pooling config enables
    no single mode this pipeline pools with."""
    normalize = any(_TYPES[kind] == "Normalize" for kind, _ in modules)
    pooling = [path for kind, path in modules if _TYPES[kind] == "Pooling"]
    if len(pooling) != 1:
        return None
    rel = "/".join((*parts(pooling[0]), "config.json")) if pooling[0] else "config.json"
    path = _file(resolved, rel, problem, loc)
    if path is None:
        return None
    data = _json(path, problem, loc)
    if not isinstance(data, dict) or any(data.get(flag) for flag in _OTHER_FLAGS):
        return None
    enabled = [mode for mode, flag in _POOLING_FLAGS.items() if data.get(flag)]
    return (enabled[0], normalize) if len(enabled) == 1 else None


def _default_length(resolved: ResolvedSource, config: Mapping[str, Any], problem: ProblemAt) -> int | None:
    """What sentence-transformers picks without a sentence_bert_config.json: the smaller of the
    tokenizer's ``model_max_length`` and the model's ``max_position_embeddings``."""
    limits = []
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and not isinstance(positions, bool) and positions > 0:
        limits.append(positions)
    path = _file(resolved, "tokenizer_config.json", problem, ("source",))
    if path is not None:
        data = _json(path, problem, ("source",))
        tokens = data.get("model_max_length") if isinstance(data, dict) else None
        if isinstance(tokens, int) and not isinstance(tokens, bool) and 0 < tokens < 10**9:
            limits.append(tokens)
    return min(limits) if limits else None


def _dumps(data: Any) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def _written(resolved: ResolvedSource, config: Mapping[str, Any], spec: EmbeddingSpec, pooling: Pooling,
             problem: ProblemAt, checkpoint_length: int | None) -> SentenceRepo:
    """modules.json, sentence_bert_config.json, config_sentence_transformers.json and 1_Pooling/config.json
    as sentence-transformers reads them, from the resolved pooling: the same bytes for the same inputs."""
    if spec.max_seq_length != "auto":
        length: int | None = int(spec.max_seq_length)
        positions = config.get("max_position_embeddings")
        if isinstance(positions, int) and length > positions:
            raise SourceError(str(problem(("sentence_embedding", "max_seq_length"), f"{length} is over the model's "
                                          f"max_position_embeddings ({positions}) in config.json")))
    else:
        length = checkpoint_length if checkpoint_length is not None else _default_length(resolved, config, problem)
    hidden = config.get("hidden_size", config.get("dim", config.get("d_model")))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if pooling.normalize:  # Normalize saves nothing: its folder stays absent, as in the Hub's own repos
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    flags = {"word_embedding_dimension": hidden,
             **{flag: pooling.mode == mode for mode, flag in _POOLING_FLAGS.items()},
             **{flag: False for flag in _OTHER_FLAGS}}
    transformer = {"max_seq_length": length, "do_lower_case": False} if length is not None else {"do_lower_case": False}
    written = ((MODULES, _dumps(modules)), (TRANSFORMER_CONFIG, _dumps(transformer)),
               (ST_CONFIG, _dumps({"model_type": "SentenceTransformer", "prompts": {}, "default_prompt_name": None,
                                   "similarity_fn_name": "cosine"})),
               ("1_Pooling/config.json", _dumps(flags)))
    kinds = ("Transformer", "Pooling", *(("Normalize",) if pooling.normalize else ()))
    return SentenceRepo(origin="written from sentence_embedding", modules=kinds, max_seq_length=length,
                        written=written)


def _weights(resolved: ResolvedSource, package: PackageSpec, license: str | None,
             problem: ProblemAt) -> SourceWeights:
    loc = ("package", "source_weights")
    setting = package.source_weights
    if setting is False:
        return SourceWeights(False, (), "package.source_weights: false")
    if setting == "auto":
        if license is None:
            return SourceWeights(False, (), "auto: the checkpoint's README names no license, so redistribution is "
                                 "not assumed (set package.source_weights: true if its terms allow it)")
        if license.lower() not in REDISTRIBUTABLE:
            return SourceWeights(False, (), f"auto: license {license!r} is not one known to allow redistribution "
                                 "(set package.source_weights: true if its terms allow it)")
        why = f"auto: license {license!r} allows redistribution"
    else:
        why = "package.source_weights: true"
    index = _file(resolved, WEIGHTS_INDEX, problem, loc)
    if index is not None:
        data = _json(index, problem, loc)
        try:
            shards = sorted(set(data["weight_map"].values()))
        except (KeyError, TypeError, AttributeError):
            raise SourceError(str(problem(loc, f"{index} has no weight_map"))) from None
        for shard in shards:
            if not isinstance(shard, str) or not shard.endswith(".safetensors") or _file(resolved, shard, problem,
                                                                                         loc) is None:
                raise SourceError(str(problem(loc, f"{index} names the shard {str(shard)[:80]!r}, not a "
                                                   "safetensors file in the checkpoint folder")))
        return SourceWeights(True, (WEIGHTS_INDEX, *shards), why)
    if _file(resolved, WEIGHTS, problem, loc) is not None:
        return SourceWeights(True, (WEIGHTS,), why)
    reason = f"{why}, but the checkpoint has no safetensors weights (pickles are never shipped)"
    if setting is True:
        raise SourceError(str(problem(loc, f"true: {resolved.folder} has no {WEIGHTS}; pickle weights are never "
                                           "shipped: convert them to safetensors first, or set it to false")))
    return SourceWeights(False, (), reason)
