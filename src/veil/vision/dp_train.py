"""Differentially private training with Opacus (imports torch: training only). Types and accounting: `veil.vision.dp`.

    trainer = LinearHead(embeddings, targets, multilabel=False, classes=2, budget=PrivacyBudget(8.0), seed=0)
    layer = trainer.fit(range(len(targets)))      # DP-SGD on every image; trainer.spent is its PrivacySpent
    trainer.logits(layer)                         # (images, classes) on view 0, what the exported graph computes

Regular classification: the linear head on frozen embeddings. Each image is embedded under two views (as served
and mirrored); its gradient is the mean over its views, clipped once, so adding or removing one image changes the
noisy sum by at most C. The head sees L2-normalized embeddings (a per-image operation, free of privacy cost),
which bounds every gradient and lets one clipping norm fit every backbone; the exported graph normalizes too
(`ClassifierNetwork(normalize=True)`). Without a budget the same class fits the non-private L-BFGS head, so the
audit attacks exactly the procedure the iteration used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from veil.vision import classify
from veil.vision.dp import PrivacyBudget, PrivacySpent, noise_multiplier_for, opacus_version, spent_by_dp_sgd

if TYPE_CHECKING:
    from veil.vision.runtime import ModelInfo


@dataclass(frozen=True)
class DPHyperparameters:
    """DP-SGD settings of the linear head (chosen by cross-validation on the ants/bees train split only;
    docs/BENCHMARKS.md)."""

    # 5-fold CV on ants/bees train at ε = 8: 10 epochs 0.963 (all 245) / 0.950 (30 per tag) vs 60 epochs
    # 0.951 / 0.783 (more steps need more noise per step); non-private L-BFGS 0.971 / 0.967
    epochs: int = 10
    batch_size: int = 256  # expected (Poisson) batch; capped at N so the sampling rate q ≤ 1 (full-batch DP-GD)
    learning_rate: float = 2.0
    momentum: float = 0.9


def poisson_batch(expected: int, images: int) -> tuple[int, float]:
    """(loader batch size, sampling rate q) as Opacus will sample: `make_private` turns a loader of L batches into
    Poisson sampling at q = 1/L, so σ is calibrated for exactly that q (not batch/N, which is larger when N is not
    a multiple of the batch: the accounting would then be loose and the recorded rate wrong)."""
    batch = min(expected, images)
    return batch, 1.0 / math.ceil(images / batch)


def normalized(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm: bounds every gradient before clipping and makes one C fit all backbones."""
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return np.asarray(features / np.maximum(norms, 1e-12), dtype=np.float32)


class _ViewsHead(nn.Module):
    """(batch, views, D) → (batch, views, classes): one linear layer; Opacus sums per-sample grads over views."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def _per_image_loss(logits: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Each image's loss, averaged over its views (so one image = one clipped gradient)."""
    batch, views, classes = logits.shape
    flat = logits.reshape(batch * views, classes)
    if multilabel:
        expanded = targets.float().repeat_interleave(views, dim=0)
        loss = nn.functional.binary_cross_entropy_with_logits(flat, expanded, reduction="none").sum(dim=1)
    else:
        loss = nn.functional.cross_entropy(flat, targets.long().repeat_interleave(views), reduction="none")
    return loss.reshape(batch, views).mean(dim=1)


