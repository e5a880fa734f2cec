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
    from onnx2torch.node_converters.reshape import OnnxReshape

    module = onnx2torch.convert(static_graph(model))
    # Reshape targets are constants now: call torch.reshape with Python ints (a traced tensor would be symbolic)
    for node in list(module.graph.nodes):
        if node.op != "call_module" or not isinstance(module.get_submodule(str(node.target)), OnnxReshape):
            continue
        data, shape = node.args
        if getattr(shape, "op", None) != "get_attr":
            continue
        target = tuple(int(v) for v in module.get_buffer(str(shape.target)).tolist())
        with module.graph.inserting_after(node):
            replacement = module.graph.call_function(torch.reshape, (data, target))
        node.replace_all_uses_with(replacement)
        module.graph.erase_node(node)
    module.graph.eliminate_dead_code()
    module.recompile()
    return module.eval()
