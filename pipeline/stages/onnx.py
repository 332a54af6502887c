"""ONNX target: optimum-onnx's exporter run on the already loaded source model; runs on onnxruntime.

Exports with dynamic batch and sequence axes at the recipe's opset. optimum's own validation is
switched off: it only warns on a miss and only checks the trace shape; the build's parity gate
does the checking.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

from pydantic import Field

from pipeline.errors import StageError
from pipeline.stages.base import Artifact, Runner, Stage, StageContext, StageParams, register_stage

ONNX_FILE = "model.onnx"


class OnnxParams(StageParams):
    opset: int = Field(default=18, ge=14, le=23, description="ONNX opset to export with")


@register_stage("onnx")
class OnnxExport(Stage[OnnxParams]):
    params_model = OnnxParams
    version = 1
    description = "ONNX graph exported by optimum-onnx, run with onnxruntime"
    package_folder = "onnx"  # where optimum's ORTModel (subfolder="onnx") and transformers.js look

    def run(self, ctx: StageContext, params: OnnxParams) -> list[Artifact]:
        from optimum.exporters.onnx import onnx_export_from_model

        export_dir = ctx.workdir / "export"
        # optimum logs progress and its own (non-gating) validation at INFO/WARNING; keep it quiet.
        logging.getLogger("optimum").setLevel(logging.ERROR)
        # The tracer's warnings are about exactly what the parity gate checks: don't spam them.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                onnx_export_from_model(
                    ctx.source.model,
                    output=export_dir,
                    opset=params.opset,
                    task=ctx.source.task,
                    do_validation=False,
                    preprocessors=None,
                )
        except Exception as e:  # optimum raises bare ValueError/RuntimeError for unsupported models
            raise StageError(self.name, f"export failed: {type(e).__name__}: {e}") from e
        files = []
        for produced in sorted(export_dir.glob("*.onnx*")):  # model.onnx and its external data
            shutil.move(str(produced), ctx.workdir / produced.name)
            files.append(produced.name)
        shutil.rmtree(export_dir)
        if ONNX_FILE not in files:
            raise StageError(self.name, f"the exporter wrote no {ONNX_FILE} (got {files or 'nothing'})")
        return [Artifact(name=self.name, files=tuple(files),
                         metadata={"file": ONNX_FILE, "opset": params.opset, **_io_names(ctx.workdir / ONNX_FILE)})]

    def runner(self, stage_dir: Path, artifact: Artifact) -> Runner:
        return ort_runner(stage_dir / artifact.metadata["file"])


def _io_names(path: Path) -> dict[str, list[str]]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return {"inputs": [i.name for i in graph.input if i.name not in initializers],
            "outputs": [o.name for o in graph.output]}


def ort_runner(path: Path, threads: int | None = None) -> Runner:
    """An onnxruntime session on CPU as a numpy-in, numpy-out callable.

    Inputs the graph does not take are ignored; integer inputs are cast to the graph's type.
    """
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    types = {i.name: i.type for i in session.get_inputs()}
    output_names = [o.name for o in session.get_outputs()]
    dtypes = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}

    def run(inputs):  # type: ignore[no-untyped-def]
        feed = {k: np.asarray(v).astype(dtypes.get(types[k], None) or np.asarray(v).dtype, copy=False)
                for k, v in inputs.items() if k in types}
        return dict(zip(output_names, session.run(output_names, feed), strict=True))

    return run
