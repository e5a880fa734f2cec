"""Object detection: EfficientNet-Lite0 + feature pyramid (P3–P7) + FCOS anchor-free head (imports torch).

Built from torchvision's blocks: `FeaturePyramidNetwork` with `LastLevelP6P7`, `FCOSHead` (softplus box
distances, see `SoftplusRegressionHead`) and `FCOS`'s loss
(focal classification, GIoU boxes, centerness). Inputs are letterboxed squares made by the same code as serving
(`veil.vision.runtime.fit_to_input`/`normalize`), so torchvision's own resize/normalize is neutralized (scale 1,
mean 0, std 1). Training augments with horizontal flips, scale jitter with random placement/cropping inside the
letterbox, and colour jitter; the backbone's batch norms stay frozen (small CPU batches) and its stem and first
five blocks (up to stride 8) are frozen and run in onnxruntime during training, several times faster than eager.
`run_training` is the loop both detectors (this one and `veil.vision.yolox`) train with: warm-up, then a
cosine over the budget (`TrainingBudget`: wall time, or an exact step count for load-proof tests and benchmarks).

`DetectorExport` is what the ONNX graph holds: network + box decoding against fixed anchor points, returning
`boxes` (N, A, 4) xyxy in input pixels and `scores` (N, A, C) = sqrt(sigmoid(class) · sigmoid(centerness)), as
torchvision's FCOS scores them. Thresholding and class-wise NMS run in `veil.vision.runtime.decode_detections`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead, FCOSRegressionHead
from torchvision.models.detection.image_list import ImageList
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

from veil.vision.backbone import EfficientNetLite, FrozenRunner, PrefixModule
from veil.vision.classify import TrainingCancelled, frozen_parameter
from veil.vision.runtime import Letterbox, ModelInfo, fit_to_input, normalize

STRIDES = (8, 16, 32, 64, 128)


class PyramidBackbone(nn.Module):
    """Backbone → FPN: an OrderedDict of P3..P7, as torchvision's detectors expect."""

    def __init__(self, trunk: EfficientNetLite, channels: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.fpn = FeaturePyramidNetwork(
            list(trunk.feature_channels), channels, extra_blocks=LastLevelP6P7(channels, channels)
        )
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.from_prefix(self.trunk.prefix(x))

    def from_prefix(self, prefix: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        c3, c4, c5 = self.trunk.suffix(prefix)
        return self.fpn(OrderedDict([("c3", c3), ("c4", c4), ("c5", c5)]))


class SoftplusRegressionHead(FCOSRegressionHead):
    """FCOS box head with softplus instead of ReLU on the distances: a ReLU output channel that goes negative
    early never recovers (no gradient) — observed here as every box's left edge collapsing onto its anchor."""

    def forward(self, x: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        regressions, centerness = [], []
        for features in x:
            hidden = self.conv(features)
            n, _, h, w = hidden.shape
            distances = nn.functional.softplus(self.bbox_reg(hidden))
            regressions.append(distances.view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
            score = self.bbox_ctrness(hidden)
            centerness.append(score.view(n, -1, 1, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 1))
        return torch.cat(regressions, dim=1), torch.cat(centerness, dim=1)


def build_detector(
    trunk: EfficientNetLite, classes: int, input_size: int, channels: int = 64, head_convs: int = 2
) -> FCOS:
    """torchvision FCOS around our pyramid; its transform is made a no-op because inputs arrive preprocessed."""
    anchors = AnchorGenerator(tuple((s,) for s in STRIDES), ((1.0,),) * len(STRIDES))
    head = FCOSHead(channels, 1, classes, num_convs=head_convs)
    regression = SoftplusRegressionHead(channels, 1, num_convs=head_convs)
    regression.load_state_dict(head.regression_head.state_dict())
    head.regression_head = regression
    return FCOS(
        PyramidBackbone(trunk, channels),
        num_classes=classes,
        min_size=input_size,
        max_size=input_size,
        image_mean=[0.0, 0.0, 0.0],
        image_std=[1.0, 1.0, 1.0],
        anchor_generator=anchors,
        head=head,
        score_thresh=0.05,
        nms_thresh=0.5,
    )


def anchor_boxes(detector: FCOS, input_size: int) -> torch.Tensor:
    """The (A, 4) anchor boxes of a square input, in the order the head emits its outputs."""
    with torch.no_grad():
        dummy = torch.zeros(1, 3, input_size, input_size)
        features = list(detector.backbone(dummy).values())
        return detector.anchor_generator(ImageList(dummy, [(input_size, input_size)]), features)[0]


class DetectorExport(nn.Module):
    """Network + FCOS box decoding for a fixed input size: (N,3,S,S) → boxes (N,A,4), scores (N,A,C)."""

    def __init__(self, detector: FCOS, input_size: int) -> None:
        super().__init__()
        self.backbone = detector.backbone
        self.head = detector.head
        anchors = anchor_boxes(detector, input_size)
        self.register_buffer("centers", (anchors[:, :2] + anchors[:, 2:]) / 2)
        self.register_buffer("sizes", torch.cat([anchors[:, 2:] - anchors[:, :2]] * 2, dim=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.head(list(self.backbone(x).values()))
        scores = torch.sqrt(torch.sigmoid(outputs["cls_logits"]) * torch.sigmoid(outputs["bbox_ctrness"]))
        offsets = outputs["bbox_regression"] * self.sizes
        boxes = torch.cat([self.centers - offsets[..., :2], self.centers + offsets[..., 2:]], dim=-1)
        return boxes, scores


@dataclass
class DetectionItem:
    """A training image kept in memory (downsized to about the input size) with pixel xyxy boxes and class ids."""

    rgb: np.ndarray
    boxes: np.ndarray  # (K, 4) float32 xyxy in `rgb` pixels
    classes: np.ndarray  # (K,) int64


def shrink_for_training(rgb: np.ndarray, boxes: np.ndarray, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Downsize so the longer side is at most 1.5× the input (room for scale jitter), boxes alongside."""
    longest = max(rgb.shape[:2])
    limit = int(input_size * 1.5)
    if longest <= limit:
        return rgb, boxes
    scale = limit / longest
    small = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return small, boxes * scale


def _colour_jitter(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pixels = rgb.astype(np.float32)
    gray = pixels.mean(axis=2, keepdims=True)
    saturation = rng.uniform(0.7, 1.3)
    pixels = gray + (pixels - gray) * saturation
    pixels = (pixels - 128.0) * rng.uniform(0.75, 1.25) + 128.0 + rng.uniform(-25, 25)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def augment(
    item: DetectionItem, info: ModelInfo, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flip, scale jitter (0.5–1.3 of the letterbox scale) with random placement, colour jitter → input + boxes."""
    rgb, boxes, classes = item.rgb, item.boxes.copy(), item.classes
    height, width = rgb.shape[:2]
    size = info.input_width
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    scale = min(size / width, size / height) * rng.uniform(0.5, 1.3)
    new_w, new_h = max(8, round(width * scale)), max(8, round(height * scale))
    resized = cv2.resize(
        np.ascontiguousarray(rgb), (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    offset_x = int(rng.integers(min(0, size - new_w), max(0, size - new_w) + 1))
    offset_y = int(rng.integers(min(0, size - new_h), max(0, size - new_h) + 1))
    canvas = np.full((size, size, 3), info.pad_value, dtype=np.uint8)
    x0, y0 = max(0, offset_x), max(0, offset_y)
    x1, y1 = min(size, offset_x + new_w), min(size, offset_y + new_h)
    canvas[y0:y1, x0:x1] = resized[y0 - offset_y : y1 - offset_y, x0 - offset_x : x1 - offset_x]
    placed = Letterbox(new_w / width, new_h / height, float(offset_x), float(offset_y)).to_input(boxes)
    clipped = placed.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, size)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, size)
    area = (placed[:, 2] - placed[:, 0]) * (placed[:, 3] - placed[:, 1])
    kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (
        (kept_area >= 0.4 * np.maximum(area, 1e-6))
        & (clipped[:, 2] - clipped[:, 0] >= 2)
        & (clipped[:, 3] - clipped[:, 1] >= 2)
    )
    return _colour_jitter(canvas, rng), clipped[keep], classes[keep]


def letterboxed(item: DetectionItem, info: ModelInfo) -> tuple[np.ndarray, np.ndarray]:
    """The serving view of a training image (no augmentation) and its boxes in input pixels."""
    fitted, box = fit_to_input(item.rgb, info)
    return fitted, box.to_input(item.boxes)


@dataclass
class DetectionHistory:
    iterations: int
    epochs: list[int]
    train_loss: list[float]
    seconds: float


def _set_trainable(detector: FCOS) -> None:
    """Freeze the trunk's prefix (it runs in onnxruntime during training) and every batch norm of the trunk."""
    for name, parameter in detector.backbone.trunk.named_parameters():
        parameter.requires_grad = not frozen_parameter(name)


def _freeze_batch_norm(detector: FCOS) -> None:
    for module in detector.backbone.trunk.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


def _losses(detector: FCOS, prefix: torch.Tensor, targets: list[dict[str, torch.Tensor]], size: int) -> torch.Tensor:
    """FCOS's own loss (focal + GIoU + centerness) computed from the frozen prefix's output."""
    features = list(detector.backbone.from_prefix(prefix).values())
    outputs = detector.head(features)
    shell = ImageList(torch.empty(len(targets), 3, size, size), [(size, size)] * len(targets))
    anchors = detector.anchor_generator(shell, features)
    per_level = [feature.size(2) * feature.size(3) for feature in features]
    parts = detector.compute_loss(targets, outputs, anchors, per_level)
    return torch.stack(list(parts.values())).sum()


def train_detector(
    detector: FCOS,
    items: Sequence[DetectionItem],
    info: ModelInfo,
    budget: TrainingBudget,
    seed: int,
    on_progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    batch_size: int = 4,
    base_lr: float = 1e-3,
) -> DetectionHistory:
    """Train the FCOS detector within `budget` (`run_training`); the trunk learns at 0.3 × `base_lr`."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    _set_trainable(detector)
    prefix = FrozenRunner(PrefixModule(detector.backbone.trunk), info.input_height, info.input_width)
    trunk_params = [p for p in detector.backbone.trunk.parameters() if p.requires_grad]
    other_params = [
        p for n, p in detector.named_parameters() if p.requires_grad and not n.startswith("backbone.trunk.")
    ]
    optimizer = torch.optim.AdamW(
        [{"params": trunk_params, "lr": base_lr * 0.3}, {"params": other_params, "lr": base_lr}], weight_decay=1e-4
    )

    def batch_loss(images: np.ndarray, boxes: list[np.ndarray], classes: list[np.ndarray]) -> torch.Tensor:
        targets = [
            {"boxes": torch.from_numpy(b).float(), "labels": torch.from_numpy(c).long()}
            for b, c in zip(boxes, classes, strict=True)
        ]
        return _losses(detector, torch.from_numpy(prefix(images)), targets, info.input_width)

    def on_epoch() -> None:
        detector.train()
        _freeze_batch_norm(detector)

    history = run_training(
        detector, optimizer, batch_loss, items, info, budget, rng, on_progress, should_cancel, batch_size, on_epoch
    )
    detector.eval()
    return history


# ---------------------------------------------------------------- the training loop both detectors share


@dataclass(frozen=True)
class TrainingBudget:
    """How long a detector trains: `seconds` of wall time (what users and the service set), or, when `steps` is
    given, exactly that many optimizer steps whatever the clock says. The step cap is for tests and benchmarks,
    whose results must not depend on how loaded the machine is (`TrainRequest.max_steps`)."""

    seconds: float
    steps: int | None = None

    def share(self, fraction: float) -> TrainingBudget:
        """A part of this budget (cross-validation's fold models, the delivered model)."""
        steps = None if self.steps is None else max(1, round(self.steps * fraction))
        return TrainingBudget(self.seconds * fraction, steps)

    def progress(self, elapsed_seconds: float, steps: int) -> float:
        """How much is spent: 0 at the start, ≥ 1 when training must stop."""
        if self.steps is not None:
            return steps / self.steps
        return elapsed_seconds / self.seconds


BatchLoss = Callable[[np.ndarray, list[np.ndarray], list[np.ndarray]], torch.Tensor]


def run_training(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_loss: BatchLoss,
    items: Sequence[DetectionItem],
    info: ModelInfo,
    budget: TrainingBudget,
    rng: np.random.Generator,
    on_progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    batch_size: int = 4,
    on_epoch: Callable[[], None] | None = None,
    warmup: int = 20,
) -> DetectionHistory:
    """Epochs of shuffled, augmented batches until `budget` is spent. The learning rate of every parameter group
    warms up over `warmup` steps, then follows a cosine over the budget (elapsed time, or steps when capped).
    `batch_loss(images, boxes, classes)` gets a normalized (N, 3, H, W) batch and each image's input-pixel xyxy
    boxes and class ids; `on_epoch` runs before each epoch (train mode, frozen batch norms)."""
    initial_lrs = [group["lr"] for group in optimizer.param_groups]
    started = time.monotonic()
    history = DetectionHistory(0, [], [], 0.0)

    def spent() -> float:
        return budget.progress(time.monotonic() - started, history.iterations)

    epoch = 0
    while spent() < 1.0:
        epoch += 1
        if on_epoch:
            on_epoch()
        losses = []
        order = rng.permutation(len(items))
        for start in range(0, len(order), batch_size):
            if should_cancel and should_cancel():
                raise TrainingCancelled("training cancelled")
            progress = spent()
            if progress >= 1.0:
                break
            factor = min(1.0, (history.iterations + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress))
            for group, initial in zip(optimizer.param_groups, initial_lrs, strict=True):
                group["lr"] = initial * max(factor, 0.01)
            images, boxes, classes = [], [], []
            for index in order[start : start + batch_size]:
                canvas, placed, ids = augment(items[index], info, rng)
                images.append(normalize(canvas, info))
                boxes.append(placed)
                classes.append(ids)
            loss = batch_loss(np.stack(images), boxes, classes)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            history.iterations += 1
            if on_progress:
                on_progress(min(1.0, spent()))
        if losses:
            history.epochs.append(epoch)
            history.train_loss.append(float(np.mean(losses)))
    history.seconds = time.monotonic() - started
    return history
