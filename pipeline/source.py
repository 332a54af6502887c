"""Resolve a recipe's source to a checkpoint folder, check it is safe, and load it once.

Three kinds of source: a Hub id pinned to a revision (downloaded through huggingface_hub's cache),
a folder relative to the recipe, or an installed package that ships a checkpoint. Only safetensors
weights are loaded; pickle weights and remote code are refused. Only regular files inside the
checkpoint folder are read (``pipeline.paths``: a symlink leading out of it is refused, naming the
file), every one of them enters the source fingerprint, and its sizes are checked
(``pipeline.sizes``) before any file is hashed whole or any model built. This module never writes
outputs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import carry, sizes, untrusted
from pipeline.errors import SourceError
from pipeline.filehash import sha256_file
from pipeline.hub_http import bound_timeouts
from pipeline.loaded import LoadedSource, ResolvedSource
from pipeline.paths import MissingPath, UnsafePath, inside, regular_files
from pipeline.pooling import Pooling
from pipeline.pooling import resolve as resolve_pooling
from pipeline.recipe import Recipe, check_task
from pipeline.tasks import EMBEDDING_TASKS, IMAGE, task_kind

__all__ = ["CheckedSource", "LoadedSource", "ResolvedSource", "sha256_file", "resolve", "check", "load"]

SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
MAX_CONFIG_BYTES = 16 * 2**20  # a config.json is a few kB; a huge one is not read
CONFIG_LIMITS = untrusted.Limits(max_bytes=MAX_CONFIG_BYTES, max_values=1_000_000, what="a config.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# What a Hub download fetches: configs, tokenizer files and safetensors, never pickles.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "*.md"]


def _hash_folder(folder: Path, links_within: Path | None = None,
                 sha256: Callable[[Path], str] = sha256_file) -> dict[str, str]:
    """sha256 of every regular file in the checkpoint folder (``.cache``, huggingface_hub's local
    metadata, aside). Raises UnsafePath for a symlink leading out of the folder or a special file."""
    return {rel: sha256(path)
            for rel, path in regular_files(folder, links_within=links_within, skip=(".cache",)).items()}


def _source_loc(kind: str) -> tuple[str, str]:
    return ("source", {"hub": "model", "folder": "path", "package": "package"}[kind])


def resolve(recipe: Recipe, sha256: Callable[[Path], str] = sha256_file) -> ResolvedSource:
    """:func:`resolve_checked` without the check's result."""
    return resolve_checked(recipe, sha256)[0]


def resolve_checked(recipe: Recipe, sha256: Callable[[Path], str] = sha256_file) -> tuple[ResolvedSource,
                                                                                          CheckedSource]:
    """Find the checkpoint folder (downloading a Hub source into the cache), check it (:func:`check`:
    before any file is hashed whole) and hash it (with ``sha256``: a :class:`pipeline.filehash.StatCache`
    reads an unchanged file once). Returns the source and what the check read (once per build).

    Raises:
        SourceError: the folder or package is missing, the Hub download failed, a file in the
            folder is a symlink leading out of it (or not a regular file), or :func:`check` refused it.
    """
    src = recipe.source
    if src.path is not None:
        folder = (recipe.folder / src.path).resolve()
        if not folder.is_dir():
            raise SourceError(str(recipe.problem(("source", "path"), f"folder not found: {folder}")))
        kind, ident, revision = "folder", src.path, None
    elif src.package is not None:
        spec = importlib.util.find_spec(src.package)
        if spec is None or not spec.submodule_search_locations:
            raise SourceError(str(recipe.problem(
                ("source", "package"), f"package {src.package!r} is not installed "
                f"(pip install --no-deps the distribution that ships it)")))
        root = Path(next(iter(spec.submodule_search_locations)))
        try:
            folder = inside(root, src.subfolder, what="subfolder", kind="dir") if src.subfolder else root
        except MissingPath:
            raise SourceError(str(recipe.problem(("source", "subfolder"),
                                                 f"package {src.package!r} has no folder {src.subfolder!r}"))) from None
        except UnsafePath as e:
            raise SourceError(str(recipe.problem(("source", "subfolder"), f"{e.reason} (in package "
                                                 f"{src.package!r})"))) from None
        kind, ident, revision = "package", src.package, _package_version(src.package)
    else:
        assert src.model is not None and src.revision is not None  # guaranteed by the schema
        folder = _download(recipe, src.model, src.revision)
        kind, ident, revision = "hub", src.model, folder.name
    # a Hub cache snapshot is a folder of symlinks into its repo's blobs/: they may lead there, nowhere else
    links_within = folder.parent.parent / "blobs" if kind == "hub" else None
    unhashed = ResolvedSource(kind=kind, folder=folder, id=ident, revision=revision, files={},
                              links_within=links_within)
    try:
        regular_files(folder, links_within=links_within, skip=(".cache",))  # nothing read before this passes
        # sizes and headers before hashing: a 100 GB sparse file is refused, not hashed
        checked = check(recipe, unhashed)
        files = _hash_folder(folder, links_within, sha256)
    except UnsafePath as e:
        raise SourceError(str(recipe.problem(_source_loc(kind), _unsafe(folder, e)))) from None
    return ResolvedSource(kind=kind, folder=folder, id=ident, revision=revision, files=files,
                          links_within=links_within), checked


