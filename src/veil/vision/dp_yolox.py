"""Differentially private detection with the COCO-pretrained YOLOX-Nano: DP-SGD on its three 1×1 class
convolutions and three 1×1 objectness convolutions only (optionally its 1×1 box convolutions too; imports torch:
training only). Types and accounting: `veil.vision.dp`; the FCOS counterpart: `veil.vision.dp_detect`.

    net, history, spent = train_yolox_dp(items, info, PrivacyBudget(8.0), delta=1e-3, seed=0)

Why this and not DP on the whole detector (issue 16): DP-SGD adds noise σ·C to every trained coordinate, while the
signal is at most B clipped per-image gradients of norm C. The FCOS detector's FPN + head start random and have
~400k weights: at 60 images the noise swamps them (mAP 0 at ε = 8, docs/BENCHMARKS.md). YOLOX-Nano already
detects (boxes, objectness and, via `closest_coco_classes`, the class rows) before any training, so training only
its last 1×1 convolutions — 3 × 65 × (C + 1) weights — leaves the noise a few hundred coordinates to spread over.
Objectness trains too because the class rows alone cannot make YOLOX see a kind COCO's objectness misses
(plates-det: 0.00 mAP with class rows only, 0.49 with objectness, ε = 8; docs/BENCHMARKS.md). The box
convolutions (`DPYoloxSettings.boxes`, GIoU on the fixed foreground) helped without noise but lost to the
objectness-only setting at ε = 8 on both tuning sets, so they stay frozen by default.

What is private and why it is sound:

- The starting COCO row of each class is chosen from the training images (`yolox.closest_coco_classes`), so the
  choice is itself private: each image votes, per class it has boxes of, for its own closest COCO class, and a
  report-noisy-max (Laplace noise of scale K/ε₀ on the counts of the 80 COCO classes and "fresh", K = the
  project's class count; Dwork & Roth 2014, claim 3.9: ε₀/K-DP per class, ε₀ over the K) picks the row.
  ε₀ = `SELECTION_SHARE` · ε; DP-SGD gets the rest, and the recorded ε is the sum (sequential composition).

- Everything but the trained 1×1 convolutions is frozen (COCO weights, public; YOLOX's batch norms are folded into
  its convolutions, so nothing has running statistics). Their inputs — 64 class-branch and 64 regression-branch
  channels per anchor in YOLOX-Nano (the box and objectness convolutions read the same regression features) — and
  the frozen boxes and objectness of `views` fixed views per image (flip, scale, placement, colour: per-image
  operations) are computed once (`anchor_bank`, float16).
- Each view's targets are computed once, from the frozen network: SimOTA (`yolox.simota`, the same assignment as
  non-private training) with the cost's class term from the starting rows × objectness — exactly what YOLOX's loss
  computes at its first step. Fixing them makes each image's loss a function of that image's features and the
  trained weights only (no other image, no moving assignment).
- The loss of one view, divided by the view's own foreground count (≥ 1): IoU-aware class BCE on its foreground
  anchors (target one-hot × IoU, as YOLOX) plus BCE towards 0 on the other anchors weighted by their frozen
  objectness (served score = objectness × class: the class rows are one way to lower a confident box of another
  kind, a car on a plate project); objectness BCE over every anchor, SimOTA's foreground 1 and the rest 0 (as
  YOLOX); with `boxes`, 5 · GIoU of the foreground's boxes against their matched boxes (as YOLOX).
- Class rows start from a COCO row and learn at `learning_rate`; objectness (and box) rows must move far on a new
  kind and learn at `head_learning_rate` (both Adam, one cosine schedule).
- Poisson sampling, clipping to C, noise σ·C, σ from Opacus for the fixed step count, ε read back from the same
  accountant (`veil.vision.dp`), one view per sampled image per step, the empty batch's noise-only step — as
  `veil.vision.dp_detect`. Without a budget the same loop trains non-privately (the ε = ∞ reference).
The trained rows are written back into the network, which exports as any YOLOX-Nano model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.ops import generalized_box_iou_loss

from veil.vision.classify import TrainingCancelled
from veil.vision.detect import DetectionHistory, DetectionItem, augment, letterboxed
from veil.vision.dp import PrivacyBudget, PrivacySpent, spent_by_dp_sgd
from veil.vision.dp_detect import private_steps
from veil.vision.runtime import ModelInfo, normalize
from veil.vision.yolox import IOU_WEIGHT, Grid, YoloxNet, closest_coco_classes, coco_class_totals, rows, simota

# Share of ε spent on choosing the starting rows. On Penn-Fudan-sized sets (tens of images with the class) the
# right row leads the vote by tens of counts; 0.1 · ε leaves noise of scale 10·K at ε = 1.
SELECTION_SHARE = 0.1


@dataclass(frozen=True)
class DPYoloxSettings:
    """DP-SGD settings of the trained 1×1 convolutions (docs/BENCHMARKS.md, "DP detection with YOLOX-Nano's
    objectness"): tuned at ε = 8 on plates-det (a seeded shuffle, 86 trained / 22 held out, the sizes DP FCOS was
    tuned at) and raccoon photos 1-50 by name (train 1-30, score 31-50); reported on Penn-Fudan and WIDER faces.
    Epochs and batch: `DPDetectionSettings`'. mAP plates / raccoons at ε = 8 (class rate 1e-3 unless said):
    class rows only 0.000 / 0.851; + objectness at 3e-2 0.381 / 0.923, 1e-1 **0.492 / 0.891**, 3e-1 0.460 / 0.803,
    1e-1 over 60 epochs 0.429 / 0.899; class rows at the objectness rate too: 1e-2 0.267 / 0.839, 1e-1 0.435 /
    0.859; + objectness and boxes at 3e-2 0.270 / 0.839 — 20-22 test photos each, so neighbours are within noise."""

    epochs: int = 30
    batch_size: int = 32  # expected (Poisson) batch; capped at N
    learning_rate: float = 1e-3  # Adam, class rows (they start from a COCO row: a small step keeps it)
    head_learning_rate: float = 1e-1  # Adam, objectness (and box) convolutions: they must move far on a new kind
    views: int = 4  # fixed views per image (the first is the served letterbox, no augmentation)
    objectness: bool = True  # train the three objectness convolutions (else frozen: class rows only)
    boxes: bool = False  # train the three box-regression convolutions too (GIoU on the fixed foreground)


@dataclass(frozen=True)
class HeadConvs:
    """Names of YOLOX's per-level 1×1 prediction convolutions, stride 8 first. The box and objectness
    convolutions read the same regression-branch features; the class convolutions the class branch's."""

    boxes: list[str]
    objectness: list[str]
    classes: list[str]


