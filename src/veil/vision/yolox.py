"""YOLOX-Nano in PyTorch, weights read from the ONNX file Veil ships, fine-tuned for a project's tags (imports torch).

The COCO-pretrained YOLOX-Nano (Megvii, Apache-2.0; `veil/edge/models/yolox_nano.onnx`, see
docs/ARCHITECTURE.md) is converted to a torch module by `onnx2torch` (batch norms are already folded into the
convolutions there). The graph is cut just before YOLOX's output layout so the network returns, per stride
(8, 16, 32), the raw box regression `(dx, dy, log w, log h)`, the objectness logit and the class logits;
`rows()` rebuilds the exported file's `[N, A, 5 + C]` output from them (sigmoids applied), which is how the
equality with the ONNX file is proved. Fine-tuning swaps the three 1×1 class convolutions for fresh ones with the
project's class count and keeps every other pretrained weight (backbone, PAFPN neck, box and objectness branches).
Each new class starts from the COCO class row that the pretrained network gives the project's boxes of that tag
(`closest_coco_classes`: raccoons start as "cat", people as "person"), not from YOLOX's 0.01 prior, and the
pretrained weights learn at 0.03 × the class head's rate (`PRETRAINED_LR_FACTOR`). Why (issue 15; chosen on
raccoon photos 1-30 and plates 1-68 by name, never on the bench's report photos; docs/BENCHMARKS.md): the
pretrained network already boxes raccoons (best IoU 0.71-0.97, median 0.88; objectness median 0.67; called
cat/dog/bear), and fine-tuning every weight at 0.3 × with AdamW on 20-30 photos made those boxes worse (best IoU
0.95 → 0.72 on some, objectness 0.98 → 0.02 on one) — 200 steps of the old recipe scored below the untrained
cat-row start. Freezing backbone and neck kept raccoons but lost plates (a class far from COCO's), so everything
trains, slowly: at 0.1 × the raccoon boxes still drifted over 400 steps (equal compute with Lite0 FCOS's 200);
0.03 × fixed that on the tuning splits where an EMA of the weights (YOLOX's own recipe) and L2-SP (decay toward the
pretrained weights instead of toward 0) did not (docs/BENCHMARKS.md).

Loss (YOLOX's): SimOTA assignment (candidates = anchors inside a box or within 2.5 strides of its centre; cost =
class BCE + 3·(−log IoU); each box takes its dynamic-k lowest-cost candidates, k = ⌊Σ top-10 IoUs⌋), then
IoU-aware class targets (one-hot × IoU), objectness BCE on every anchor and 5·GIoU loss on the matched boxes.
Inputs are what `veil.vision.runtime` feeds a `channel_order="BGR"`, mean 0, std 1 model: BGR 0–255 in the
letterbox Veil uses everywhere (centred, padded with 114; YOLOX was trained top-left, the convolutions do not mind).

`YoloxExport` is what the ONNX graph holds: network + YOLOX's box decoding against the grid of
`veil.vision.yolox_runtime.grids` (the serving decoder's layout), returning Veil's detector outputs `boxes`
(N, A, 4) xyxy in input pixels and `scores` (N, A, C) = objectness × class probability.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx2torch import convert
from torch import fx, nn
from torchvision.ops import box_iou, generalized_box_iou_loss

from veil.vision.detect import DetectionHistory, DetectionItem, TrainingBudget, letterboxed, run_training
from veil.vision.runtime import ModelInfo, normalize
from veil.vision.yolox_runtime import STRIDES, InputSize, grids

YOLOX_NANO_ONNX = Path(__file__).resolve().parents[1] / "edge" / "models" / "yolox_nano.onnx"
PRIOR_PROBABILITY = 0.01  # YOLOX's initial class probability for a fresh head
CENTRE_RADIUS = 2.5  # strides around a box's centre that count as candidates (YOLOX)
IOU_WEIGHT = 5.0  # YOLOX's box-loss weight
# AdamW moves every weight by about its learning rate a step, however small its gradient: at 0.3 × the head's
# rate the COCO boxes drifted in 200 steps, at 0.1 × in 400 (see the module docstring); 0.03 × was chosen on the
# tuning splits (raccoon photos 1-30, plates 1-68; docs/BENCHMARKS.md). It costs nothing per step, unlike an EMA.
PRETRAINED_LR_FACTOR = 0.03

Level = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (box regression, objectness logit, class logits)


def _head_outputs(graph: fx.Graph) -> list[tuple[fx.Node, fx.Node, fx.Node]]:
    """Per stride, the nodes of YOLOX's `cat([reg, sigmoid(obj), sigmoid(cls)])`: (reg conv, obj conv, cls conv)."""
    levels = []
    for node in graph.nodes:
        if node.op != "call_module" or not str(node.target).startswith("Concat") or len(node.args) != 3:
            continue
        reg, obj, cls = node.args
        if all(isinstance(a, fx.Node) and str(a.target).startswith("Sigmoid") for a in (obj, cls)):
            levels.append((reg, obj.args[0], cls.args[0]))
    if len(levels) != len(STRIDES):
        raise ValueError(f"expected YOLOX's {len(STRIDES)} head outputs in the graph, found {len(levels)}")
    return levels