def _unsafe(folder: Path, e: UnsafePath) -> str:
    return (f"{e.path} in {folder} {e.reason}: only regular files inside the checkpoint folder are read"
            + (" (copy the file in place of the link)" if "symlink" in e.reason else ""))


def _package_version(module: str) -> str | None:
    """``<distribution>==<version>`` of the installed distribution that ships ``module``."""
    try:  # the usual case, a distribution named after its module, without scanning every installed one
        dist = importlib.metadata.distribution(module)
        if any(f.parts[:1] == (module,) for f in dist.files or ()):
            return f"{dist.metadata['Name']}=={dist.version}"
    except importlib.metadata.PackageNotFoundError:
        pass
    for name in importlib.metadata.packages_distributions().get(module, []):  # reads every distribution: slow
        return f"{name}=={importlib.metadata.version(name)}"
    return None


def _download(recipe: Recipe, repo_id: str, revision: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )


    bound_timeouts()

    try:
        patterns = [*HUB_PATTERNS, *(["*.bin"] if recipe.source.allow_pickle else []),
                    *(["*.py"] if recipe.source.trust_remote_code else [])]
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except RevisionNotFoundError:
        raise SourceError(str(recipe.problem(("source", "revision"),
                                             f"{repo_id} has no revision {revision!r}"))) from None
    except RepositoryNotFoundError:
        raise SourceError(str(recipe.problem(("source", "model"),
                                             f"no such Hub model {repo_id!r} (or no access to it)"))) from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise SourceError(str(recipe.problem(("source", "model"),
                                             f"could not download {repo_id}@{revision}: {type(e).__name__}")),
                          hint="check the network, HF_ENDPOINT and HF_TOKEN") from None


@dataclass(frozen=True)
class CheckedSource:
    """What :func:`check` read: config.json and the recipe's sentence_embedding resolved against the checkpoint."""

    config: dict[str, Any]
    pooling: Pooling | None
    carried: carry.Carried | None = None  # what the package carries from the checkpoint (pipeline.carry)


def check(recipe: Recipe, resolved: ResolvedSource) -> CheckedSource:
    """Refuse unsafe or unusable checkpoints before anything is loaded; returns config.json and the pooling.

    Reads files only (no torch, transformers or optimum), so every build runs it, even one that
    reuses all its outputs; the task is checked against optimum's registry by :func:`load`.

    Raises:
        SourceError: no config; remote code or pickle-only weights the recipe did not allow; no
            weights; a truncated or corrupt safetensors file; a config implausibly large or
            describing far more parameters than the weights hold; a build over the memory budget
            (``source.max_memory_mb``, by default the memory available now); a file read that is a
            symlink leading out of the folder.
    """
    try:
        return _check(recipe, resolved)
    except UnsafePath as e:
        raise SourceError(str(recipe.problem(_source_loc(resolved.kind), _unsafe(resolved.folder, e)))) from None


