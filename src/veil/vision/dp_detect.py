"""Differentially private detection: DP-SGD on the feature pyramid and FCOS head of the EfficientNet-Lite detector
(imports torch: training only). Types and accounting: `veil.vision.dp`; the classification counterpart:
`veil.vision.dp_train`.

    history, spent = train_detector_dp(detector, items, info, PrivacyBudget(8.0), delta=1e-3, seed=0)

What is private and why it is sound:

- The trunk (EfficientNet-Lite, ImageNet weights, public) is frozen whole, batch norms in eval mode (their running
  statistics never move), so it costs no privacy and runs once per image view in onnxruntime (`view_bank`).
  Only the FPN (P3–P7) and the FCOS head train; their layers are Conv2d and GroupNorm, which Opacus' per-sample
  gradient hooks support (`GradSampleModule`), including the head's reuse across the five pyramid levels.
- torchvision's FCOS loss divides the whole batch's loss by the batch's foreground count, so one image's gradient
  depends on the others'. `per_image_losses` calls the same loss once per image, normalised by that image's own
  foreground count: image i's loss depends on image i only, its gradient is its own, and Opacus clips it to C.
- Each image is augmented into `views` fixed views before training (flip, scale, placement, colour: per-image
  operations, free of privacy cost); a step uses one view per sampled image, drawn independently of the data, so
  one image still contributes one clipped gradient per step.
- Poisson sampling at rate q = 1/⌈N/B⌉ (Opacus' DPDataLoader), Gaussian noise σ·C on the clipped sum, σ calibrated
  by Opacus for the run's fixed step count, and the spent ε read back from the same accountant as classification.
  An empty Poisson batch still takes its noise-only step, so whether a step happened reveals nothing.

Per-sample gradients come from Opacus' vectorised hooks (`make_private`, as classification) rather than a loop of
one-image backward passes: one forward and backward per step instead of one per sampled image, and the same
engine, accountant and record as `veil.vision.dp_train`. tests/vision/test_dp.py checks Opacus' per-sample
gradients against each image trained alone, and the clipped update. Without a budget the
same loop trains non-privately (shuffled mini-batches, the same per-image loss, no clipping or noise): the
reference the DP path is compared with.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FCOS

from veil.vision.backbone import FrozenRunner
from veil.vision.classify import TrainingCancelled
from veil.vision.detect import DetectionHistory, DetectionItem, augment, letterboxed
from veil.vision.dp import PrivacyBudget, PrivacySpent, noise_multiplier_for, spent_by_dp_sgd
from veil.vision.dp_train import poisson_batch
from veil.vision.runtime import ModelInfo, normalize


@dataclass(frozen=True)
class DPDetectionSettings:
    """DP-SGD settings of the detection head: chosen on plates-det (86 trained, 22 held out, 256 px, ε = 8), reported
    on Penn-Fudan (docs/BENCHMARKS.md)."""

    # plates mAP@0.5 at ε = 8: batch 32 / 30 epochs 0.782, batch 16 / 30 epochs 0.725, batch 16 / 15 epochs 0.768,
    # batch 32 / 15 epochs 0.690, batch 32 with lr 5e-3 0.752 — all within the noise of 22 test images; non-private
    # FCOS and this procedure at ε = 10⁴ both 1.000
    epochs: int = 30
    batch_size: int = 32  # expected (Poisson) batch; capped at N
    learning_rate: float = 2e-3  # Adam: the noisy gradient's scale varies per layer, Adam's step does not
    views: int = 4  # fixed augmented views per image (the first is the served letterbox, no augmentation)


class _TrunkFeatures(nn.Module):
    """The frozen trunk's stride-8/16/32 maps, flattened into one row per image (FrozenRunner has one output)."""

    def __init__(self, detector: FCOS) -> None:
        super().__init__()
        self.trunk = detector.backbone.trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([level.flatten(1) for level in self.trunk.features(x)], dim=1)


class PyramidHead(nn.Module):
    """The trainable part: FPN + FCOS head from the trunk's maps (shares its modules with the detector, so
    training it trains the detector that is exported)."""

    def __init__(self, detector: FCOS) -> None:
        super().__init__()
        self.fpn = detector.backbone.fpn
        self.head = detector.head

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> dict[str, torch.Tensor]:
        levels = self.fpn(OrderedDict([("c3", c3), ("c4", c4), ("c5", c5)]))
        return dict(self.head(list(levels.values())))


