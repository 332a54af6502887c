"""torch.export target: the loaded model exported with dynamic batch and sequence dimensions (``.pt2``).

``torch.export.export`` of the model taking its inputs positionally (``return_dict=False``, no
cache), batch and sequence declared dynamic (sequence up to the model's position limit), saved
with ``torch.export.save`` as ``model.pt2``; it loads with ``torch.export.load(...).module()``.
torch.export is the successor of TorchScript. This module builds and runs the artifact; it does not
gate it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import StageError
from pipeline.stages import torch_common
from pipeline.stages.base import Artifact, Runner, Stage, StageContext, StageParams, register_stage

MODEL_FILE = "model.pt2"


class TorchExportParams(StageParams):
    pass


@register_stage("torch_export")
class TorchExport(Stage[TorchExportParams]):
    params_model = TorchExportParams
    version = 2  # 2: no stack traces (absolute paths) in the saved program
    description = "torch.export.export with dynamic batch and sequence, run with torch.export.load"
    package_folder = "torch_export"
    library_name = "pytorch"

    def usage(self, repo: str, task: str, artifacts: Mapping[str, Mapping[str, Any]],
              recommended: str | None) -> list[str]:
        return [line for name, a in artifacts.items() for line in (
            f"`{name}` with torch alone:", "", "```python", "import torch",
            "from huggingface_hub import hf_hub_download", "",
            f'program = torch.export.load(hf_hub_download("{repo}", "{a["files"][0]}"))',
            "module = program.module()", "```", "")]

    def check(self, params: TorchExportParams, config: Mapping[str, Any], task: str) -> None:
        torch_common.check_model(self.name, config, task)

    def run(self, ctx: StageContext, params: TorchExportParams) -> list[Artifact]:
        import torch
        from torch.export import Dim


        source = ctx.source
        names, example, outputs = torch_common.loaded_io(self.name, source)
        max_seq = int(getattr(source.config, "max_position_embeddings", None) or 512)
        batch, seq = Dim("batch", min=1, max=4096), Dim("sequence", min=1, max=max_seq)
        # forward(*inputs): one dynamic-shape spec per positional tensor, all [batch, sequence]
        dynamic = (tuple({0: batch, 1: seq} for _ in names),)
        with torch_common.quiet(), torch.no_grad():
            try:
                program = torch.export.export(torch_common.positional(source.model, names),
                                              tuple(torch_common.tensors(example, names)), dynamic_shapes=dynamic)
            except Exception as e:  # torch.export raises many types (UserError, GuardOnDataDependent...)
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise StageError(self.name, f"torch.export.export failed: {type(e).__name__}: {first}") from e
            # each node's stack_trace is the Python call stack at export time, with absolute paths of the
            # checkout and the virtualenv: not part of the program, and it would make the bytes depend on them
            for module in program.graph_module.modules():
                if isinstance(module, torch.fx.GraphModule):
                    for node in module.graph.nodes:
                        node.meta.pop("stack_trace", None)
            torch.export.save(program, str(ctx.workdir / MODEL_FILE))
        return [Artifact(name=self.name, files=(MODEL_FILE,), metadata={
            "file": MODEL_FILE, "inputs": names, "outputs": outputs, "torch": torch.__version__,
            "dynamic": {"batch": [1, 4096], "sequence": [1, max_seq]},
            "layout": "torch.export.ExportedProgram: program.module()(*inputs) -> tuple of outputs"})]

    def runner(self, stage_dir: Path, artifact: Artifact, threads: int | None = None) -> Runner:
        import torch

        with torch_common.quiet():
            module = torch.export.load(str(stage_dir / artifact.metadata["file"])).module()
        return torch_common.tuple_runner(module, artifact.metadata["inputs"], artifact.metadata["outputs"])