def fit_linear_dp(
    embeddings: np.ndarray,
    targets: np.ndarray,
    multilabel: bool,
    classes: int,
    budget: PrivacyBudget,
    seed: int,
    settings: DPHyperparameters | None = None,
    should_cancel: Callable[[], bool] | None = None,
    delta: float | None = None,
) -> tuple[nn.Linear, PrivacySpent]:
    """DP-SGD logistic regression on (images, views, D) embeddings (L2-normalized here); deterministic per seed.
    The returned layer expects normalized embeddings (`ClassifierNetwork(..., normalize=True)`)."""
    from opacus import PrivacyEngine  # imported here: loading Opacus costs a second that non-private runs skip

    settings = settings or DPHyperparameters()
    images = len(embeddings)
    delta = budget.delta_for(images) if delta is None else delta
    batch_size, sample_rate = poisson_batch(settings.batch_size, images)
    steps = max(1, round(settings.epochs / sample_rate))
    sigma = noise_multiplier_for(budget, delta, sample_rate, steps)
    torch.manual_seed(seed)
    features = torch.from_numpy(normalized(embeddings))
    labels = torch.from_numpy(targets.astype(np.float32) if multilabel else targets.astype(np.int64))
    head = _ViewsHead(features.shape[-1], classes)
    nn.init.zeros_(head.linear.weight)
    nn.init.zeros_(head.linear.bias)
    optimizer = torch.optim.SGD(head.parameters(), lr=settings.learning_rate, momentum=settings.momentum)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(features, labels),
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    with warnings.catch_warnings():
        # "secure RNG off": seeded on purpose (reproducible iterations, --seed); the noise is still N(0, σ²C²)
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant=budget.accountant)
        model, dp_optimizer, dp_loader = engine.make_private(
            module=head,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=budget.max_grad_norm,
            noise_generator=torch.Generator().manual_seed(seed + 1),
        )
        done = 0
        while done < steps:
            for x, y in dp_loader:
                if should_cancel and should_cancel():
                    raise classify.TrainingCancelled("training cancelled")
                dp_optimizer.zero_grad()
                loss = _per_image_loss(model(x), y, multilabel).sum() / max(1, len(x))
                loss.backward()
                dp_optimizer.step()
                done += 1
                if done >= steps:
                    break
    layer = nn.Linear(features.shape[-1], classes)
    layer.load_state_dict(head.linear.state_dict())
    return layer, spent_by_dp_sgd(
        engine.accountant.history,
        budget,
        delta,
        sigma,
        images,
        "on a linear head over frozen, L2-normalized embeddings",
    )


class LinearHead:
    """Fits Regular classification's head on any subset of the images, privately or not, with one procedure."""

    def __init__(
        self,
        embeddings: np.ndarray,
        targets: np.ndarray,
        multilabel: bool,
        classes: int,
        budget: PrivacyBudget | None,
        seed: int,
        should_cancel: Callable[[], bool] | None = None,
    ) -> None:
        self.embeddings, self.targets, self.multilabel, self.classes = embeddings, targets, multilabel, classes
        self.budget, self.seed, self.should_cancel = budget, seed, should_cancel
        self.spent: PrivacySpent | None = None
        # what the head sees at prediction time: view 0 (the image as served), normalized under DP
        self.served = normalized(embeddings[:, 0]) if budget else embeddings[:, 0]

    @property
    def normalize(self) -> bool:
        return self.budget is not None

    def fit(self, indices: Sequence[int], seed: int | None = None) -> nn.Linear:
        chosen = np.asarray(list(indices), dtype=np.int64)
        seed = self.seed if seed is None else seed
        if self.budget is None:
            views = self.embeddings.shape[1]
            features = self.embeddings[chosen].reshape(-1, self.embeddings.shape[2])
            return classify.fit_linear(
                features,
                np.repeat(self.targets[chosen], views, axis=0),
                self.multilabel,
                seed=seed,
                classes=self.classes,
            )
        # δ from the whole training set, so every fit (folds, delivered model, references) shares one setting
        layer, self.spent = fit_linear_dp(
            self.embeddings[chosen],
            self.targets[chosen],
            self.multilabel,
            self.classes,
            self.budget,
            seed,
            should_cancel=self.should_cancel,
            delta=self.budget.delta_for(len(self.embeddings)),
        )
        return layer

    def logits(self, layer: nn.Linear, indices: Sequence[int] | None = None) -> np.ndarray:
        rows = self.served if indices is None else self.served[np.asarray(list(indices), dtype=np.int64)]
        with torch.no_grad():
            return layer(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))).double().numpy()

    def probabilities(self, layer: nn.Linear, indices: Sequence[int]) -> np.ndarray:
        logits = torch.from_numpy(self.logits(layer, indices))
        return (torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)).numpy()

    def reference_logits(self, indices: list[int], seed: int) -> np.ndarray:
        """The audit's reference model: the same procedure on `indices`, scored on every image."""
        return self.logits(self.fit(indices, seed))


# ---------------------------------------------------------------- Advanced classification: DP fine-tuning


@dataclass(frozen=True)
class DPFineTuneSettings:
    """DP-SGD settings of Advanced classification's private fine-tuning (the last MBConv stage, the 1×1 head
    convolution and the linear layer; everything before stays frozen). Chosen on the ants/bees train split."""

    # False (the default): only the linear layer is trained, by exactly Regular's DP head (`fit_linear_dp`: both
    # views averaged, clipped once, full batch) on the network's own embeddings at its input size. Measured on
    # ants/bees train only (30 per class fitted, the other 185 train images scored; Lite0 at 128 px, ε = 8):
    # DP-SGD of the last stage + head 0.789, with per-layer clipping (90 % of C to the head) 0.703, convolutions
    # at lr 0.05 0.622, head only 0.800; the Regular DP head on the same embeddings ~0.84 (docs/BENCHMARKS.md).
    # With one clipping norm over ~1M convolution weights and the head, the convolutions' per-image gradient
    # (norm 16 by the end) takes ~98 % of the clipping budget from the head's (0.4), and the noise is isotropic
    # over all of them: at tens of images per class, fine-tuning convolutions privately costs more than it gains.
    train_convolutions: bool = False
    epochs: int = 10
    batch_size: int = 32  # expected (Poisson) batch; capped at N
    learning_rate: float = 0.5  # the linear layer's
    backbone_learning_rate: float = 0.005  # the convolutions' (train_convolutions only)
    momentum: float = 0.9


