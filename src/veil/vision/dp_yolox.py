"""Differentially private detection with the COCO-pretrained YOLOX-Nano: DP-SGD on its three 1×1 class
convolutions only (imports torch: training only). Types and accounting: `veil.vision.dp`; the FCOS counterpart:
`veil.vision.dp_detect`.

    net, history, spent = train_yolox_dp(items, info, PrivacyBudget(8.0), delta=1e-3, seed=0)

Why this and not DP on the whole detector (issue 16): DP-SGD adds noise σ·C to every trained coordinate, while the
signal is at most B clipped per-image gradients of norm C. The FCOS detector's FPN + head start random and have
~400k weights: at 60 images the noise swamps them (mAP 0 at ε = 8, docs/BENCHMARKS.md). YOLOX-Nano already
detects (boxes, objectness and, via `closest_coco_classes`, the class rows) before any training, so training only
the class convolutions — 3 × (64 + 1) × C weights — leaves the noise a few hundred coordinates to spread over.

What is private and why it is sound:

- The starting COCO row of each class is chosen from the training images (`yolox.closest_coco_classes`), so the
  choice is itself private: each image votes, per class it has boxes of, for its own closest COCO class, and a
  report-noisy-max (Laplace noise of scale K/ε₀ on the counts of the 80 COCO classes and "fresh", K = the
  project's class count; Dwork & Roth 2014, claim 3.9: ε₀/K-DP per class, ε₀ over the K) picks the row.
  ε₀ = `SELECTION_SHARE` · ε; DP-SGD gets the rest, and the recorded ε is the sum (sequential composition).

- Everything but the class convolutions is frozen (COCO weights, public; YOLOX's batch norms are folded into its
  convolutions, so nothing has running statistics). The class convolutions' inputs, the boxes and the objectness
  of `views` fixed views per image (flip, scale, placement, colour: per-image operations) are computed once.
- Each view's targets are computed once, from the frozen network: SimOTA (`yolox.simota`, the same assignment as
  non-private training) with the cost's class term from the starting rows × objectness — exactly what YOLOX's loss
  computes at its first step. Fixing them makes each image's loss a function of that image's features and the
  class weights only (no other image, no moving assignment): a per-image-separable logistic regression.
- The loss of one view: IoU-aware BCE on its foreground anchors (target one-hot × IoU, as YOLOX) plus BCE towards 0
  on the other anchors weighted by their frozen objectness (served score = objectness × class, so a background
  anchor matters as far as its objectness lets it show), divided by the view's own foreground count (≥ 1).
  YOLOX's own class loss has no negatives because its objectness trains; here objectness is frozen, and the class
  rows are the only way to lower a confident box of another kind (a car on a plate project).
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

from veil.vision.classify import TrainingCancelled
from veil.vision.detect import DetectionHistory, DetectionItem, augment, letterboxed
from veil.vision.dp import PrivacyBudget, PrivacySpent, spent_by_dp_sgd
from veil.vision.dp_detect import private_steps
from veil.vision.runtime import ModelInfo, normalize
from veil.vision.yolox import Grid, YoloxNet, closest_coco_classes, coco_class_totals, rows, simota

# Share of ε spent on choosing the starting rows. On Penn-Fudan-sized sets (tens of images with the class) the
# right row leads the vote by tens of counts; 0.1 · ε leaves noise of scale 10·K at ε = 1.
SELECTION_SHARE = 0.1


@dataclass(frozen=True)
class DPYoloxSettings:
    """DP-SGD settings of the class rows, reported on Penn-Fudan (docs/BENCHMARKS.md). plates-det, the set DP FCOS
    was tuned on, scores 0 at every setting (YOLOX's frozen objectness misses plates), so the learning rate was
    chosen on raccoon photos 1-50 by name (train 1-30, score 31-50, ε = 8): every rate within the noise of 20
    photos; the smallest kept. Epochs and batch: `DPDetectionSettings`'."""

    epochs: int = 30
    batch_size: int = 32  # expected (Poisson) batch; capped at N
    # raccoons, mAP at ε = 8 / noise-free: 1e-3 0.851 / 0.839, 3e-3 0.839 / 0.830, 1e-2 0.810 / 0.834,
    # 3e-2 0.862 / 0.828; the untrained start 0.851
    learning_rate: float = 1e-3  # Adam
    views: int = 4  # fixed views per image (the first is the served letterbox, no augmentation)


class ClassRows(nn.Module):
    """The trainable part: YOLOX's three 1×1 class convolutions as linear layers over each anchor's 64 inputs."""

    def __init__(self, net: YoloxNet, per_level: Sequence[int]) -> None:
        super().__init__()
        self.levels = nn.ModuleList()
        for name in net.class_convs:
            conv = net.body.get_submodule(name)
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            linear = nn.Linear(conv.in_channels, conv.out_channels)
            with torch.no_grad():
                linear.weight.copy_(conv.weight.flatten(1))
                linear.bias.copy_(conv.bias)
            self.levels.append(linear)
        self.per_level = list(per_level)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, A, 64) per-anchor inputs, levels in `rows` order → (B, A, C) class logits."""
        parts = features.split(self.per_level, dim=1)
        return torch.cat([linear(part) for linear, part in zip(self.levels, parts, strict=True)], dim=1)

    def write_back(self, net: YoloxNet) -> None:
        """Copy the trained rows into the network's class convolutions (what gets exported)."""
        for name, linear in zip(net.class_convs, self.levels, strict=True):
            conv = net.body.get_submodule(name)
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None and isinstance(linear, nn.Linear)
            with torch.no_grad():
                conv.weight.copy_(linear.weight.detach().reshape(conv.weight.shape))
                conv.bias.copy_(linear.bias.detach())