@dataclass
class ViewBank:
    """Every image's fixed views: trunk maps (float16 to halve memory) and boxes/classes in input pixels."""

    maps: list[np.ndarray]  # per level: (images, views, C, H, W)
    boxes: list[list[np.ndarray]]  # [image][view] (K, 4)
    classes: list[list[np.ndarray]]  # [image][view] (K,)

    def batch(self, images: Sequence[int], views: Sequence[int]) -> list[torch.Tensor]:
        return [torch.from_numpy(level[list(images), list(views)].astype(np.float32)) for level in self.maps]

    def targets(self, images: Sequence[int], views: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        return [
            {
                "boxes": torch.from_numpy(self.boxes[i][v]).float().reshape(-1, 4),
                "labels": torch.from_numpy(self.classes[i][v]).long(),
            }
            for i, v in zip(images, views, strict=True)
        ]


def view_bank(
    detector: FCOS,
    items: Sequence[DetectionItem],
    info: ModelInfo,
    views: int,
    seed: int,
    should_cancel: Callable[[], bool] | None = None,
) -> ViewBank:
    """Run the frozen trunk once over `views` views of every image (view 0: the served letterbox)."""
    size = info.input_width
    runner = FrozenRunner(_TrunkFeatures(detector), size, size)
    rng = np.random.default_rng(seed)
    channels = list(detector.backbone.trunk.feature_channels)
    shapes = [(c, size // s, size // s) for c, s in zip(channels, (8, 16, 32), strict=True)]
    maps = [np.zeros((len(items), views, *shape), dtype=np.float16) for shape in shapes]
    boxes: list[list[np.ndarray]] = []
    classes: list[list[np.ndarray]] = []
    for index, item in enumerate(items):
        if should_cancel and should_cancel():
            raise TrainingCancelled("training cancelled")
        canvases, item_boxes, item_classes = [], [], []
        for view in range(views):
            if view == 0:
                canvas, placed = letterboxed(item, info)
                ids = item.classes
            else:
                canvas, placed, ids = augment(item, info, rng)
            canvases.append(normalize(canvas, info))
            item_boxes.append(np.asarray(placed, dtype=np.float32).reshape(-1, 4))
            item_classes.append(np.asarray(ids, dtype=np.int64))
        flat = runner(np.stack(canvases))
        start = 0
        for level, shape in enumerate(shapes):
            width = int(np.prod(shape))
            maps[level][index] = flat[:, start : start + width].reshape(views, *shape)
            start += width
        boxes.append(item_boxes)
        classes.append(item_classes)
    return ViewBank(maps, boxes, classes)


def per_image_losses(
    detector: FCOS,
    outputs: dict[str, torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    anchors: torch.Tensor,
    per_level: list[int],
) -> torch.Tensor:
    """(B,) FCOS loss of each image alone (focal + GIoU + centerness, normalised by its own foreground count):
    torchvision's loss over a batch of one, so no image's loss depends on another's. `anchors`: the (A, 4)
    anchors of one image; `per_level`: how many of them each pyramid level has."""
    losses = []
    for i, target in enumerate(targets):
        single = {name: value[i : i + 1] for name, value in outputs.items()}
        parts = detector.compute_loss([target], single, [anchors], per_level)
        losses.append(torch.stack(list(parts.values())).sum())
    return torch.stack(losses)


def train_detector_dp(
    detector: FCOS,
    items: Sequence[DetectionItem],
    info: ModelInfo,
    budget: PrivacyBudget | None,
    delta: float,
    seed: int,
    steps: int | None = None,
    settings: DPDetectionSettings | None = None,
    on_progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[DetectionHistory, PrivacySpent | None]:
    """Train `detector`'s FPN + head (trunk frozen) with DP-SGD on every item; `steps` fixes the step count
    (tests, benchmarks), else `settings.epochs` worth. σ is calibrated before training, so the run's length must
    be known up front: DP detection trains by steps, never by the clock. Returns the history and what was spent
    (None without a budget: the same loop, non-private)."""
    from veil.vision.detect import anchor_boxes

    settings = settings or DPDetectionSettings()
    started = time.monotonic()
    torch.manual_seed(seed)
    for parameter in detector.backbone.trunk.parameters():
        parameter.requires_grad = False
    detector.backbone.trunk.eval()  # batch norms keep the ImageNet statistics
    bank = view_bank(detector, items, info, settings.views, seed, should_cancel)
    anchors = anchor_boxes(detector, info.input_width)
    head = PyramidHead(detector).train()
    with torch.no_grad():
        levels = head.fpn(OrderedDict(zip(("c3", "c4", "c5"), bank.batch([0], [0]), strict=True)))
    per_level = [level.shape[2] * level.shape[3] for level in levels.values()]
    count = len(items)
    run = private_steps(
        head,
        [p for p in head.parameters() if p.requires_grad],
        count,
        settings,
        steps,
        budget,
        delta,
        seed,
        lambda model, images, views: per_image_losses(
            detector, model(*bank.batch(images, views)), bank.targets(images, views), anchors, per_level
        ),
        on_progress,
        should_cancel,
    )
    for parameter in detector.parameters():
        parameter.grad_sample = None
        parameter.grad = None
    detector.eval()
    run.history.seconds = time.monotonic() - started
    if run.accountant_history is None or budget is None:
        return run.history, None
    return run.history, spent_by_dp_sgd(
        run.accountant_history,
        budget,
        delta,
        run.noise_multiplier,
        count,
        "on the feature pyramid and FCOS head, each image's loss normalised by its own boxes (the ImageNet trunk "
        "frozen, batch norms in eval mode)",
    )


@dataclass
class PrivateRun:
    """What `private_steps` leaves: the history, σ, and the accountant's record (None when not private)."""

    history: DetectionHistory
    noise_multiplier: float
    accountant_history: list[tuple[float, float, int]] | None


class LoopSettings(Protocol):
    """What `private_steps` reads of DPDetectionSettings / DPYoloxSettings."""

    @property
    def learning_rate(self) -> float: ...
    @property
    def views(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def epochs(self) -> float: ...


def private_steps(
    head: nn.Module,
    trainable: list[nn.Parameter] | list[tuple[list[nn.Parameter], float]],
    count: int,
    settings: LoopSettings,
    steps: int | None,
    budget: PrivacyBudget | None,
    delta: float,
    seed: int,
    batch_losses: Callable[[nn.Module, list[int], list[int]], torch.Tensor],
    on_progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> PrivateRun:
    """The DP-SGD loop both detection modules share: Opacus (Poisson sampling, per-image clipping, seeded noise
    for `budget`, or the same loop without it), a cosine learning rate over `steps`, one random fixed view per
    sampled image, `batch_losses(model, images, views)` giving each image's own loss. `budget.epsilon` here is
    the share DP-SGD may spend; `steps` fixes the step count (tests, benchmarks), else `settings.epochs` worth."""
    batch_size, sample_rate = poisson_batch(settings.batch_size, count)
    steps = steps if steps is not None else max(1, round(settings.epochs / sample_rate))
    # `lr_scale` per parameter group (default 1): parts that start far from their optimum may step faster
    groups = [{"params": group, "lr_scale": scale} for group, scale in _groups(trainable)]
    optimizer = torch.optim.Adam(groups, lr=settings.learning_rate)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.arange(count)),
        batch_size=batch_size,
        shuffle=budget is None,
        generator=torch.Generator().manual_seed(seed),
    )
    sigma = 0.0
    engine = None
    model: nn.Module = head
    history = DetectionHistory(0, [], [], 0.0)
    view_choice = torch.Generator().manual_seed(seed + 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seeded noise on purpose (reproducible with --seed), as in fit_linear_dp
        if budget is not None:
            from opacus import PrivacyEngine

            sigma = noise_multiplier_for(budget, delta, sample_rate, steps)
            engine = PrivacyEngine(accountant=budget.accountant)
            model, optimizer, loader = engine.make_private(
                module=head,
                optimizer=optimizer,
                data_loader=loader,
                noise_multiplier=sigma,
                max_grad_norm=budget.max_grad_norm,
                noise_generator=torch.Generator().manual_seed(seed + 1),
            )
        epoch_losses: list[float] = []
        while history.iterations < steps:
            for (chosen,) in loader:
                if should_cancel and should_cancel():
                    raise TrainingCancelled("training cancelled")
                _cosine(optimizer, settings.learning_rate, history.iterations, steps)
                images = [int(i) for i in chosen]
                views = torch.randint(0, settings.views, (len(images),), generator=view_choice).tolist()
                optimizer.zero_grad()
                if images:
                    loss = batch_losses(model, images, views)
                    # Opacus' "mean" reduction: it rescales by the batch size to get each image's own gradient
                    (loss.sum() / len(images)).backward()
                    epoch_losses.append(float(loss.detach().mean()))
                else:
                    # an empty Poisson batch still takes its noise-only step: skipping it would reveal that no
                    # image was sampled (the heads cannot run on zero images, so no forward pass)
                    for parameter in (p for group, _ in _groups(trainable) for p in group):
                        parameter.grad_sample = torch.zeros(0, *parameter.shape)  # type: ignore[attr-defined]
                optimizer.step()
                history.iterations += 1
                if on_progress:
                    on_progress(history.iterations / steps)
                if history.iterations >= steps:
                    break
            history.epochs.append(len(history.epochs) + 1)
            history.train_loss.append(float(np.mean(epoch_losses)) if epoch_losses else float("nan"))
            epoch_losses = []
        if engine is not None:
            model.remove_hooks()  # type: ignore[operator]  # the head's modules are the exported network's
    return PrivateRun(history, sigma, engine.accountant.history if engine is not None else None)


def _groups(
    trainable: list[nn.Parameter] | list[tuple[list[nn.Parameter], float]],
) -> list[tuple[list[nn.Parameter], float]]:
    """`trainable` as (parameters, learning-rate scale) groups: a plain parameter list is one group at scale 1."""
    if trainable and isinstance(trainable[0], tuple):
        return [(list(group), float(scale)) for group, scale in trainable]
    return [(list(trainable), 1.0)]  # type: ignore[arg-type]


def _cosine(optimizer: torch.optim.Optimizer, base: float, step: int, steps: int) -> None:
    """Cosine decay over the fixed step count (data-independent, so free of privacy cost)."""
    factor = 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
    for group in optimizer.param_groups:
        group["lr"] = base * group.get("lr_scale", 1.0) * max(factor, 0.01)
