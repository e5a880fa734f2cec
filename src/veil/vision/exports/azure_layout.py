"""Re-shape a Veil ONNX model into the tensor layout Azure Custom Vision's compact-domain exports had.

Torch-free: the graphs around Veil's network are written with `onnx.helper` and joined with `onnx.compose`, so
an export needs only the iteration's stored ONNX (Veil's graph: input `image` normalized RGB, outputs
`probabilities` or `boxes`/`scores`, see `veil.vision.runtime`).

Input (Azure's, as read by Azure-Samples/customvision-export-samples `samples/python/onnx/*/predict.py`): one
float tensor `data` (N, 3, H, W) at the model's input size, BGR, 0..255, flagged by the WinML image metadata
`Image.BitmapPixelFormat=Bgr8` and `Image.NominalPixelRange=NominalRange_0_255` that those samples check.
(`pixels="rgb01"` gives the RGB 0..1 input Azure's OpenVINO samples feed instead.) The graph converts that to
Veil's normalization itself, so the network sees exactly what the service feeds it.

Classification outputs (Azure's compact classifiers): `classLabel` (N, 1) string, the top tag, and `loss`
(a sequence of {tag: probability} maps, ONNX-ML ZipMap) — or, for formats without strings, the probabilities
tensor alone (`classifier_head="tensor"`), as Azure's TensorFlow Lite / OpenVINO / [S1] exports had.

Detection output (Azure's compact detectors, a YOLOv2-style grid): one tensor `model_outputs0`
(N, 5·(5+C), gh, gw) — NHWC (N, gh, gw, 5·(5+C)) for TensorFlow Lite — that Azure's samples decode with five
fixed anchors: box centre (t + cell) / grid, size exp(t)·anchor / grid, score sigmoid(objectness) ·
softmax(class logits). Veil's detector is anchor-free (FCOS: one box and C scores per feature-map point), so each
point is written into one grid slot such that this decoding returns exactly that point's box and its top-class
score; the grid is the smallest square with enough slots, and unused slots carry objectness −30 (≈1e-13).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from veil.vision.runtime import ModelInfo, ModelLoadError

# The five YOLOv2 anchors (in grid cells) hard-coded in Azure's detection samples' `Model.ANCHORS`.
AZURE_ANCHORS = np.array([[0.573, 0.677], [1.87, 2.06], [3.34, 5.47], [7.88, 3.53], [9.77, 9.17]], dtype=np.float32)
EMPTY_SLOT = -30.0  # objectness/logit value of unused grid slots: sigmoid(−30) ≈ 9e-14, below any threshold
OFF_CLASS_LOGIT = -30.0  # logits of the non-top classes: softmax puts ≤ C·1e-13 on them
DETECTION_OUTPUT = "model_outputs0"
WINML_METADATA = {
    "Image.BitmapPixelFormat": "Bgr8",
    "Image.ColorSpaceGamma": "SRGB",
    "Image.NominalPixelRange": "NominalRange_0_255",
}


@dataclass(frozen=True)
class Grid:
    """Where Veil's A detection points go in Azure's grid: gh × gw cells × 5 anchors ≥ A slots."""

    height: int
    width: int
    points: int

    @classmethod
    def for_points(cls, points: int) -> Grid:
        side = max(1, math.ceil(math.sqrt(points / len(AZURE_ANCHORS))))
        return cls(side, side, points)

    @property
    def slots(self) -> int:
        return self.height * self.width * len(AZURE_ANCHORS)


def read_veil_model(onnx_bytes: bytes) -> tuple[onnx.ModelProto, ModelInfo]:
    """Parse Veil's ONNX and its `ModelInfo` (raises `ModelLoadError` for anything else)."""
    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception as error:  # protobuf's DecodeError and friends
        raise ModelLoadError(f"not an ONNX model: {error}") from None
    info = ModelInfo.from_metadata({entry.key: entry.value for entry in model.metadata_props})
    if [i.name for i in model.graph.input] != ["image"]:
        raise ModelLoadError("not a Veil graph: expected one input named 'image'")
    return model, info


PRIVACY_KEY = "veil.privacy"


def privacy_record(onnx_bytes: bytes) -> str | None:
    """The JSON Veil training wrote under `veil.privacy` (differential privacy's ε, δ, accountant, σ, q, steps and
    the membership audit's headline), or None for a model trained before the record existed. Every export format
    carries it in its own metadata slot (docs/EXPORTS.md)."""
    model, _ = read_veil_model(onnx_bytes)
    return next((entry.value for entry in model.metadata_props if entry.key == PRIVACY_KEY), None)