class YoloxNet(nn.Module):
    """YOLOX converted from ONNX, cut before the output layout: `forward(bgr) -> [Level] * 3` (strides 8, 16, 32)."""

    def __init__(self, onnx_path: Path = YOLOX_NANO_ONNX, num_classes: int | None = None) -> None:
        super().__init__()
        body = convert(onnx.load(str(onnx_path)))
        levels = _head_outputs(body.graph)
        output = next(node for node in body.graph.nodes if node.op == "output")
        output.args = (tuple(node for level in levels for node in level),)
        body.graph.eliminate_dead_code()
        body.delete_all_unused_submodules()
        self.class_convs = [str(cls.target) for _, _, cls in levels]
        self.body = body
        self.body.recompile()
        self.num_classes = body.get_submodule(self.class_convs[0]).out_channels
        if num_classes is not None and num_classes != self.num_classes:
            self.replace_class_head(num_classes)

    def replace_class_head(self, num_classes: int, start_from: Sequence[int | None] | None = None) -> None:
        """New 1×1 class convolutions; the rest stays pretrained. Class i copies the current head's row
        `start_from[i]` (a COCO class), else YOLOX's init for a fresh head (small weights, bias at the prior)."""
        for name in self.class_convs:
            old = self.body.get_submodule(name)
            assert isinstance(old, nn.Conv2d) and old.bias is not None
            fresh = nn.Conv2d(old.in_channels, num_classes, 1)
            nn.init.normal_(fresh.weight, std=0.01)
            assert fresh.bias is not None
            nn.init.constant_(fresh.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))
            with torch.no_grad():
                for new, row in enumerate(start_from or []):
                    if row is not None:
                        fresh.weight[new] = old.weight[row]
                        fresh.bias[new] = old.bias[row]
            setattr(self.body, name, fresh)
        self.num_classes = num_classes

    def class_parameters(self) -> list[nn.Parameter]:
        return [p for name in self.class_convs for p in self.body.get_submodule(name).parameters()]

    def forward(self, x: torch.Tensor) -> list[Level]:
        flat = self.body(x)
        return [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]


def rows(levels: Sequence[Level], activated: bool = True) -> torch.Tensor:
    """[N, A, 5 + C] in YOLOX's row order (stride 8 first, row-major): the exported file's output layout.
    `activated`: sigmoid on objectness and classes, as in the file; else raw logits (the loss wants those)."""
    parts = []
    for reg, obj, cls in levels:
        if activated:
            obj, cls = obj.sigmoid(), cls.sigmoid()
        parts.append(torch.cat([reg, obj, cls], dim=1).flatten(2))
    return torch.cat(parts, dim=2).transpose(1, 2)


