"""An Azure-layout ONNX graph as a static PyTorch module (`onnx2torch`), the input of the Core ML and LiteRT
converters (both convert PyTorch, not ONNX). Imports torch: runs only where training can (the `train` extra).

The graph is first made static for one image (batch 1), constant-folded by onnxruntime's basic (ONNX-standard)
optimizations, and every Reshape gets its output shape written out: converters that trace with symbolic values
(`torch.export`, Core ML's) cannot read shapes computed at run time.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper


def static_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Batch 1 everywhere, constants folded, Reshape targets explicit."""
    fixed = onnx.ModelProto.FromString(model.SerializeToString())
    for value in [*fixed.graph.input, *fixed.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_value = 1
    with tempfile.TemporaryDirectory(prefix="veil-static-") as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = os.path.join(folder, "model.onnx")
        ort.InferenceSession(fixed.SerializeToString(), options, providers=["CPUExecutionProvider"])
        folded = onnx.load(options.optimized_model_filepath)
    return _explicit_reshapes(folded)


def _explicit_reshapes(model: onnx.ModelProto) -> onnx.ModelProto:
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(dim.HasField("dim_value") for dim in dims):
            shapes[value.name] = [dim.dim_value for dim in dims]
    for node in model.graph.node:
        if node.op_type == "Reshape" and node.output[0] in shapes:
            name = f"{node.output[0]}/static_shape"
            model.graph.initializer.append(numpy_helper.from_array(np.array(shapes[node.output[0]], np.int64), name))
            node.input[1] = name
    return model


def to_torch(model: onnx.ModelProto) -> torch.nn.Module:
    """A PyTorch module computing `model` for one image (eval mode)."""
    import onnx2torch

    module = onnx2torch.convert(static_graph(model))
    for node in list(module.graph.nodes):
        if node.op == "call_module":
            _freeze_constant_arguments(module, node)
    module.graph.eliminate_dead_code()
    module.recompile()
    return module.eval()


def _constant(module: torch.fx.GraphModule, argument: object) -> list[int] | None:
    if not isinstance(argument, torch.fx.Node) or argument.op != "get_attr":
        return None
    return [int(v) for v in module.get_buffer(str(argument.target)).tolist()]


def _freeze_constant_arguments(module: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    """onnx2torch's Reshape and Resize read their shape tensors at run time (`.tolist()`), which torch.export
    and Core ML's tracer cannot follow: call torch.reshape / interpolate with the constants as Python ints."""
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.resize import OnnxResize, _onnx_mode_to_torch_mode

    target = module.get_submodule(str(node.target))
    replacement: tuple[object, tuple[object, ...], dict[str, object]] | None = None
    if isinstance(target, OnnxReshape) and (shape := _constant(module, node.args[1])) is not None:
        replacement = (torch.reshape, (node.args[0], tuple(shape)), {})
    elif isinstance(target, OnnxResize) and (sizes := _constant(module, node.kwargs.get("sizes"))):
        mode = _onnx_mode_to_torch_mode(target.onnx_mode, len(sizes) - 2)
        kwargs = {"size": tuple(sizes[2:]), "mode": mode, "align_corners": target.align_corners}
        replacement = (torch.nn.functional.interpolate, (node.args[0],), kwargs)
    if replacement is None:
        return
    function, args, kwargs = replacement
    with module.graph.inserting_after(node):
        new = module.graph.call_function(function, args, kwargs)  # type: ignore[arg-type]
    node.replace_all_uses_with(new)
    module.graph.erase_node(node)