def _opset(model: onnx.ModelProto) -> int:
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def _sub_model(graph: onnx.GraphProto, like: onnx.ModelProto, ml: bool = False) -> onnx.ModelProto:
    imports = [helper.make_opsetid("", _opset(like))]
    if ml:
        imports.append(helper.make_opsetid("ai.onnx.ml", 3))
    model = helper.make_model(graph, opset_imports=imports, producer_name="veil")
    model.ir_version = like.ir_version
    return model


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))


def _preprocess(info: ModelInfo, like: onnx.ModelProto, pixels: str) -> onnx.ModelProto:
    """`data` (N,3,H,W) BGR 0..255 (or RGB 0..1) → the network's normalized input `normalized`, in its own
    channel order (RGB for Veil's EfficientNets, BGR for YOLOX)."""
    if info.channel_order not in ("RGB", "BGR") or info.layout != "NCHW":
        raise ModelLoadError(f"unsupported Veil input layout {info.channel_order}/{info.layout}")
    if pixels not in ("bgr255", "rgb01"):
        raise ValueError(f"unknown pixel convention {pixels!r}")
    nodes = [
        _const("mean", np.asarray(info.mean, dtype=np.float32).reshape(1, 3, 1, 1)),
        _const("std", np.asarray(info.std, dtype=np.float32).reshape(1, 3, 1, 1)),
    ]
    if pixels == "rgb01":
        nodes += [
            _const("to_255", np.array(255.0, dtype=np.float32)),
            helper.make_node("Mul", ["data", "to_255"], ["scaled"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["data"], ["scaled"]))
    given = "BGR" if pixels == "bgr255" else "RGB"
    if given != info.channel_order:
        # Split + Concat rather than Gather: every converter downstream (onnx2torch → Core ML/LiteRT) takes it
        nodes += [
            helper.make_node("Split", ["scaled"], ["first", "second", "third"], axis=1),
            helper.make_node("Concat", ["third", "second", "first"], ["ordered"], axis=1),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["scaled"], ["ordered"]))
    nodes += [
        helper.make_node("Sub", ["ordered", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["normalized"]),
    ]
    shape: list[str | int | None] = ["N", 3, info.input_height, info.input_width]
    graph = helper.make_graph(
        nodes,
        "azure_preprocess",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("normalized", TensorProto.FLOAT, shape)],
    )
    return _sub_model(graph, like)


def _classifier_strings(info: ModelInfo, like: onnx.ModelProto, dtype: int) -> onnx.ModelProto:
    """`probabilities` (N,C) → `classLabel` (N,1) string and `loss` seq(map(string, float)) (ZipMap)."""
    labels = np.array(info.labels, dtype=object)
    nodes = [
        helper.make_node("Cast", ["probabilities_in"], ["probabilities"], to=TensorProto.FLOAT),
        helper.make_node(
            "Constant",
            [],
            ["labels"],
            value=helper.make_tensor(
                "labels", TensorProto.STRING, [len(info.labels)], [label.encode() for label in labels]
            ),
        ),
        helper.make_node("ArgMax", ["probabilities"], ["top"], axis=1, keepdims=1),
        helper.make_node("Gather", ["labels", "top"], ["classLabel"], axis=0),
        helper.make_node(
            "ZipMap", ["probabilities"], ["loss"], domain="ai.onnx.ml", classlabels_strings=list(info.labels)
        ),
    ]
    loss_type = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    )
    graph = helper.make_graph(
        nodes,
        "azure_classifier_outputs",
        [helper.make_tensor_value_info("probabilities_in", dtype, ["N", len(info.labels)])],
        [
            helper.make_tensor_value_info("classLabel", TensorProto.STRING, ["N", 1]),
            helper.make_value_info("loss", loss_type),
        ],
    )
    return _sub_model(graph, like, ml=True)


