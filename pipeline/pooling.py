"""Sentence-embedding pooling: what the recipe and the checkpoint ask for, and the torch code that pools.

A recipe's ``sentence_embedding`` section resolves here to a :class:`Pooling` (mode and
normalization), reading the checkpoint's sentence-transformers files where the recipe says
``auto``: ``modules.json`` (which modules follow the transformer) and the Pooling module's
``config.json``. :func:`pool` is the one implementation of the pooling, used both for the eager
reference and inside exported graphs, so the parity gate compares like with like. This module
reads files only (torch is imported inside :func:`pool`); it neither exports nor compares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline import untrusted
from pipeline.errors import Problem, SourceError
from pipeline.paths import MissingPath, UnsafePath, inside, parts

# A problem at a recipe field, with its file:line:col (``Recipe.problem``).
ProblemAt = Callable[[tuple[str, ...], str], Problem]

OUTPUT = "sentence_embedding"  # the graph output's name, as sentence-transformers' own ONNX exports call it
TOKEN_OUTPUT = "last_hidden_state"  # the token embeddings it is pooled from
MODES = ("mean", "cls", "max")
# sentence-transformers module types (modules.json) and what they mean here
_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"
# 1_Pooling/config.json flags, by our mode name
_FLAGS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens"}
_OTHER_FLAGS = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


@dataclass(frozen=True)
class Pooling:
    """How token embeddings become one vector per sample."""

    mode: str  # one of MODES
    normalize: bool
    origin: str  # where the settings came from: "recipe", or the checkpoint files read

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PoolingSpec(Protocol):
    """The recipe's ``sentence_embedding`` section (pipeline.recipe.SentenceEmbedding)."""

    @property
    def pooling(self) -> str: ...

    @property
    def normalize(self) -> bool | str: ...


def resolve(spec: PoolingSpec | None, folder: Path, problem: ProblemAt, *,
            links_within: Path | None = None) -> Pooling | None:
    """The pooling the recipe's ``sentence_embedding`` (``spec``) asks for, with ``auto`` fields read
    from the checkpoint in ``folder``; ``problem`` places an error at its recipe field.

    The module paths in modules.json come from the checkpoint: they must stay inside ``folder``
    (``pipeline.paths``; ``links_within`` as there).

    Raises:
        SourceError: ``auto`` with no sentence-transformers files to read it from; a checkpoint
            whose modules.json lists modules this pooling cannot reproduce (e.g. Dense); a
            Pooling config with no, several or an unsupported mode; a module path leaving the folder.
    """
    if spec is None:
        return None
    modules = _modules(problem, folder, links_within)
    read: list[str] = []
    mode = spec.pooling
    if mode == "auto":
        mode, config = _checkpoint_mode(problem, folder, modules, links_within)
        read.append(config)
    normalize = spec.normalize
    if normalize == "auto":
        if modules is None:
            raise SourceError(str(problem(
                ("sentence_embedding", "normalize"), f"auto: {folder} has no modules.json (not a sentence-transformers "
                "checkpoint) to read it from: set sentence_embedding.normalize to true or false")))
        normalize = _NORMALIZE in modules
        read.append("modules.json")
    origin = "recipe" if not read else "checkpoint " + ", ".join(dict.fromkeys(read))
    return Pooling(mode=mode, normalize=bool(normalize), origin=origin)


def _modules(problem: ProblemAt, folder: Path, links_within: Path | None) -> dict[str, str] | None:
    """``{module type: path}`` from modules.json, or None without one. Modules after the pooling
    that change the embedding (Dense, LayerNorm, …) are refused: the graph would not match."""
    path = folder / "modules.json"
    loc = ("sentence_embedding",)
    try:
        real = inside(folder, "modules.json", what="file", kind="file", links_within=links_within)
    except MissingPath:
        return None
    except UnsafePath as e:
        raise SourceError(str(problem(loc, f"{path} {e.reason}"))) from None
    try:
        entries = untrusted.read_json(real, untrusted.CHECKPOINT_JSON)
        modules = {str(e["type"]): e.get("path", "") for e in entries}
    except (untrusted.Refused, OSError, KeyError, TypeError, AttributeError):
        raise SourceError(str(problem(loc, f"{path} is not a sentence-transformers modules.json"))) from None
    for kind, module_path in modules.items():
        try:
            if module_path != "":  # "" is the checkpoint folder itself (the Transformer module's)
                parts(module_path, what="path")
        except UnsafePath as e:
            raise SourceError(str(problem(loc, f"{path}: the {kind.rsplit('.', 1)[-1]} module's path "
                                                      f"{e.path!r} {e.reason}: module paths must stay inside "
                                                      "the checkpoint folder"))) from None
    other = sorted(set(modules) - {_TRANSFORMER, _POOLING, _NORMALIZE})
    if other:
        raise SourceError(str(problem(loc, f"{path} lists {', '.join(other)}: only Transformer, Pooling and "
                                                  "Normalize modules can be exported into the graph")))
    return modules


def _checkpoint_mode(problem: ProblemAt, folder: Path, modules: dict[str, str] | None,
                     links_within: Path | None) -> tuple[str, str]:
    """The single pooling mode the checkpoint's Pooling config enables, and that file (relative)."""
    loc = ("sentence_embedding", "pooling")
    if modules is None or _POOLING not in modules:
        raise SourceError(str(problem(loc, f"auto: {folder} has no sentence-transformers Pooling module "
                                                  "(modules.json) to read it from: set sentence_embedding.pooling "
                                                  f"to one of {', '.join(MODES)}")))
    path = folder / modules[_POOLING] / "config.json"
    try:
        relative = "/".join((*parts(modules[_POOLING]), "config.json")) if modules[_POOLING] else "config.json"
        real = inside(folder, relative, what="file", kind="file", links_within=links_within)
    except MissingPath:
        raise SourceError(str(problem(loc, f"auto: cannot read {path}: there is no such file"))) from None
    except UnsafePath as e:
        raise SourceError(str(problem(loc, f"auto: {path} {e.reason}: modules.json's paths must stay "
                                                  "inside the checkpoint folder"))) from None
    try:
        config = untrusted.read_json(real, untrusted.CHECKPOINT_JSON)
        enabled = [mode for mode, flag in _FLAGS.items() if config.get(flag)]
        other = [flag for flag in _OTHER_FLAGS if config.get(flag)]
    except (untrusted.Refused, OSError, AttributeError):
        raise SourceError(str(problem(loc, f"auto: cannot read {path}"))) from None
    if other or len(enabled) != 1:
        got = ", ".join([*(_FLAGS[m] for m in enabled), *other]) or "none"
        raise SourceError(str(problem(loc, f"auto: {path} enables {got}; exactly one of "
                                                  f"{', '.join(_FLAGS.values())} can be exported")))
    return enabled[0], relative


def pool(token_embeddings: Any, attention_mask: Any, pooling: Pooling) -> Any:
    """``[batch, sequence, hidden]`` token embeddings → ``[batch, hidden]``, as sentence-transformers'
    Pooling and Normalize modules compute it (padding excluded by ``attention_mask``). Torch ops
    only, so the same code runs eagerly and is traced into an exported graph."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    if pooling.mode == "mean":
        pooled = (token_embeddings * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    elif pooling.mode == "cls":
        pooled = token_embeddings[:, 0]
    elif pooling.mode == "max":
        pooled = token_embeddings.masked_fill(mask == 0, -1e9).max(dim=1).values
    else:
        raise ValueError(f"unknown pooling mode {pooling.mode!r}")
    if pooling.normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return pooled
