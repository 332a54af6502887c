"""What the torch targets (torchscript, torch_export, bettertransformer) share: which models they take,
their example inputs, a positional wrapper with tuple outputs, and a numpy-in, numpy-out runner.

Not a stage itself (it registers nothing). It must not decide gating or packaging, and it imports
torch only inside functions.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import StageError, UnsupportedModelError
from pipeline.stages.base import Runner

# The inputs a text model's golden batches carry (pipeline.parity.synthetic_batch makes these).
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TEXT_TASKS = ("feature-extraction", "text-classification", "token-classification", "question-answering",
              "fill-mask")
JIT_DEPRECATED = ("torch.jit is deprecated since torch 2.10 (trace, script, save and load warn on every call); "
                  "this artifact still loads with torch.jit.load today, but prefer the torch_export target")


def check_model(stage: str, config: Mapping[str, Any], task: str | None = None) -> None:
    """Refuse, in one line and before any heavy work, what one traced/exported forward cannot be.

    Args:
        config: the checkpoint's config.json (read without transformers).
        task: the recipe's task, if known.

    Raises:
        UnsupportedModelError: an encoder-decoder model, a generation task (its gate compares greedy
            decoding, which one forward does not do), or an image task.
    """
    model_type = config.get("model_type", "?")
    supported = f"{stage} supports text models' single forward pass (encoders: {', '.join(TEXT_TASKS)})"
    if config.get("is_encoder_decoder"):
        raise UnsupportedModelError(f"{stage}: model type {model_type!r} is an encoder-decoder; {supported}; "
                                    "use the onnx target for it")
    base = (task or "").removesuffix("-with-past")
    if base in ("text-generation", "text2text-generation", "multiple-choice") or base.startswith("image-"):
        raise UnsupportedModelError(f"{stage}: task {task!r} ({model_type}) is not supported; {supported}; "
                                    "use the onnx target for it")


def input_names(stage: str, source: Any) -> list[str]:
    """The model inputs, in the order the artifact takes them: the tokenizer's, that forward accepts.

    Raises:
        UnsupportedModelError: the model takes inputs other than token ids and masks.
    """
    accepted = set(inspect.signature(source.model.forward).parameters)
    wanted = list(getattr(source.tokenizer, "model_input_names", []) or [])
    names = [n for n in wanted if n in accepted]
    other = [n for n in names if n not in TEXT_INPUTS]
    if "input_ids" not in names or other:
        raise UnsupportedModelError(
            f"{stage}: model type {source.model_type!r} takes {', '.join(wanted) or 'no named inputs'}; "
            f"{stage} supports text models taking {', '.join(TEXT_INPUTS)}")
    return names


def example_inputs(source: Any, names: Sequence[str], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """A padded batch of ordinary tokens from the recipe's tokenizer, at ``shape`` (the trace shape)."""
    from pipeline.parity import synthetic_batch

    return synthetic_batch(source.tokenizer, set(names), shape[0], shape[1], np.random.default_rng(0))


def loaded_io(stage: str, source: Any) -> tuple[list[str], dict[str, np.ndarray], list[str]]:
    """For a stage that traces or exports the loaded model: refuse an unsupported model, then its input
    names (in forward order), example inputs at the export shape, and the output names they give."""
    from pipeline.parity import EXPORT_SHAPE

    check_model(stage, source.config.to_dict(), source.task)
    names = input_names(stage, source)
    example = example_inputs(source, names, EXPORT_SHAPE)
    return names, example, output_names(source.model, example)


def positional(model: Any, names: Sequence[str]) -> Any:
    """``model`` as a module taking its inputs positionally (in ``names`` order) and returning a tuple
    (``return_dict=False``, no cache): what tracing and torch.export need, and what a consumer with
    only torch can call."""
    import torch

    accepted = set(inspect.signature(model.forward).parameters)
    extra: dict[str, Any] = {"return_dict": False}
    if "use_cache" in accepted:
        extra["use_cache"] = False

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(self.model(**dict(zip(names, inputs, strict=True)), **extra))

    return Positional().eval()