class Grid(nn.Module):
    """Per anchor: its cell (x, y) in grid units and its stride, in `yolox_runtime.grids`'s order."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        cells, strides = grids(InputSize(height, width))
        self.register_buffer("cells", torch.from_numpy(cells))
        self.register_buffer("strides", torch.from_numpy(strides)[:, None])

    def boxes(self, regression: torch.Tensor) -> torch.Tensor:
        """(N, A, 4) raw regression → xyxy in input pixels (YOLOX: centre = (d + cell)·s, size = exp(log wh)·s)."""
        cells, strides = self.cells, self.strides
        assert isinstance(cells, torch.Tensor) and isinstance(strides, torch.Tensor)
        centre = (regression[..., :2] + cells) * strides
        half = torch.exp(regression[..., 2:4].clamp(-20.0, 20.0)) * strides / 2
        return torch.cat([centre - half, centre + half], dim=-1)

    def centres(self) -> torch.Tensor:
        cells, strides = self.cells, self.strides
        assert isinstance(cells, torch.Tensor) and isinstance(strides, torch.Tensor)
        return (cells + 0.5) * strides


class YoloxExport(nn.Module):
    """Network + box decoding for a fixed input: (N, 3, H, W) BGR 0–255 → boxes (N, A, 4), scores (N, A, C)."""

    def __init__(self, net: YoloxNet, height: int, width: int) -> None:
        super().__init__()
        self.net = net
        self.grid = Grid(height, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = rows(self.net(x))
        return self.grid.boxes(out[..., :4]), out[..., 4:5] * out[..., 5:]


def closest_coco_classes(
    net: YoloxNet, items: Sequence[DetectionItem], info: ModelInfo, num_classes: int
) -> list[int | None]:
    """Per project class, the COCO class the pretrained network (80 classes) gives its training boxes: the mean
    class probabilities of the anchors whose predicted box overlaps a box of that class (IoU ≥ 0.5), weighted by
    objectness, and their argmax; None for a class no anchor boxes (it starts fresh)."""
    totals = sum((coco_class_totals(net, item, info, num_classes) for item in items), torch.zeros(num_classes, 1))
    return [int(row.argmax()) if row.sum() > 0 else None for row in totals]


def coco_class_totals(net: YoloxNet, item: DetectionItem, info: ModelInfo, num_classes: int) -> torch.Tensor:
    """(num_classes, COCO classes): one image's share of `closest_coco_classes`' sums (each box of class c adds the
    objectness-weighted mean class probabilities of the anchors boxing it; zero rows for classes it lacks)."""
    grid = Grid(info.input_height, info.input_width)
    totals = torch.zeros(num_classes, net.num_classes)
    was_training = net.training
    net.eval()
    fitted, truth = letterboxed(item, info)
    with torch.no_grad():
        out = rows(net(torch.from_numpy(normalize(fitted, info))[None]))[0]
    ious = box_iou(torch.from_numpy(truth).float(), grid.boxes(out[:, :4]))
    for box, tag in enumerate(item.classes):
        overlapping = ious[box] >= 0.5
        if overlapping.any():
            weight = out[overlapping, 4:5]
            totals[int(tag)] += (weight * out[overlapping, 5:]).sum(0) / weight.sum().clamp(min=1e-6)
    net.train(was_training)
    return totals


def pretrained_yolox_nano(
    num_classes: int, items: Sequence[DetectionItem] | None = None, info: ModelInfo | None = None
) -> YoloxNet:
    """COCO-pretrained YOLOX-Nano with a `num_classes` head; given the training items, each class starts from its
    closest COCO class (`closest_coco_classes`)."""
    net = YoloxNet(YOLOX_NANO_ONNX)
    start_from = None
    if items is not None and info is not None:
        start_from = closest_coco_classes(net, items, info, num_classes)
    net.replace_class_head(num_classes, start_from)
    return net


# ---------------------------------------------------------------- loss


def simota(
    boxes: torch.Tensor,
    probabilities: torch.Tensor,
    centres: torch.Tensor,
    strides: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """YOLOX's SimOTA for one image (all inputs detached): (foreground anchor indices, their box index, their IoU).
    `boxes` (A, 4) predicted xyxy, `probabilities` (A, C) objectness × class, `strides` (A,)."""
    in_box = (
        (centres[None, :, 0] > gt_boxes[:, None, 0])
        & (centres[None, :, 0] < gt_boxes[:, None, 2])
        & (centres[None, :, 1] > gt_boxes[:, None, 1])
        & (centres[None, :, 1] < gt_boxes[:, None, 3])
    )
    gt_centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    radius = CENTRE_RADIUS * strides[None, :]
    in_centre = ((centres[None] - gt_centres[:, None]).abs() < radius[..., None]).all(dim=-1)
    candidates = (in_box | in_centre).any(dim=0).nonzero().squeeze(1)
    if len(candidates) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0)
    ious = box_iou(gt_boxes, boxes[candidates])  # (G, K)
    one_hot = nn.functional.one_hot(gt_classes, probabilities.shape[1]).float()  # (G, C)
    p = probabilities[candidates].sqrt().clamp(1e-6, 1 - 1e-6)[None]  # (1, K, C), YOLOX's sqrt(obj · cls)
    class_cost = -(one_hot[:, None] * p.log() + (1 - one_hot[:, None]) * (1 - p).log()).sum(-1)  # (G, K)
    outside = ~(in_box & in_centre)[:, candidates]
    cost = class_cost + 3.0 * -torch.log(ious + 1e-8) + 1e5 * outside
    top = ious.topk(min(10, ious.shape[1]), dim=1).values
    dynamic_k = top.sum(1).int().clamp(min=1)
    matching = torch.zeros_like(cost, dtype=torch.bool)
    for g in range(len(gt_boxes)):
        matching[g, cost[g].topk(int(dynamic_k[g]), largest=False).indices] = True
    contested = matching.sum(0) > 1
    if contested.any():  # an anchor claimed by several boxes goes to the cheapest one
        cheapest = cost[:, contested].argmin(0)
        matching[:, contested] = False
        matching[cheapest, contested.nonzero().squeeze(1)] = True
    foreground = matching.any(0)
    matched = matching[:, foreground].float().argmax(0)
    return candidates[foreground], matched, ious[matched, foreground.nonzero().squeeze(1)]


def yolox_loss(
    levels: Sequence[Level], grid: Grid, targets: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """YOLOX's loss over a batch: 5·GIoU + objectness BCE + IoU-aware class BCE, normalised by foreground count."""
    raw = rows(levels, activated=False)
    boxes = grid.boxes(raw[..., :4])
    objectness, classes = raw[..., 4], raw[..., 5:]
    centres = grid.centres()
    strides = grid.strides
    assert isinstance(strides, torch.Tensor)
    box_loss = raw.new_zeros(())
    class_loss = raw.new_zeros(())
    object_targets = torch.zeros_like(objectness)
    foreground_total = 0
    for i, (gt_boxes, gt_classes) in enumerate(targets):
        if len(gt_boxes) == 0:
            continue
        with torch.no_grad():
            probabilities = objectness[i].sigmoid()[:, None] * classes[i].sigmoid()
            anchors, matched, ious = simota(
                boxes[i].detach(), probabilities, centres, strides[:, 0], gt_boxes, gt_classes
            )
        if len(anchors) == 0:
            continue
        foreground_total += len(anchors)
        object_targets[i, anchors] = 1.0
        class_targets = nn.functional.one_hot(gt_classes[matched], classes.shape[-1]).float() * ious[:, None]
        class_loss = class_loss + nn.functional.binary_cross_entropy_with_logits(
            classes[i, anchors], class_targets, reduction="sum"
        )
        box_loss = box_loss + generalized_box_iou_loss(boxes[i, anchors], gt_boxes[matched], reduction="sum")
    object_loss = nn.functional.binary_cross_entropy_with_logits(objectness, object_targets, reduction="sum")
    return (IOU_WEIGHT * box_loss + object_loss + class_loss) / max(1, foreground_total)


