"""TorchScript target: the loaded model traced with example inputs from the recipe's tokenizer, frozen.

``torch.jit.trace`` of the model taking its inputs positionally (``return_dict=False``, no cache),
``torch.jit.freeze``, optionally ``torch.jit.optimize_for_inference``, saved as ``model.pt``. The
trace shape is the export shape parity knows (2x16), so a shape the tracer baked in fails the gate
at the other golden shapes with a message that says so. torch.jit is deprecated: the build notes it
once (artifact metadata and the build's warnings) and silences the per-call warnings. This module
builds and runs the artifact; it does not gate it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.batches import EXPORT_SHAPE
from pipeline.stages import torch_common
from pipeline.stages.base import Artifact, Runner, Stage, StageContext, StageParams, register_stage

MODEL_FILE = "model.pt"


class TorchScriptParams(StageParams):
    optimize_for_inference: bool = Field(
        default=False, description="also run torch.jit.optimize_for_inference (fuses conv/bn, may pre-pack "
                                   "weights for the CPU it runs on)")


@register_stage("torchscript")
class TorchScript(Stage[TorchScriptParams]):
    params_model = TorchScriptParams
    version = 2  # 2: the same bytes whatever the process compiled before
    description = "torch.jit.trace + freeze of the model, run with torch.jit.load"
    package_folder = "torchscript"
    library_name = "pytorch"

    def usage(self, repo: str, task: str, artifacts: Mapping[str, Mapping[str, Any]],
              recommended: str | None) -> list[str]:
        return [line for name, a in artifacts.items() for line in torch_common.jit_usage(name, repo, a["files"][0])]

    def check(self, params: TorchScriptParams, config: Mapping[str, Any], task: str) -> None:
        torch_common.check_model(self.name, config, task)

    def run(self, ctx: StageContext, params: TorchScriptParams) -> list[Artifact]:
        import torch

        source = ctx.source
        names, example, outputs = torch_common.loaded_io(self.name, source)
        torch_common.trace(self.name, source.model, names, example, ctx.workdir / MODEL_FILE,
                           optimize=params.optimize_for_inference)
        return [Artifact(name=self.name, files=(MODEL_FILE,), metadata={
            "file": MODEL_FILE, "inputs": names, "outputs": outputs, "trace_shape": list(EXPORT_SHAPE),
            "torch": torch.__version__, "layout": "torch.jit.ScriptModule (traced, frozen): forward(*inputs) -> "
            "tuple of outputs", "optimize_for_inference": params.optimize_for_inference,
            "notes": [torch_common.JIT_DEPRECATED]})]

    def runner(self, stage_dir: Path, artifact: Artifact, threads: int | None = None) -> Runner:
        meta = artifact.metadata
        return torch_common.jit_runner(stage_dir / meta["file"], meta["inputs"], meta["outputs"])
