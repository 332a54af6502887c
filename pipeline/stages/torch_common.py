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

from pipeline.artifact import Runner
from pipeline.batches import EXPORT_SHAPE, TEXT_INPUTS, synthetic_batch
from pipeline.errors import StageError, UnsupportedModelError
from pipeline.loaded import LoadedSource
from pipeline.tasks import TEXT_TASKS, one_forward

JIT_DEPRECATED = ("torch.jit is deprecated since torch 2.10 (trace, script, save and load warn on every call); "
                  "this artifact still loads with torch.jit.load today, but prefer the torch_export target")


def jit_usage(name: str, repo: str, file: str) -> list[str]:
    """Model card lines: load a torch.jit archive of the package with torch alone."""
    return [f"`{name}` with torch alone:", "", "```python", "import torch",
            "from huggingface_hub import hf_hub_download", "",
            f'module = torch.jit.load(hf_hub_download("{repo}", "{file}"))', "```", ""]


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
    if not one_forward(task):
        raise UnsupportedModelError(f"{stage}: task {task!r} ({model_type}) is not supported; {supported}; "
                                    "use the onnx target for it")


def input_names(stage: str, source: LoadedSource) -> list[str]:
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


def example_inputs(source: LoadedSource, names: Sequence[str], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """A padded batch of ordinary tokens from the recipe's tokenizer, at ``shape`` (the trace shape)."""
    return synthetic_batch(source.tokenizer, set(names), shape[0], shape[1], np.random.default_rng(0))


def loaded_io(stage: str, source: LoadedSource) -> tuple[list[str], dict[str, np.ndarray], list[str]]:
    """For a stage that traces or exports the loaded model: refuse an unsupported model, then its input
    names (in forward order), example inputs at the export shape, and the output names they give."""
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
        save_jit(frozen, path)


def save_jit(module: Any, path: Path) -> None:
    """``torch.jit.save`` without the archive's debug records, so the bytes do not depend on where
    the code ran from.

    Why: the ``*.debug_pkl`` records hold the source ranges of every node, and for a trace the whole
    Python call stack at trace time, with absolute paths (the checkout, the virtualenv, the caller:
    CLI or a test runner). The archive is re-written with torch's own writer, every other record
    copied as it is and in its order; ``torch.jit.load`` needs no debug records (its error messages
    then name no source line). The writer derives ``.data/serialization_id`` from the records anew.
    """
    import torch

    raw = path.with_name(f".{path.name}.with-debug")
    torch.jit.save(module, str(raw))
    try:
        reader = torch._C.PyTorchFileReader(str(raw))
        writer = torch._C.PyTorchFileWriter(str(path))
        for name in reader.get_all_records():
            if name.endswith(".debug_pkl") or name == ".data/serialization_id":
                continue
            data = reader.get_record(name)
            writer.write_record(name, data, len(data))
        writer.write_end_of_file()
        del writer, reader
    finally:
        raw.unlink(missing_ok=True)


class _SortedIterationSet(set):  # type: ignore[type-arg]
    """A set that iterates in sorted order (its elements are attribute names)."""

    def __iter__(self) -> Iterator[Any]:
        return iter(sorted(set.__iter__(self), key=str))


@contextlib.contextmanager
def same_bytes_in_every_process() -> Iterator[None]:
    """While torch.jit scripts or traces, its process-wide state starts afresh and its name sets iterate
    in sorted order, so the archive saved afterwards has the same bytes in every process.

    Why, twice over:
    - torch.jit names every module type it compiles ``___torch_mangle_<N>``, N counted by one
      compilation unit per process (``torch.jit._state._python_cu``, read by name from C++ too), and
      reuses cached types (``torch.jit._recursive.concrete_type_store``): a trace made after another
      target was scripted in the same process got other names. Each save here gets a fresh unit
      and type store (restored afterwards; the module keeps the unit it was compiled into).
    - it collects a module's constants (``__constants__`` and ``Final`` annotations) into a plain
      ``set`` of names (``infer_concrete_type_builder``) and writes them in that set's iteration
      order, which follows Python's string hash seed.
    The archive's ``.data/serialization_id`` derives from its records' CRCs, so it differed with either.
    """
    import torch
    import torch.jit._recursive as recursive
    import torch.jit._state as state
    import torch.jit._trace as trace_mod

    saved = (state._python_cu, recursive._python_cu, trace_mod._python_cu, recursive.concrete_type_store)
    fresh = torch._C.CompilationUnit()
    state._python_cu = recursive._python_cu = trace_mod._python_cu = fresh
    recursive.concrete_type_store = recursive.ConcreteTypeStore()
    had_set = "set" in vars(recursive)
    previous_set = vars(recursive).get("set")
    recursive.set = _SortedIterationSet  # type: ignore[attr-defined]
    try:
        yield
    finally:
        state._python_cu, recursive._python_cu, trace_mod._python_cu, recursive.concrete_type_store = saved
        if had_set:
            recursive.set = previous_set  # type: ignore[attr-defined]
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