# ---------------------------------------------------------------- training


def train_yolox(
    net: YoloxNet,
    items: Sequence[DetectionItem],
    info: ModelInfo,
    budget: TrainingBudget,
    seed: int,
    on_progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    batch_size: int = 4,
    base_lr: float = 1e-3,
) -> DetectionHistory:
    """Fine-tune within `budget` with the FCOS detector's loop, augmentation and schedule (`detect.run_training`).
    The class convolutions learn at `base_lr`, every pretrained weight at `PRETRAINED_LR_FACTOR` × of it."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    fresh = {id(p) for p in net.class_parameters()}
    pretrained = [p for p in net.parameters() if id(p) not in fresh]
    optimizer = torch.optim.AdamW(
        [
            {"params": net.class_parameters(), "lr": base_lr},
            {"params": pretrained, "lr": base_lr * PRETRAINED_LR_FACTOR},
        ],
        weight_decay=5e-4,
    )
    grid = Grid(info.input_height, info.input_width)

    def batch_loss(images: np.ndarray, boxes: list[np.ndarray], classes: list[np.ndarray]) -> torch.Tensor:
        targets = [
            (torch.from_numpy(b).float(), torch.from_numpy(c).long()) for b, c in zip(boxes, classes, strict=True)
        ]
        return yolox_loss(net(torch.from_numpy(images)), grid, targets)

    net.train()
    history = run_training(net, optimizer, batch_loss, items, info, budget, rng, on_progress, should_cancel, batch_size)
    net.eval()
    return history