def trace(stage: str, model: Any, names: Sequence[str], example: Mapping[str, np.ndarray], path: Path,
          optimize: bool = False) -> None:
    """``torch.jit.trace`` of :func:`positional` ``model`` on ``example``, ``torch.jit.freeze``
    (and ``optimize_for_inference`` if asked), saved to ``path``. The tracer's warnings are about
    exactly what the parity gate checks at other shapes, so they are silenced.

    Raises:
        StageError: the tracer could not trace the model.
    """
    import torch

    with quiet(), torch.no_grad(), same_bytes_in_every_process():
        try:
            traced = torch.jit.trace(positional(model, names), tuple(tensors(example, names)), check_trace=False)
            frozen = torch.jit.freeze(traced.eval())
            if optimize:
                frozen = torch.jit.optimize_for_inference(frozen)
        except Exception as e:  # the tracer raises bare RuntimeErrors for Python it cannot record
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise StageError(stage, f"torch.jit.trace failed: {type(e).__name__}: {first}") from e
        torch.jit.save(frozen, str(path))


class _SortedIterationSet(set):  # type: ignore[type-arg]
    """A set that iterates in sorted order (its elements are attribute names)."""

    def __iter__(self) -> Iterator[Any]:
        return iter(sorted(set.__iter__(self), key=str))


@contextlib.contextmanager
def same_bytes_in_every_process() -> Iterator[None]:
    """While torch.jit scripts or traces, the name sets it builds iterate in sorted order.

    Why: torch.jit collects a module's constants (``__constants__`` and ``Final`` annotations) into a
    plain ``set`` of names (torch/jit/_recursive.py, ``infer_concrete_type_builder``) and writes them
    into the saved code in that set's iteration order, which follows Python's string hash seed; the
    archive's ``.data/serialization_id`` is derived from the records' CRCs, so it differs then too.
    Membership and size stay a set's; only the iteration order is fixed.
    """
    import torch.jit._recursive as recursive

    had = "set" in vars(recursive)
    previous = vars(recursive).get("set")
    recursive.set = _SortedIterationSet  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if had:
            recursive.set = previous  # type: ignore[attr-defined]
        else:
            del recursive.set  # type: ignore[attr-defined]


def script(module: Any) -> Any:
    """``torch.jit.script`` whose saved archive has the same bytes in every process."""
    import torch

    with same_bytes_in_every_process():
        return torch.jit.script(module)


def output_names(model: Any, inputs: Mapping[str, np.ndarray]) -> list[str]:
    """Names of the tensors the model returns, in the order its tuple output has them (the same
    names as the golden eager outputs, which parity compares by name)."""
    import torch

    accepted = set(inspect.signature(model.forward).parameters)
    extra = {"use_cache": False} if "use_cache" in accepted else {}
    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}, **extra, return_dict=True)
    return [k for k, v in out.items() if isinstance(v, torch.Tensor)]


def tensors(inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> list[Any]:
    """The named numpy inputs as int64 torch tensors, in ``names`` order (a missing attention mask
    or token type ids is all ones or zeros, as the tokenizer would give)."""
    import torch

    ids = np.asarray(inputs["input_ids"])
    defaults = {"attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return [torch.from_numpy(np.ascontiguousarray(np.asarray(inputs[n] if n in inputs else defaults[n]),
                                                  dtype=np.int64)) for n in names]


def tuple_runner(call: Any, inputs: Sequence[str], outputs: Sequence[str]) -> Runner:
    """A module taking positional tensors and returning a tuple, as a numpy-in, numpy-out runner."""
    import torch

    def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            result = call(*tensors(feed, inputs))
        result = result if isinstance(result, (tuple, list)) else (result,)
        return {name: value.detach().float().numpy() for name, value in zip(outputs, result, strict=True)}

    return run


def jit_runner(path: Path, inputs: Sequence[str], outputs: Sequence[str]) -> Runner:
    """A module saved by torch.jit (traced or scripted), loaded with plain ``torch.jit.load``, as a runner."""
    import torch

    with quiet():
        module = torch.jit.load(str(path), map_location="cpu").eval()
    run = tuple_runner(module, inputs, outputs)

    def quiet_run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with quiet():  # torch warns on a module's first call (e.g. "nested tensors are in prototype stage")
            return run(feed)

    return quiet_run


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """torch.jit's deprecation warnings (one per call) and the tracer's warnings (about exactly what
    the parity gate checks) would bury the build's output: the deprecation is noted once, in the
    artifact's metadata and the build's warnings, instead."""
    torch_logger = logging.getLogger("torch")
    level = torch_logger.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            torch_logger.setLevel(level)