@dataclass
class AnchorBank:
    """Every image's fixed views: class-conv inputs (float16), per-anchor class targets and loss weights."""

    features: np.ndarray  # (images, views, A, 64)
    targets: np.ndarray  # (images, views, A, C)
    weights: np.ndarray  # (images, views, A): 1 on foreground, objectness elsewhere, / foreground count

    def batch(self, images: Sequence[int], views: Sequence[int]) -> tuple[torch.Tensor, ...]:
        index = (list(images), list(views))
        return (
            torch.from_numpy(self.features[index].astype(np.float32)),
            torch.from_numpy(self.targets[index]),
            torch.from_numpy(self.weights[index]),
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
    captured: list[torch.Tensor] = []
    hooks = [
        net.body.get_submodule(name).register_forward_hook(lambda _m, args, _o: captured.append(args[0]))
        for name in net.class_convs
    ]
    rng = np.random.default_rng(seed)
    anchors, classes = len(centres), net.num_classes
    features = np.zeros((len(items), views, anchors, 64), dtype=np.float16)
    targets = np.zeros((len(items), views, anchors, classes), dtype=np.float32)
    weights = np.zeros((len(items), views, anchors), dtype=np.float32)
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
            features[index] = torch.cat([level.flatten(2) for level in captured], dim=2).transpose(1, 2).numpy()
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
    finally:
        for hook in hooks:
            hook.remove()
    return AnchorBank(features, targets, weights)


def per_image_losses(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B,) each view's weighted class BCE (its weights already carry its own foreground normalisation)."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1)
    return (bce * weights).sum(-1)


def private_start_rows(
    net: YoloxNet, items: Sequence[DetectionItem], info: ModelInfo, num_classes: int, epsilon: float, seed: int
) -> list[int | None]:
    """Per project class, the starting COCO row by report-noisy-max over the images' votes (ε-DP in total; see the
    module docstring); None (the last candidate): start fresh. Without a budget (ε = ∞): `closest_coco_classes`."""
    if not np.isfinite(epsilon):
        return closest_coco_classes(net, items, info, num_classes)
    coco = net.num_classes
    votes = np.zeros((num_classes, coco + 1))  # the last column: "fresh", which no image votes for
    for item in items:
        totals = coco_class_totals(net, item, info, num_classes)
        for tag in range(num_classes):
            if totals[tag].sum() > 0:
                votes[tag, int(totals[tag].argmax())] += 1
    noisy = votes + np.random.default_rng(seed + 3).laplace(scale=num_classes / epsilon, size=votes.shape)
    return [None if int(row.argmax()) == coco else int(row.argmax()) for row in noisy]


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
    head = ClassRows(net, sizes).train()
    count = len(items)
    # DP-SGD spends what the private choice of starting rows left
    rest = dataclasses.replace(budget, epsilon=budget.epsilon - selection) if budget is not None else None

    def batch_losses(model: nn.Module, images: list[int], views: list[int]) -> torch.Tensor:
        features, targets, weights = bank.batch(images, views)
        return per_image_losses(model(features), targets, weights)

    run = private_steps(
        head,
        list(head.parameters()),
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
            f"on YOLOX-Nano's three 1×1 class convolutions, started from the COCO class chosen by report-noisy-max "
            f"(ε {selection:g} of the total, composed); targets fixed per image by SimOTA on the frozen network, "
            "each image's loss normalised by its own foreground count (every other COCO weight frozen)",
            extra_epsilon=selection,
        ),
    )