def _grid_constants(info: ModelInfo, grid: Grid) -> list[onnx.NodeProto]:
    slot = np.arange(grid.points)
    cell, anchor = slot // len(AZURE_ANCHORS), slot % len(AZURE_ANCHORS)
    column = (cell % grid.width).astype(np.float32).reshape(-1, 1)
    row = (cell // grid.width).astype(np.float32).reshape(-1, 1)
    return [
        _const("column", column),
        _const("row", row),
        _const("anchor_w", AZURE_ANCHORS[anchor, 0].reshape(-1, 1)),
        _const("anchor_h", AZURE_ANCHORS[anchor, 1].reshape(-1, 1)),
        _const("x_to_grid", np.array(grid.width / info.input_width, dtype=np.float32)),
        _const("y_to_grid", np.array(grid.height / info.input_height, dtype=np.float32)),
        _const("half", np.array(0.5, dtype=np.float32)),
        _const("one", np.array(1.0, dtype=np.float32)),
        _const("tiny", np.array(1e-9, dtype=np.float32)),
        _const("score_low", np.array(1e-7, dtype=np.float32)),
        _const("score_high", np.array(1 - 1e-7, dtype=np.float32)),
        _const("class_ids", np.arange(len(info.labels), dtype=np.int64)),
        _const("on_logit", np.array(0.0, dtype=np.float32)),
        _const("off_logit", np.array(OFF_CLASS_LOGIT, dtype=np.float32)),
        _const("pads", np.array([0, 0, 0, 0, grid.slots - grid.points, 0], dtype=np.int64)),
        _const("empty", np.array(EMPTY_SLOT, dtype=np.float32)),
    ]


def _yolo_grid(info: ModelInfo, like: onnx.ModelProto, points: int, channels_last: bool, dtype: int) -> onnx.ModelProto:
    """Veil's `boxes` (N,A,4) xyxy input pixels + `scores` (N,A,C) → Azure's grid tensor `model_outputs0`."""
    grid = Grid.for_points(points)
    classes = len(info.labels)
    per_cell = len(AZURE_ANCHORS) * (5 + classes)
    n = helper.make_node
    nodes = [
        *_grid_constants(info, grid),
        _const("grid_shape", np.array([-1, grid.height, grid.width, per_cell], dtype=np.int64)),
        # the encoding runs in float32 even behind a float16 network (logit and log need the range)
        n("Cast", ["boxes_in"], ["boxes"], to=TensorProto.FLOAT),
        n("Cast", ["scores_in"], ["scores"], to=TensorProto.FLOAT),
        n("Split", ["boxes"], ["x1", "y1", "x2", "y2"], axis=2),  # equal parts: no sizes input to trace
        # centres in grid cells, minus the slot's cell: Azure adds the cell back
        n("Add", ["x1", "x2"], ["x_sum"]),
        n("Mul", ["x_sum", "half"], ["cx_px"]),
        n("Mul", ["cx_px", "x_to_grid"], ["cx_grid"]),
        n("Sub", ["cx_grid", "column"], ["tx"]),
        n("Add", ["y1", "y2"], ["y_sum"]),
        n("Mul", ["y_sum", "half"], ["cy_px"]),
        n("Mul", ["cy_px", "y_to_grid"], ["cy_grid"]),
        n("Sub", ["cy_grid", "row"], ["ty"]),
        # sizes as log(size in cells / anchor): Azure multiplies exp(t) by the anchor
        n("Sub", ["x2", "x1"], ["w_px"]),
        n("Mul", ["w_px", "x_to_grid"], ["w_grid"]),
        n("Div", ["w_grid", "anchor_w"], ["w_ratio"]),
        n("Clip", ["w_ratio", "tiny"], ["w_safe"]),
        n("Log", ["w_safe"], ["tw"]),
        n("Sub", ["y2", "y1"], ["h_px"]),
        n("Mul", ["h_px", "y_to_grid"], ["h_grid"]),
        n("Div", ["h_grid", "anchor_h"], ["h_ratio"]),
        n("Clip", ["h_ratio", "tiny"], ["h_safe"]),
        n("Log", ["h_safe"], ["th"]),
        # objectness = logit(top-class score); class logits one-hot on the top class
        n("ReduceMax", ["scores"], ["top_score"], axes=[2], keepdims=1),
        n("Clip", ["top_score", "score_low", "score_high"], ["score"]),
        n("Sub", ["one", "score"], ["complement"]),
        n("Div", ["score", "complement"], ["odds"]),
        n("Log", ["odds"], ["objectness"]),
        n("ArgMax", ["scores"], ["top_class"], axis=2, keepdims=1),
        # one-hot by comparing class ids (plain ops: OneHot has no converter in onnx2torch)
        n("Equal", ["top_class", "class_ids"], ["is_top"]),
        n("Where", ["is_top", "on_logit", "off_logit"], ["class_logits"]),
        n("Concat", ["tx", "ty", "tw", "th", "objectness", "class_logits"], ["slots"], axis=2),
        n("Pad", ["slots", "pads", "empty"], ["padded"], mode="constant"),
    ]
    if channels_last:
        nodes.append(n("Reshape", ["padded", "grid_shape"], [DETECTION_OUTPUT]))
        out_shape: list[str | int | None] = ["N", grid.height, grid.width, per_cell]
    else:
        nodes += [
            n("Reshape", ["padded", "grid_shape"], ["grid_nhwc"]),
            n("Transpose", ["grid_nhwc"], [DETECTION_OUTPUT], perm=[0, 3, 1, 2]),
        ]
        out_shape = ["N", per_cell, grid.height, grid.width]
    graph = helper.make_graph(
        nodes,
        "azure_detection_grid",
        [
            helper.make_tensor_value_info("boxes_in", dtype, ["N", points, 4]),
            helper.make_tensor_value_info("scores_in", dtype, ["N", points, classes]),
        ],
        [helper.make_tensor_value_info(DETECTION_OUTPUT, TensorProto.FLOAT, out_shape)],
    )
    return _sub_model(graph, like)


def _detection_points(model: onnx.ModelProto) -> int:
    """A, the number of detection points, from the graph's `boxes` output shape (N, A, 4)."""
    boxes = next(o for o in model.graph.output if o.name == "boxes")
    dim = boxes.type.tensor_type.shape.dim[1]
    if dim.dim_value:
        return int(dim.dim_value)
    inferred = onnx.shape_inference.infer_shapes(model)
    dim = next(o for o in inferred.graph.output if o.name == "boxes").type.tensor_type.shape.dim[1]
    if not dim.dim_value:
        raise ModelLoadError("the detector's box count is not static; cannot lay out Azure's grid")
    return int(dim.dim_value)


def azure_layout(
    onnx_bytes: bytes,
    *,
    pixels: str = "bgr255",
    classifier_head: str = "strings",
    channels_last_grid: bool = False,
    float16: bool = False,
) -> onnx.ModelProto:
    """Veil's ONNX → one graph with Azure's input and outputs (see the module docstring).

    `classifier_head`: "strings" (`classLabel` + `loss`, Azure's ONNX) or "tensor" (the probabilities only).
    `channels_last_grid`: the detection grid as NHWC (TensorFlow Lite's layout) instead of NCHW.
    `float16`: Azure's `OnnxFloat16` flavor — input and network in float16 (onnxruntime's converter); the
    string/grid outputs are computed in float32 behind a cast.
    """
    veil, info = read_veil_model(onnx_bytes)
    merged = compose.merge_models(
        _preprocess(info, veil, pixels), veil, io_map=[("normalized", "image")], prefix1="pre/", prefix2="veil/"
    )
    dtype = TensorProto.FLOAT
    if float16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        merged = convert_float_to_float16(merged, keep_io_types=False)
        dtype = TensorProto.FLOAT16
    if info.task == "detect":
        post = _yolo_grid(info, veil, _detection_points(veil), channels_last_grid, dtype)
        merged = compose.merge_models(
            merged,
            post,
            io_map=[("veil/boxes", "boxes_in"), ("veil/scores", "scores_in")],
            prefix2="post/",
        )
        _rename_output(merged, f"post/{DETECTION_OUTPUT}", DETECTION_OUTPUT)
    elif classifier_head == "strings":
        merged = compose.merge_models(
            merged,
            _classifier_strings(info, veil, dtype),
            io_map=[("veil/probabilities", "probabilities_in")],
            prefix2="post/",
        )
        _rename_output(merged, "post/classLabel", "classLabel")
        _rename_output(merged, "post/loss", "loss")
    elif classifier_head == "tensor":
        _rename_output(merged, "veil/probabilities", "model_outputs0")
    else:
        raise ValueError(f"unknown classifier head {classifier_head!r}")
    _rename_input(merged, "pre/data", "data")
    del merged.metadata_props[:]
    metadata = {**(WINML_METADATA if pixels == "bgr255" else {}), "veil.export_layout": "azure-compact"}
    metadata["veil.source_task"] = info.task
    # what training spent in differential privacy and the membership audit travel with every format built here
    metadata.update({e.key: e.value for e in veil.metadata_props if e.key == PRIVACY_KEY})
    for key, value in metadata.items():
        entry = merged.metadata_props.add()
        entry.key, entry.value = key, value
    merged.doc_string = f"Veil {info.task} model in Azure Custom Vision's compact export layout; labels in labels.txt"
    merged.producer_name = "veil"
    onnx.checker.check_model(merged)
    return merged


def _rename_everywhere(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def _rename_output(model: onnx.ModelProto, old: str, new: str) -> None:
    _rename_everywhere(model, old, new)
    for output in model.graph.output:
        if output.name == old:
            output.name = new


def _rename_input(model: onnx.ModelProto, old: str, new: str) -> None:
    _rename_everywhere(model, old, new)
    for graph_input in model.graph.input:
        if graph_input.name == old:
            graph_input.name = new