class TailNetwork(nn.Module):
    """The trainable end of a `ClassifierNetwork` whose batch norms are folded into their convolutions
    (`backbone.fuse_batch_norm`): the last stage's blocks, the 1×1 head convolution, pooling, the linear layer.
    It shares its modules with the network, so training the tail trains the network that is exported.

    Opacus needs: no batch norm (folded: frozen ImageNet statistics, the folded biases stay frozen as the
    non-private fine-tuning keeps BN frozen), no in-place activations (its backward hooks see the tensors the
    forward pass saved), and the modules in training mode when they run (else it records no activations)."""

    def __init__(self, network: classify.ClassifierNetwork) -> None:
        super().__init__()
        trunk = network.backbone
        self.first_block = trunk.stage_ends[5] + 1
        self.blocks = nn.ModuleList(list(trunk._blocks)[self.first_block :])
        self.conv_head = trunk._conv_head
        self.head = network.head
        self.normalize = network.normalize
        for module in network.modules():
            if isinstance(module, nn.ReLU6):
                module.inplace = False
        self.act = nn.ReLU6()
        for name, parameter in self.named_parameters():
            # folded batch-norm biases (created frozen by fuse_conv_bn_eval) stay frozen; the weights train
            parameter.requires_grad = name.startswith("head.") or not name.endswith(".bias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        pooled = self.act(self.conv_head(x)).mean(dim=(2, 3))
        if self.normalize:
            pooled = classify.l2_normalized(pooled)
        return self.head(pooled)


class _FrozenFront(nn.Module):
    """Everything before the tail (stem and blocks up to the end of the sixth stage), run once per view."""

    def __init__(self, network: classify.ClassifierNetwork, first_block: int) -> None:
        super().__init__()
        self.trunk, self.first_block = network.backbone, first_block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        trunk = self.trunk
        x = trunk._act(trunk._bn0(trunk._conv_stem(trunk._stem_pad(x))))
        for block in list(trunk._blocks)[: self.first_block]:
            x = block(x)
        return x


def front_maps(
    network: classify.ClassifierNetwork,
    first_block: int,
    images: Sequence[np.ndarray],
    info: ModelInfo,
    should_cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """(images, views, C, H, W): the frozen front's output for each image and its mirror (onnxruntime)."""
    from veil.vision.backbone import FrozenRunner
    from veil.vision.runtime import preprocess

    runner = FrozenRunner(_FrozenFront(network, first_block), info.input_height, info.input_width)
    chunks = []
    for start in range(0, len(images), 16):
        if should_cancel and should_cancel():
            raise classify.TrainingCancelled("training cancelled")
        views = [
            preprocess(np.ascontiguousarray(view), info)[0]
            for rgb in images[start : start + 16]
            for view in classify.augmentation_views(rgb)
        ]
        maps = runner(np.stack(views))
        chunks.append(maps.reshape(-1, classify.VIEW_COUNT, *maps.shape[1:]))
    return np.concatenate(chunks)


def fine_tune_dp(
    network: classify.ClassifierNetwork,
    images: Sequence[np.ndarray],
    targets: np.ndarray,
    info: ModelInfo,
    budget: PrivacyBudget,
    delta: float,
    seed: int,
    settings: DPFineTuneSettings | None = None,
    on_step: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> PrivacySpent:
    """DP-SGD fine-tuning of `network`'s tail (in place; its batch norms must be folded) on every image, for a
    fixed number of epochs (no early stopping: choosing an epoch on held-out images would spend them too).
    Each step takes one view (the image or its mirror, drawn independently of the data) per sampled image, so an
    image contributes one clipped gradient. Returns what the run spent."""
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    settings = settings or DPFineTuneSettings()
    torch.manual_seed(seed)
    tail = TailNetwork(network)
    problems = ModuleValidator.validate(tail, strict=False)
    if problems:  # a backbone Opacus cannot clip per image: fail loudly rather than train without DP
        raise RuntimeError(f"the network cannot be trained with Opacus: {problems[0]}")
    maps = torch.from_numpy(front_maps(network, tail.first_block, images, info, should_cancel))
    multilabel = network.multilabel
    if not settings.train_convolutions:
        return _head_only(network, tail, maps, targets, budget, delta, seed, on_step, should_cancel)
    labels = torch.from_numpy(targets.astype(np.float32) if multilabel else targets.astype(np.int64))
    count = len(images)
    batch_size, sample_rate = poisson_batch(settings.batch_size, count)
    steps = max(1, round(settings.epochs / sample_rate))
    sigma = noise_multiplier_for(budget, delta, sample_rate, steps)
    trunk = [p for name, p in tail.named_parameters() if p.requires_grad and not name.startswith("head.")]
    optimizer = torch.optim.SGD(
        [
            {"params": trunk, "lr": settings.backbone_learning_rate},
            {"params": list(tail.head.parameters()), "lr": settings.learning_rate},
        ],
        lr=settings.learning_rate,
        momentum=settings.momentum,
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(maps, labels),
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    views = torch.Generator().manual_seed(seed + 2)
    tail.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seeded noise on purpose (reproducible with --seed), as in fit_linear_dp
        engine = PrivacyEngine(accountant=budget.accountant)
        model, dp_optimizer, dp_loader = engine.make_private(
            module=tail,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=budget.max_grad_norm,
            noise_generator=torch.Generator().manual_seed(seed + 1),
        )
        done = 0
        while done < steps:
            for x, y in dp_loader:
                if should_cancel and should_cancel():
                    raise classify.TrainingCancelled("training cancelled")
                dp_optimizer.zero_grad()
                if len(x):
                    chosen = torch.randint(0, x.shape[1], (len(x),), generator=views)
                    logits = model(x[torch.arange(len(x)), chosen])
                    loss = (
                        nn.functional.binary_cross_entropy_with_logits(logits, y.float(), reduction="none").sum(1)
                        if multilabel
                        else nn.functional.cross_entropy(logits, y.long(), reduction="none")
                    )
                    (loss.sum() / len(x)).backward()
                    dp_optimizer.step()
                # an empty Poisson batch (chance e^−B) is skipped: one step fewer than accounted, never more
                done += 1
                if on_step:
                    on_step(done / steps)
                if done >= steps:
                    break
        model.remove_hooks()  # the tail's modules are the exported network's: no Opacus hooks left on them
    for parameter in network.parameters():
        parameter.grad_sample = None  # type: ignore[attr-defined]
        parameter.grad = None
    network.eval()
    return spent_by_dp_sgd(
        engine.accountant.history,
        budget,
        delta,
        sigma,
        count,
        "fine-tuning the last MBConv stage, the head convolution and the linear layer (batch norms folded and "
        "frozen, earlier layers frozen ImageNet weights)",
    )


def _head_only(
    network: classify.ClassifierNetwork,
    tail: TailNetwork,
    maps: torch.Tensor,
    targets: np.ndarray,
    budget: PrivacyBudget,
    delta: float,
    seed: int,
    on_step: Callable[[float], None] | None,
    should_cancel: Callable[[], bool] | None,
) -> PrivacySpent:
    """Advanced with DP, convolutions frozen: Regular's DP head (`fit_linear_dp`) on the network's embeddings of
    every image and its mirror, loaded into `network.head` (which normalizes its input, as that head expects)."""
    tail.eval()
    with torch.no_grad():
        flat = maps.reshape(-1, *maps.shape[2:])
        pooled = []
        for start in range(0, len(flat), 64):
            x = flat[start : start + 64]
            for block in tail.blocks:
                x = block(x)
            pooled.append(tail.act(tail.conv_head(x)).mean(dim=(2, 3)))
        embeddings = torch.cat(pooled).reshape(maps.shape[0], maps.shape[1], -1).numpy()
    if on_step:
        on_step(0.5)
    layer, spent = fit_linear_dp(
        embeddings,
        targets,
        network.multilabel,
        network.head.out_features,
        budget,
        seed,
        should_cancel=should_cancel,
        delta=delta,
    )
    network.head.load_state_dict(layer.state_dict())
    network.eval()
    if on_step:
        on_step(1.0)
    return PrivacySpent(
        **{
            **spent.to_dict(),
            "mechanism": f"DP-SGD, per-image clipping, Poisson sampling (Opacus {opacus_version()}) on the linear "
            "layer over the network's L2-normalized embeddings (every convolution frozen: fine-tuning them "
            "privately was measured to cost accuracy at this data size)",
        }
    )