def _check(recipe: Recipe, resolved: ResolvedSource) -> CheckedSource:
    folder = resolved.folder
    src = recipe.source
    loc = _source_loc(resolved.kind)
    config_path = resolved.file("config.json")
    if config_path is None:
        raise SourceError(str(recipe.problem(loc, f"no config.json in {folder}")))
    try:
        config = untrusted.read_json(config_path, CONFIG_LIMITS)
    except untrusted.Refused as e:
        if e.kind == "size":
            raise SourceError(str(recipe.problem(loc, f"{folder / 'config.json'} is {e.size} bytes, over the limit "
                                                      f"of {MAX_CONFIG_BYTES} bytes for a config"))) from None
        raise SourceError(str(recipe.problem(loc, f"{config_path}: {e.reason}"))) from None
    except OSError as e:
        raise SourceError(str(recipe.problem(loc, f"{config_path}: cannot read: {e.strerror}"))) from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise SourceError(str(recipe.problem(loc, f"{config_path} has no model_type")))
    if "auto_map" in config and not src.trust_remote_code:
        raise SourceError(str(recipe.problem(
            loc, f"{config_path} needs remote code (auto_map: {', '.join(config['auto_map'])}); "
                 "custom modeling code is never run unless the recipe sets source.trust_remote_code: true")))
    parameters: int | None = None
    if any(resolved.file(name) for name in SAFETENSORS):
        try:
            shards = _safetensors_files(resolved)
        except UnsafePath as e:
            raise SourceError(str(recipe.problem(loc, f"model.safetensors.index.json in {folder} names the shard "
                                                      f"{e.path!r}, which {e.reason}"))) from None
        headers = [_header(recipe, loc, name, path) for name, path in shards]
        weight_bytes, parameters = sum(h.data_bytes for h in headers), sum(h.parameters for h in headers)
    else:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and resolved.file(p.name))
        if pickles and not src.allow_pickle:
            raise SourceError(str(recipe.problem(
                loc, f"{folder} has only pickle weights ({', '.join(pickles)}); pickles can run code when "
                     "loaded, so only safetensors are accepted: convert them with safetensors first, or set "
                     "source.allow_pickle: true (they are then loaded with weights_only=True)")))
        if not pickles:
            raise SourceError(str(recipe.problem(loc, f"{folder} has no model.safetensors")))
        weight_bytes = sum((folder / p).stat().st_size for p in pickles)
    try:
        sizes.check(config, parameters=parameters, weight_bytes=weight_bytes, max_memory_mb=src.max_memory_mb)
    except sizes.SizeError as e:
        field = ("source", e.field) if e.field else loc
        raise SourceError(str(recipe.problem(field, e.message if e.field else f"{folder}: {e.message}"))) from None
    # a sentence_embedding the checkpoint cannot back fails before loading
    pooling = resolve_pooling(recipe.sentence_embedding, folder, recipe.problem, links_within=resolved.links_within)
    carried = carry.plan(resolved, config, task=recipe.task, embedding_tasks=EMBEDDING_TASKS,
                         spec=recipe.sentence_embedding, pooling=pooling, package=recipe.package,
                         problem=recipe.problem)
    return CheckedSource(config, pooling, carried)


def _safetensors_files(resolved: ResolvedSource) -> list[tuple[str, Path | None]]:
    """(name, path) of every safetensors file of the checkpoint (None: missing); the index's shard
    names are paths from the checkpoint, kept inside its folder."""
    index = resolved.file("model.safetensors.index.json")
    if index is not None:
        try:
            shards = sorted(set(untrusted.read_json(index, untrusted.CHECKPOINT_JSON)["weight_map"].values()))
        except (untrusted.Refused, OSError, KeyError, TypeError, AttributeError):
            return [("model.safetensors.index.json", index)]  # reported as corrupt by _header
        return [(str(shard), resolved.file(shard)) for shard in shards]
    return [("model.safetensors", resolved.file("model.safetensors"))]


def _header(recipe: Recipe, loc: tuple[str, ...], name: str, path: Path | None) -> sizes.Header:
    if path is None:
        raise SourceError(str(recipe.problem(loc, f"{name} is truncated or corrupt: missing")))
    try:
        return sizes.read_header(path)
    except ValueError as e:
        raise SourceError(str(recipe.problem(loc, f"{name} is truncated or corrupt: {e}"))) from None


def safetensors_size(recipe: Recipe, loc: tuple[str, ...], path: Path) -> int:
    """Bytes of tensor data in a safetensors file, after checking its header covers the file exactly.

    A safetensors file is an 8-byte little-endian header length, a JSON header giving each
    tensor's byte range, then the data: a truncated download or a corrupt file shows here, before
    any loading.

    Raises:
        SourceError: missing shard, unreadable header, or data not matching the header.
    """
    return _header(recipe, loc, path.name, path if path.is_file() else None).data_bytes


