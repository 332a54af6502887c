"""A large graph's weights written as ONNX external data as the exporter encodes them, never held in a proto.

torch's TorchScript-based ONNX exporter (the one optimum-onnx's exporter calls) encodes every weight
into an in-memory ModelProto, serializes that to a string and copies the string into Python bytes:
three copies of the weights at once, on top of the model being exported (a BERT-large-sized build
peaked at 4.4x its weights there). It writes weights as external data only when the graph is over
2 GB, and has no switch to do so earlier. Inside :func:`weights_outside`, its encoder gets the graph
without its initializers (as with ``export_params=False``) when they weigh at least ``min_bytes``; the
weights it would have embedded are then written one at a time to files beside the graph, and the graph
refers to them as ONNX external data: the same initializers, with the same names, order, types and
bytes. optimum's exporter then gathers them into ``<graph>_data``, as it does for the files torch writes
for a graph over 2 GB.

This module changes where the exported weights live, never what is exported. It wraps
``torch._C.Graph._export_onnx`` for the duration of the context only, and refuses a call it does not
recognize rather than guess (a torch that calls it otherwise fails the export with a clear message).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

# one file per initializer beside the graph, <graph>.weight-00000 …, as torch's own external data format has
# it: optimum's exporter reads them, writes <graph>_data and deletes each file its graph names
WEIGHTS_INFIX = ".weight-"
# graph._export_onnx(params, opset, dynamic_axes, defer_weight_export, operator_export_type, strip_doc,
#                    keep_initializers_as_inputs, custom_opsets, add_node_names, model_file_location,
#                    node_attr_to_name): the call torch's exporter makes (torch 2.x, TorchScript path)
_EXPORT_ARGS = 10
_KEEP_AS_INPUTS, _FILE = 5, 8


def weights_bytes(initializers: Mapping[str, Any]) -> int:
    return sum(int(t.numel()) * int(t.element_size()) for t in initializers.values())


@contextlib.contextmanager
def weights_outside(min_bytes: int) -> Iterator[list[Path]]:
    """While inside, each graph torch's TorchScript exporter writes to a file with at least ``min_bytes`` of
    initializers keeps them as external data, one file per initializer (``<graph>.weight-00000`` …); yields
    the list of the graphs that took this path (in the order written)."""
    import torch

    graph_class: Any = torch._C.Graph
    original = graph_class._export_onnx
    written: list[Path] = []

    def export_onnx(graph: Any, initializers: Mapping[str, Any], *args: Any) -> Any:
        if weights_bytes(initializers) < min_bytes:
            return original(graph, initializers, *args)
        if len(args) != _EXPORT_ARGS or not isinstance(args[_FILE], str) or not args[_FILE].endswith(".onnx"):
            raise RuntimeError("torch's ONNX exporter called Graph._export_onnx with arguments this pipeline does "
                               f"not know ({len(args) + 1} of them); pipeline/stages/onnx_weights.py needs updating "
                               "for this torch version")
        proto, export_map, _, node_names = original(graph, {}, *args)
        path = Path(args[_FILE])
        proto = move_weights(proto, initializers, path, keep_as_inputs=bool(args[_KEEP_AS_INPUTS]))
        written.append(path)
        return proto, export_map, True, node_names

    graph_class._export_onnx = export_onnx
    try:
        yield written
    finally:
        graph_class._export_onnx = original


def move_weights(proto: bytes, initializers: Mapping[str, Any], graph_file: Path, *, keep_as_inputs: bool) -> bytes:
    """``proto`` (a graph encoded without its initializers, which then appear as graph inputs) with
    ``initializers`` added as external data, each written to its own file beside ``graph_file``, in the
    order the encoder would have added them (its inputs' order), each tensor's bytes as it would have
    embedded them."""
    import onnx

    model = onnx.ModelProto.FromString(proto)
    graph = model.graph
    order = [i.name for i in graph.input if i.name in initializers]
    if len(order) != len(initializers):
        missing = sorted(set(initializers) - set(order))[:3]
        raise RuntimeError(f"torch's exporter left initializers out of the graph's inputs ({', '.join(missing)})")
    if not keep_as_inputs:
        inputs = [i for i in graph.input if i.name not in initializers]
        del graph.input[:]
        graph.input.extend(inputs)
    for index, name in enumerate(order):
        tensor = initializers[name].detach().contiguous()  # a folded transpose is a view: one copy at a time
        raw = _raw(tensor)
        location = f"{graph_file.name}{WEIGHTS_INFIX}{index:05d}"
        (graph_file.parent / location).write_bytes(raw)
        entry = graph.initializer.add()
        entry.name = name
        entry.data_type = _onnx_type(tensor)
        entry.dims.extend(int(d) for d in tensor.shape)
        entry.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", location), ("length", str(len(raw)))):
            item = entry.external_data.add()
            item.key, item.value = key, value
        del tensor, raw
    return model.SerializeToString()


def _raw(tensor: Any) -> memoryview:
    """The tensor's bytes, little-endian as ONNX's raw_data holds them, without a copy."""
    import torch

    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: its bits, as uint16
        tensor = tensor.view(torch.uint16)
    return memoryview(tensor.numpy()).cast("B")


def _onnx_type(tensor: Any) -> int:
    import onnx
    import torch

    types = {torch.float32: onnx.TensorProto.FLOAT, torch.float16: onnx.TensorProto.FLOAT16,
             torch.bfloat16: onnx.TensorProto.BFLOAT16, torch.float64: onnx.TensorProto.DOUBLE,
             torch.int64: onnx.TensorProto.INT64, torch.int32: onnx.TensorProto.INT32,
             torch.int16: onnx.TensorProto.INT16, torch.int8: onnx.TensorProto.INT8,
             torch.uint8: onnx.TensorProto.UINT8, torch.bool: onnx.TensorProto.BOOL}
    if tensor.dtype not in types:
        raise RuntimeError(f"an initializer of type {tensor.dtype} has no ONNX type here")
    return types[tensor.dtype]