def head_convs(net: YoloxNet) -> HeadConvs:
    """Read the prediction convolutions off the cut graph's output node: (box, objectness, class) per level."""
    output = next(node for node in net.body.graph.nodes if node.op == "output")
    names = [str(node.target) for node in output.args[0]]
    convs = HeadConvs(names[0::3], names[1::3], names[2::3])
    assert convs.classes == net.class_convs
    return convs


def _linear(conv: nn.Module) -> nn.Linear:
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.bias is not None
    linear = nn.Linear(conv.in_channels, conv.out_channels)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.flatten(1))
        linear.bias.copy_(conv.bias)
    return linear


class HeadRows(nn.Module):
    """The trainable part: YOLOX's 1×1 class convolutions — and, if asked, its objectness and box convolutions —
    as linear layers over each anchor's 64 class-branch and 64 regression-branch inputs. Frozen parts are still
    evaluated (their outputs enter the loss), with `requires_grad` off."""

    def __init__(self, net: YoloxNet, per_level: Sequence[int], objectness: bool, boxes: bool) -> None:
        super().__init__()
        convs = head_convs(net)
        self.classes = nn.ModuleList(_linear(net.body.get_submodule(n)) for n in convs.classes)
        self.objectness = nn.ModuleList(_linear(net.body.get_submodule(n)) for n in convs.objectness)
        self.boxes = nn.ModuleList(_linear(net.body.get_submodule(n)) for n in convs.boxes)
        for group, trained in ((self.objectness, objectness), (self.boxes, boxes)):
            for parameter in group.parameters():
                parameter.requires_grad = trained
        self.per_level = list(per_level)
        self.width = self.classes[0].in_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, A, 64 + 64) per-anchor class-branch and regression-branch inputs, levels in `rows` order →
        (B, A, 4 + 1 + C): raw box regression, objectness logit, class logits (`rows(activated=False)`'s layout)."""
        levels = []
        for level, part in enumerate(features.split(self.per_level, dim=1)):
            classes, regression = part[..., : self.width], part[..., self.width :]
            levels.append(
                torch.cat(
                    [self.boxes[level](regression), self.objectness[level](regression), self.classes[level](classes)],
                    dim=-1,
                )
            )
        return torch.cat(levels, dim=1)

    def groups(self, head_scale: float) -> list[tuple[list[nn.Parameter], float]]:
        """The trained parameters as (parameters, learning-rate scale): class rows at 1, objectness and box
        convolutions (if trained) at `head_scale`."""
        others = [p for group in (self.objectness, self.boxes) for p in group.parameters() if p.requires_grad]
        return [(list(self.classes.parameters()), 1.0)] + ([(others, head_scale)] if others else [])

    def write_back(self, net: YoloxNet) -> None:
        """Copy the trained rows into the network's convolutions (what gets exported)."""
        convs = head_convs(net)
        pairs = zip(
            [*convs.boxes, *convs.objectness, *convs.classes],
            [*self.boxes, *self.objectness, *self.classes],
            strict=True,
        )
        for name, linear in pairs:
            conv = net.body.get_submodule(name)
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None and isinstance(linear, nn.Linear)
            with torch.no_grad():
                conv.weight.copy_(linear.weight.detach().reshape(conv.weight.shape))
                conv.bias.copy_(linear.bias.detach())


@dataclass
class AnchorBank:
    """Every image's fixed views: the prediction convolutions' inputs (float16) and the fixed SimOTA targets."""

    features: np.ndarray  # (images, views, A, 128): class-branch then regression-branch inputs
    targets: np.ndarray  # (images, views, A, C): IoU-aware one-hot on the foreground
    weights: np.ndarray  # (images, views, A): class-loss weight, 1 on foreground, objectness elsewhere, / fg count
    foreground: np.ndarray  # (images, views, A) bool: SimOTA's foreground (objectness target 1)
    boxes: np.ndarray  # (images, views, A, 4) float32: the matched box (xyxy input pixels) of foreground anchors
    counts: np.ndarray  # (images, views): foreground count, at least 1 (each view's own normaliser)

    def batch(self, images: Sequence[int], views: Sequence[int]) -> tuple[torch.Tensor, ...]:
        index = (list(images), list(views))
        return (
            torch.from_numpy(self.features[index].astype(np.float32)),
            torch.from_numpy(self.targets[index]),
            torch.from_numpy(self.weights[index]),
            torch.from_numpy(self.foreground[index]),
            torch.from_numpy(self.boxes[index]),
            torch.from_numpy(self.counts[index]),
        )


def anchor_bank(
    net: YoloxNet,
    items: Sequence[DetectionItem],
    info: ModelInfo,
    views: int,
    seed: int,
    should_cancel: Callable[[], bool] | None = None,
) -> AnchorBank:
    """Run the frozen network once over `views` views of every image; fix each view's SimOTA targets."""
    grid = Grid(info.input_height, info.input_width)
    centres, strides = grid.centres(), grid.strides
    assert isinstance(strides, torch.Tensor)
    convs = head_convs(net)
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
            captured[name] = args[0]

        return hook

    # the box and objectness convolutions read the same tensor: capturing the objectness one's input suffices
    watched = [*convs.classes, *convs.objectness]
    hooks = [net.body.get_submodule(name).register_forward_hook(keep(name)) for name in watched]
    rng = np.random.default_rng(seed)
    anchors, classes = len(centres), net.num_classes
    width = net.body.get_submodule(convs.classes[0]).in_channels
    features = np.zeros((len(items), views, anchors, 2 * width), dtype=np.float16)
    targets = np.zeros((len(items), views, anchors, classes), dtype=np.float32)
    weights = np.zeros((len(items), views, anchors), dtype=np.float32)
    foreground = np.zeros((len(items), views, anchors), dtype=bool)
    matched_boxes = np.zeros((len(items), views, anchors, 4), dtype=np.float32)
    counts = np.ones((len(items), views), dtype=np.float32)
    net.eval()
    try:
        for index, item in enumerate(items):
            if should_cancel and should_cancel():
                raise TrainingCancelled("training cancelled")
            canvases, placed_boxes, placed_ids = [], [], []
            for view in range(views):
                if view == 0:
                    canvas, placed = letterboxed(item, info)
                    ids = item.classes
                else:
                    canvas, placed, ids = augment(item, info, rng)
                canvases.append(normalize(canvas, info))
                placed_boxes.append(torch.from_numpy(np.asarray(placed, dtype=np.float32).reshape(-1, 4)))
                placed_ids.append(torch.from_numpy(np.asarray(ids, dtype=np.int64)))
            captured.clear()
            with torch.no_grad():
                raw = rows(net(torch.from_numpy(np.stack(canvases))), activated=False)
            per_level = [
                torch.cat([captured[c], captured[o]], dim=1).flatten(2)
                for c, o in zip(convs.classes, convs.objectness, strict=True)
            ]
            features[index] = torch.cat(per_level, dim=2).transpose(1, 2).numpy()
            boxes = grid.boxes(raw[..., :4])
            objectness = raw[..., 4].sigmoid()
            probabilities = objectness[..., None] * raw[..., 5:].sigmoid()
            for view in range(views):
                weights[index, view] = objectness[view].numpy()
                if len(placed_boxes[view]) == 0:
                    continue
                chosen, matched, ious = simota(
                    boxes[view], probabilities[view], centres, strides[:, 0], placed_boxes[view], placed_ids[view]
                )
                if len(chosen) == 0:
                    continue
                one_hot = nn.functional.one_hot(placed_ids[view][matched], classes).float()
                targets[index, view, chosen.numpy()] = (one_hot * ious[:, None]).numpy()
                weights[index, view, chosen.numpy()] = 1.0
                weights[index, view] /= len(chosen)
                foreground[index, view, chosen.numpy()] = True
                matched_boxes[index, view, chosen.numpy()] = placed_boxes[view][matched].numpy()
                counts[index, view] = len(chosen)
    finally:
        for hook in hooks:
            hook.remove()
    return AnchorBank(features, targets, weights, foreground, matched_boxes, counts)


def per_image_losses(
    outputs: torch.Tensor,
    grid: Grid,
    batch: Sequence[torch.Tensor],
    objectness: bool = True,
    boxes: bool = True,
) -> torch.Tensor:
    """(B,) each view's loss from its own targets only, normalised by its own foreground count: the class BCE
    (`AnchorBank.weights`), + objectness BCE over every anchor (SimOTA's foreground 1, the rest 0) if trained,
    + `IOU_WEIGHT` · GIoU of the foreground's decoded boxes against their matched boxes if trained."""
    _, targets, weights, foreground, matched, counts = batch
    bce = nn.functional.binary_cross_entropy_with_logits(outputs[..., 5:], targets, reduction="none").sum(-1)
    loss = (bce * weights).sum(-1)
    if objectness:
        object_bce = nn.functional.binary_cross_entropy_with_logits(
            outputs[..., 4], foreground.float(), reduction="none"
        )
        loss = loss + object_bce.sum(-1) / counts
    if boxes and bool(foreground.any()):
        view, anchor = foreground.nonzero(as_tuple=True)
        decoded = grid.boxes(outputs[..., :4])[view, anchor]
        giou = generalized_box_iou_loss(decoded, matched[view, anchor], reduction="none")
        loss = loss + IOU_WEIGHT * torch.zeros_like(loss).index_add(0, view, giou) / counts
    return loss


def private_start_rows(
    net: YoloxNet, items: Sequence[DetectionItem], info: ModelInfo, num_classes: int, epsilon: float, seed: int
) -> list[int | None]:
    """Per project class, the starting COCO row by report-noisy-max over the images' votes (ε-DP in total; see the
    module docstring); None (the last candidate): start fresh. Without a budget (ε = ∞): `closest_coco_classes`."""
    if not np.isfinite(epsilon):
        return closest_coco_classes(net, items, info, num_classes)
    return noisy_max_rows(row_votes(net, items, info, num_classes), epsilon, seed)


def row_votes(net: YoloxNet, items: Sequence[DetectionItem], info: ModelInfo, num_classes: int) -> np.ndarray:
    """(num_classes, COCO classes + 1) vote counts: each image votes, per class it has boxes of, for the COCO class
    closest to its own boxes (`coco_class_totals`' argmax); the last column, "fresh", gets no votes."""
    votes = np.zeros((num_classes, net.num_classes + 1))
    for item in items:
        totals = coco_class_totals(net, item, info, num_classes)
        for tag in range(num_classes):
            if totals[tag].sum() > 0:
                votes[tag, int(totals[tag].argmax())] += 1
    return votes


def noisy_max_rows(votes: np.ndarray, epsilon: float, seed: int) -> list[int | None]:
    """Report-noisy-max per class over `row_votes`: Laplace noise of scale K/ε (K = classes; one image changes
    at most one count by 1 in each of its classes' rows) on every count, the argmax; None for the last ("fresh")."""
    fresh = votes.shape[1] - 1
    noisy = votes + np.random.default_rng(seed + 3).laplace(scale=len(votes) / epsilon, size=votes.shape)
    return [None if int(row.argmax()) == fresh else int(row.argmax()) for row in noisy]


def _trained_extra(settings: DPYoloxSettings) -> str:
    parts = [name for name, on in (("objectness", settings.objectness), ("box", settings.boxes)) if on]
    return f" and its 1×1 {' and '.join(parts)} convolutions" if parts else ""


def train_yolox_dp(
    items: Sequence[DetectionItem],
    info: ModelInfo,
    budget: PrivacyBudget | None,
    delta: float,
    seed: int,
    steps: int | None = None,
    settings: DPYoloxSettings | None = None,
    on_progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[YoloxNet, DetectionHistory, PrivacySpent | None]:
    """COCO YOLOX-Nano with `info.labels` classes whose class convolutions (everything else frozen) start from
    privately chosen COCO rows and train by DP-SGD on every item; `steps` fixes the step count (tests, benchmarks),
    else `settings.epochs` worth. Returns the network, the history and what was spent (None without a budget: the
    same loop, non-private, rows chosen exactly)."""
    settings = settings or DPYoloxSettings()
    started = time.monotonic()
    torch.manual_seed(seed)
    selection = SELECTION_SHARE * budget.epsilon if budget is not None else float("inf")
    net = YoloxNet()
    net.replace_class_head(len(info.labels), private_start_rows(net, items, info, len(info.labels), selection, seed))
    for parameter in net.parameters():
        parameter.requires_grad = False
    bank = anchor_bank(net, items, info, settings.views, seed, should_cancel)
    grid = Grid(info.input_height, info.input_width)
    cells = grid.cells
    assert isinstance(cells, torch.Tensor)
    sizes = [(info.input_height // s) * (info.input_width // s) for s in (8, 16, 32)]
    assert sum(sizes) == len(cells)
    head = HeadRows(net, sizes, settings.objectness, settings.boxes).train()
    count = len(items)
    # DP-SGD spends what the private choice of starting rows left
    rest = dataclasses.replace(budget, epsilon=budget.epsilon - selection) if budget is not None else None

    def batch_losses(model: nn.Module, images: list[int], views: list[int]) -> torch.Tensor:
        batch = bank.batch(images, views)
        return per_image_losses(model(batch[0]), grid, batch, settings.objectness, settings.boxes)

    run = private_steps(
        head,
        head.groups(settings.head_learning_rate / settings.learning_rate),
        count,
        settings,
        steps,
        rest,
        delta,
        seed,
        batch_losses,
        on_progress,
        should_cancel,
    )
    head.write_back(net)
    net.eval()
    run.history.seconds = time.monotonic() - started
    if run.accountant_history is None or budget is None:
        return net, run.history, None
    return (
        net,
        run.history,
        spent_by_dp_sgd(
            run.accountant_history,
            budget,
            delta,
            run.noise_multiplier,
            count,
            f"on YOLOX-Nano's three 1×1 class convolutions{_trained_extra(settings)}, class rows started from the "
            f"COCO class chosen by report-noisy-max (ε {selection:g} of the total, composed); targets fixed per "
            "image by SimOTA on the frozen network, each image's loss normalised by its own foreground count "
            "(every other COCO weight frozen)",
            extra_epsilon=selection,
        ),
    )
