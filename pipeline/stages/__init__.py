"""The targets a recipe can ask for. Importing this package registers every built-in stage.

Adding a target is one module here: define its params model and a :class:`Stage` subclass
decorated with :func:`register_stage`, then import the module below.
"""

import pipeline.stages.onnx  # noqa: F401  (registered first: the registry's order is the build's)
from pipeline.stages import bettertransformer, openvino, torch_export, torchscript  # noqa: F401  (register)
from pipeline.stages.base import (
    Artifact,
    ClassNumerics,
    Gate,
    Stage,
    StageContext,
    StageParams,
    get_stage,
    register_stage,
    registered_stages,
    unregister_stage,
)

__all__ = [
    "Artifact",
    "ClassNumerics",
    "Gate",
    "Stage",
    "StageContext",
    "StageParams",
    "get_stage",
    "register_stage",
    "registered_stages",
    "unregister_stage",
]