def load(recipe: Recipe, resolved: ResolvedSource, checked: CheckedSource | None = None) -> LoadedSource:
    """Check (unless ``checked`` is what :func:`check` gave for this source), then load the model for the
    recipe's task and its tokenizer, in eval mode.

    Raises:
        SourceError: see :func:`check`; also a missing tokenizer or weights that do not match the
            config.
        RecipeError: the task is not one optimum knows.
        UnsupportedModelError: the task is not exportable for this model type.
    """
    checked = checked or check(recipe, resolved)
    config_json = checked.config
    check_task(recipe, model_type=config_json["model_type"])
    import torch  # noqa: F401  (imported before transformers so its import cost shows where it belongs)
    from optimum.exporters.tasks import TasksManager
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    task = TasksManager.map_from_synonym(recipe.task)
    model_type = config_json["model_type"]
    loc = ("source", {"hub": "model", "folder": "path", "package": "package"}[resolved.kind])
    model_class = TasksManager.get_model_class_for_task(task, framework="pt", model_type=model_type)
    remote = recipe.source.trust_remote_code  # False unless the recipe opted in (checked by `check`)
    config = AutoConfig.from_pretrained(resolved.folder, trust_remote_code=remote)
    safetensors = any(resolved.file(name) for name in SAFETENSORS)
    try:
        model, info = model_class.from_pretrained(
            resolved.folder, config=config, use_safetensors=safetensors, weights_only=True,
            trust_remote_code=remote, output_loading_info=True)
    except Exception as e:  # safetensors, torch and transformers raise many types for a bad file
        mismatch = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
        why = (f"weights with other shapes than config.json ({mismatch[0]})" if mismatch
               else f"cannot load weights: {_first_line(e)}")
        raise SourceError(str(recipe.problem(loc, f"the checkpoint does not match its config: {why}"))) from None
    missing = list(info.get("missing_keys", []))
    mismatched = [f"{k} {a}->{b}" for k, a, b in info.get("mismatched_keys", [])]
    if missing or mismatched:
        what = (f"missing {len(missing)} weights ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
                if missing else f"weights with other shapes than the config ({', '.join(mismatched[:3])})")
        raise SourceError(str(recipe.problem(
            ("task",), f"the checkpoint does not match {type(model).__name__} for task {task!r}: {what}")),
            hint="pick the task the checkpoint was trained for")
    model.eval()
    tokenizer = processor = None
    if task_kind(task) == IMAGE:  # vision models take pixel_values made by their image processor
        processor = _image_processor(recipe, loc, resolved.folder)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved.folder, trust_remote_code=remote)
        except Exception as e:  # transformers raises many types, e.g. AttributeError for an unreadable spm.model
            spm = sorted(p.name for p in resolved.folder.glob("*.model"))
            raise SourceError(str(recipe.problem(loc, f"no usable tokenizer in {resolved.folder}: "
                                                      f"{type(e).__name__}: {_first_line(e)}")),
                              hint=f"transformers could not read or convert {', '.join(spm)}, a SentencePiece "
                                   "model: check the file; converting it needs the sentencepiece package"
                              if spm else None) from None
    return LoadedSource(resolved=resolved, task=task, model=model, tokenizer=tokenizer, config=config,
                        model_type=model_type, processor=processor,
                        load_info={"class": type(model).__name__,
                                   "unexpected_keys": sorted(info.get("unexpected_keys", []))},
                        pooling=checked.pooling)


def _image_processor(recipe: Recipe, loc: tuple[str, ...], folder: Path) -> Any:
    from transformers import AutoImageProcessor

    if not (folder / "preprocessor_config.json").is_file():
        raise SourceError(str(recipe.problem(loc, f"no preprocessor_config.json in {folder}: an image task needs "
                                                  "the checkpoint's image processor")))
    try:  # the slow processor: what a checkpoint saved without use_fast loads today, minus the warning
        return AutoImageProcessor.from_pretrained(folder, use_fast=False)
    except (OSError, ValueError, TypeError) as e:
        raise SourceError(str(recipe.problem(loc, f"no usable image processor in {folder}: "
                                                  f"{_first_line(e)}"))) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
