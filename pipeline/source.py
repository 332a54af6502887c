"""Resolve a recipe's source to a checkpoint folder, check it is safe, and load it once.

Three kinds of source: a Hub id pinned to a revision (downloaded through huggingface_hub's cache),
a folder relative to the recipe, or an installed package that ships a checkpoint. Only safetensors
weights are loaded; pickle weights and remote code are refused. This module never writes outputs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import SourceError
from pipeline.filehash import sha256_file
from pipeline.loaded import LoadedSource, ResolvedSource
from pipeline.pooling import Pooling
from pipeline.pooling import resolve as resolve_pooling
from pipeline.recipe import Recipe, check_task
from pipeline.tasks import IMAGE, task_kind

__all__ = ["CheckedSource", "LoadedSource", "ResolvedSource", "sha256_file", "resolve", "check", "load"]

SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# What a Hub download fetches: configs, tokenizer files and safetensors, never pickles.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "*.md"]


def _hash_folder(folder: Path, sha256: Callable[[Path], str] = sha256_file) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and ".cache" not in p.parts}


def resolve(recipe: Recipe, sha256: Callable[[Path], str] = sha256_file) -> ResolvedSource:
    """Find the checkpoint folder (downloading a Hub source into the cache) and hash it (with ``sha256``:
    a :class:`pipeline.filehash.StatCache` reads an unchanged file once).

    Raises:
        SourceError: the folder or package is missing, or the Hub download failed.
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
        folder = Path(next(iter(spec.submodule_search_locations))) / src.subfolder
        if not folder.is_dir():
            raise SourceError(str(recipe.problem(("source", "subfolder"),
                                                 f"package {src.package!r} has no folder {src.subfolder!r}")))
        kind, ident, revision = "package", src.package, _package_version(src.package)
    else:
        assert src.model is not None and src.revision is not None  # guaranteed by the schema
        folder = _download(recipe, src.model, src.revision)
        kind, ident, revision = "hub", src.model, folder.name
    return ResolvedSource(kind=kind, folder=folder, id=ident, revision=revision, files=_hash_folder(folder, sha256))


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


def check(recipe: Recipe, resolved: ResolvedSource) -> CheckedSource:
    """Refuse unsafe or unusable checkpoints before anything is loaded; returns config.json and the pooling.

    Reads files only (no torch, transformers or optimum), so every build runs it, even one that
    reuses all its outputs; the task is checked against optimum's registry by :func:`load`.

    Raises:
        SourceError: no config; remote code or pickle-only weights the recipe did not allow; no
            weights; a truncated or corrupt safetensors file; weights over the memory budget.
    """
    folder = resolved.folder
    src = recipe.source
    loc = ("source", {"hub": "model", "folder": "path", "package": "package"}[resolved.kind])
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise SourceError(str(recipe.problem(loc, f"no config.json in {folder}")))
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceError(str(recipe.problem(loc, f"{config_path} is not valid JSON: {e}"))) from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise SourceError(str(recipe.problem(loc, f"{config_path} has no model_type")))
    if "auto_map" in config and not src.trust_remote_code:
        raise SourceError(str(recipe.problem(
            loc, f"{config_path} needs remote code (auto_map: {', '.join(config['auto_map'])}); "
                 "custom modeling code is never run unless the recipe sets source.trust_remote_code: true")))
    if any((folder / name).is_file() for name in SAFETENSORS):
        weight_bytes = sum(safetensors_size(recipe, loc, path) for path in _safetensors_files(folder))
    else:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles and not src.allow_pickle:
            raise SourceError(str(recipe.problem(
                loc, f"{folder} has only pickle weights ({', '.join(pickles)}); pickles can run code when "
                     "loaded, so only safetensors are accepted: convert them with safetensors first, or set "
                     "source.allow_pickle: true (they are then loaded with weights_only=True)")))
        if not pickles:
            raise SourceError(str(recipe.problem(loc, f"{folder} has no model.safetensors")))
        weight_bytes = sum((folder / p).stat().st_size for p in pickles)
    if src.max_memory_mb is not None:
        needed = 3 * weight_bytes / 2**20 + 600
        if needed > src.max_memory_mb:
            raise SourceError(str(recipe.problem(
                ("source", "max_memory_mb"), f"the weights are {weight_bytes / 2**20:.0f} MB; a build needs "
                f"about {needed:.0f} MB (3x the weights + 600 MB), over the budget of {src.max_memory_mb} MB")))
    # a sentence_embedding the checkpoint cannot back fails before loading
    return CheckedSource(config, resolve_pooling(recipe.sentence_embedding, folder, recipe.problem))


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            return [index]  # reported as corrupt by safetensors_size
        return [folder / shard for shard in shards]
    return [folder / "model.safetensors"]


def safetensors_size(recipe: Recipe, loc: tuple[str, ...], path: Path) -> int:
    """Bytes of tensor data in a safetensors file, after checking its header covers the file exactly.

    A safetensors file is an 8-byte little-endian header length, a JSON header giving each
    tensor's byte range, then the data: a truncated download or a corrupt file shows here, before
    any loading.

    Raises:
        SourceError: missing shard, unreadable header, or data not matching the header.
    """
    def bad(why: str) -> SourceError:
        return SourceError(str(recipe.problem(loc, f"{path.name} is truncated or corrupt: {why}")))

    if not path.is_file():
        raise bad("missing")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes, not even a header")
        length = int.from_bytes(head, "little")
        if length > min(size - 8, 100 * 2**20):
            raise bad(f"header of {length} bytes in a {size}-byte file")
        try:
            header = json.loads(f.read(length))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise bad("unreadable header") from None
    if 8 + length + end != size:
        raise bad(f"the header describes {end} bytes of tensors, the file holds {size - 8 - length}")
    return end


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
    safetensors = any((resolved.folder / name).is_file() for name in SAFETENSORS)
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
