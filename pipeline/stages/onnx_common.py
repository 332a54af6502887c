"""What the targets built from an ONNX graph share (onnx, openvino): optimum-onnx's export of the loaded
model, with the recipe's pooled ``sentence_embedding`` traced into the graph, and a graph's input and
output names.

Not a stage itself (it registers nothing): each target that starts from an ONNX graph calls
:func:`export` into its own work folder, so no target depends on another's output. It must not decide
gating or packaging, and it imports optimum and onnx only inside functions.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import StageError
from pipeline.loaded import LoadedSource
from pipeline.pooling import OUTPUT as POOLED_OUTPUT
from pipeline.pooling import TOKEN_OUTPUT, pool
from pipeline.stages import onnx_weights

ONNX_FILE = "model.onnx"
ENCODER_FILE = "encoder_model.onnx"
# a graph whose weights reach this size is exported with them as external data (model.onnx_data) rather than
# serialized in memory, where torch holds three copies of them at once (pipeline/stages/onnx_weights.py); below
# it, one self-contained model.onnx, which onnxruntime and transformers.js load from the one file
EXTERNAL_WEIGHTS_BYTES = 2**30


def export(stage: str, source: LoadedSource, folder: Path, opset: int) -> None:
    """optimum-onnx's exporter on the loaded model into ``folder`` (``model.onnx`` and its external data,
    or a generation task's graphs), with dynamic batch and sequence axes at ``opset``; with the recipe's
    ``sentence_embedding``, the graph outputs it too (:func:`pooled_onnx_config`).

    optimum's own export validation is switched off: it only warns on a miss (the parity gate checks).

    Raises:
        StageError: the exporter failed, wrote no graph, or dropped the pooled output.
    """
    from optimum.exporters.onnx import onnx_export_from_model

    export_dir = folder / "export"
    try:
        custom = {"model": pooled_onnx_config(stage, source)} if source.pooling is not None else None
        with quiet(), onnx_weights.weights_outside(EXTERNAL_WEIGHTS_BYTES):
            onnx_export_from_model(source.model, output=export_dir, opset=opset, task=source.task,
                                   do_validation=False, preprocessors=None, custom_onnx_configs=custom)
    except StageError:
        raise
    except Exception as e:  # optimum raises bare ValueError/RuntimeError for unsupported models
        raise StageError(stage, f"export failed: {type(e).__name__}: {e}") from e
    for produced in sorted(export_dir.glob("*.onnx*")):  # model.onnx and its external data
        shutil.move(str(produced), folder / produced.name)
    shutil.rmtree(export_dir)
    if not (folder / ONNX_FILE).is_file() and not (folder / ENCODER_FILE).is_file():
        raise StageError(stage, f"the exporter wrote no {ONNX_FILE}")
    if custom is not None and POOLED_OUTPUT not in io_names(folder / ONNX_FILE)["outputs"]:
        # the gate compares the outputs artifact and eager share: a dropped output would go unnoticed
        raise StageError(stage, f"the exported graph has no {POOLED_OUTPUT} output")


def pooled_onnx_config(stage: str, source: LoadedSource) -> Any:
    """optimum's own ONNX config for the model type and task, plus a ``sentence_embedding`` output
    ([batch, hidden]) that :func:`pipeline.pooling.pool` computes from the token embeddings inside the
    traced forward: the recipe's sentence_embedding, in the graph.

    Everything else (inputs, dynamic axes, the model patcher, opset handling) stays optimum's; the
    pooling wraps the patched forward optimum traces, so it is traced into the same graph.
    """
    from optimum.exporters.tasks import TasksManager

    pooling = source.pooling
    assert pooling is not None
    constructor = TasksManager.get_exporter_config_constructor(
        exporter="onnx", model=source.model, task=source.task, library_name="transformers")
    base_class = constructor.func if isinstance(constructor, functools.partial) else constructor
    keywords = constructor.keywords if isinstance(constructor, functools.partial) else {}

    class PooledOnnxConfig(base_class):  # type: ignore[misc, valid-type]
        @property
        def outputs(self) -> dict[str, dict[int, str]]:
            return {**super().outputs, POOLED_OUTPUT: {0: "batch_size"}}

        def patch_model_for_export(self, model: Any, model_kwargs: dict[str, Any] | None = None) -> Any:
            patcher = super().patch_model_for_export(model, model_kwargs=model_kwargs)
            forward = patcher.patched_forward
            signature = inspect.signature(forward)  # the model's own forward (optimum wraps it)

            @functools.wraps(forward)  # optimum orders the graph inputs by this signature
            def pooled_forward(*args: Any, **kwargs: Any) -> Any:
                outputs = forward(*args, **kwargs)
                # the tracer passes the inputs positionally: find the mask by the forward's signature
                mask = signature.bind_partial(*args, **kwargs).arguments["attention_mask"]
                outputs[POOLED_OUTPUT] = pool(outputs[TOKEN_OUTPUT], mask, pooling)
                return outputs

            patcher.patched_forward = pooled_forward
            return patcher

    config = PooledOnnxConfig(source.model.config, int_dtype="int64", float_dtype="fp32", **keywords)
    missing = [what for what, present in (("input attention_mask", "attention_mask" in config.inputs),
                                          (f"output {TOKEN_OUTPUT}", TOKEN_OUTPUT in config.outputs)) if not present]
    if missing:
        raise StageError(stage, f"sentence_embedding: optimum's ONNX config for {source.model_type} "
                                f"({source.task}) has no {', '.join(missing)} to pool with")
    return config


def io_names(path: Path) -> dict[str, list[str]]:
    """An ONNX graph's input names (initializers left out) and output names, in graph order."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return {"inputs": [i.name for i in graph.input if i.name not in initializers],
            "outputs": [o.name for o in graph.output]}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The tracer's warnings are about exactly what the parity gate checks, and optimum and
    onnxruntime log progress at INFO/WARNING: keep the build's output readable."""
    loggers = [logging.getLogger(n) for n in ("optimum", "onnxruntime", "root")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
