"""Image classification on the EfficientNet-Lite0 backbone (imports torch: training only).

Regular: the frozen backbone embeds every image under two views (as served, and mirrored); a linear classifier
is fitted on those embeddings by full-batch L-BFGS with L2 regularization — seconds on a CPU. The backbone runs in
onnxruntime for this (`FrozenRunner`), several times faster than eager PyTorch on a CPU. Advanced: the network
after its stride-8 prefix is fine-tuned with augmentation under a time budget (the frozen prefix runs in
onnxruntime), early-stopped on a validation split, keeping the best weights. Multiclass uses a softmax (a Negative
tag is one more class: "none of the others"), multilabel independent sigmoids (a Negative image has all targets 0).
Inputs always go through `veil.vision.runtime.preprocess`, the same code the exported model is served with.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from veil.vision.backbone import EMBEDDING_SIZE, EfficientNetLite, FrozenRunner, PrefixModule
from veil.vision.runtime import ModelInfo, preprocess

CancelCheck = Callable[[], bool]


class TrainingCancelled(RuntimeError):
    """Raised when `should_cancel()` turned true; nothing is produced."""


class ClassifierNetwork(nn.Module):
    """Backbone → dropout → linear → softmax/sigmoid. Its output is what the ONNX graph returns. `normalize`:
    the head sees L2-normalized embeddings (differentially private heads are trained that way, veil.vision.dp_train).
    """

    def __init__(
        self, backbone: EfficientNetLite, classes: int, multilabel: bool, dropout: float = 0.2, normalize: bool = False
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(EMBEDDING_SIZE, classes)
        self.multilabel = multilabel
        self.normalize = normalize

    def _embedding(self, pooled: torch.Tensor) -> torch.Tensor:
        return l2_normalized(pooled) if self.normalize else pooled

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self._embedding(self.backbone.pooled(x))))

    def logits_from_prefix(self, c3: torch.Tensor) -> torch.Tensor:
        """Logits from the frozen prefix's output (training runs the prefix in onnxruntime)."""
        return self.head(self.dropout(self._embedding(self.backbone.head(self.backbone.suffix(c3)[-1]))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x)
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)


def l2_normalized(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm. Written with plain operators (no `F.normalize`): its ONNX form is a Clip with
    no upper bound, which onnx2torch cannot convert, so a private classifier could not be exported to Core ML or
    TensorFlow Lite."""
    return x * torch.rsqrt((x * x).sum(dim=1, keepdim=True) + 1e-24)


def _center_crop(rgb: np.ndarray, fraction: float = 0.8) -> np.ndarray:
    height, width = rgb.shape[:2]
    crop_h, crop_w = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return rgb[top : top + crop_h, left : left + crop_w]


def augmentation_views(rgb: np.ndarray) -> list[np.ndarray]:
    """The views embedded for Regular training; view 0 (the image as served) is the one evaluated."""
    return [rgb, rgb[:, ::-1]]


VIEW_COUNT = 2


def embed(
    runner: Callable[[np.ndarray], np.ndarray],
    images: Sequence[Callable[[], np.ndarray]],
    info: ModelInfo,
    on_image: Callable[[int], None] | None = None,
    should_cancel: CancelCheck | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """(images, VIEW_COUNT, 1280) embeddings of every augmentation view; `runner` is the frozen backbone
    (a `FrozenRunner`: onnxruntime) mapping a normalized (N, 3, H, W) batch to (N, 1280)."""
    result = np.zeros((len(images), VIEW_COUNT, EMBEDDING_SIZE), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        if should_cancel and should_cancel():
            raise TrainingCancelled("training cancelled")
        chunk = range(start, min(start + batch_size, len(images)))
        tensors = [
            preprocess(np.ascontiguousarray(view), info)[0] for i in chunk for view in augmentation_views(images[i]())
        ]
        pooled = runner(np.stack(tensors))
        result[start : chunk.stop] = pooled.reshape(len(chunk), VIEW_COUNT, EMBEDDING_SIZE)
        if on_image:
            on_image(chunk.stop)
    return result


def fit_linear(
    features: np.ndarray,
    targets: np.ndarray,
    multilabel: bool,
    l2: float = 1e-3,
    seed: int = 0,
    classes: int | None = None,
) -> nn.Linear:
    """Logistic regression (softmax or per-tag sigmoid) on embeddings: full-batch L-BFGS, deterministic.

    `classes` fixes the output width: a fold or an audit reference model may see no image of the last class (often
    the Negative tag), and its outputs must still line up with every class.
    """
    torch.manual_seed(seed)
    x = torch.from_numpy(features.astype(np.float32))
    if classes is None:
        classes = targets.shape[1] if multilabel else int(targets.max()) + 1
    y = torch.from_numpy(targets.astype(np.float32) if multilabel else targets.astype(np.int64))
    layer = nn.Linear(x.shape[1], classes)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    loss_fn: nn.Module = nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()
    optimizer = torch.optim.LBFGS(
        layer.parameters(), lr=1.0, max_iter=200, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(layer(x), y) + l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return layer


def linear_probabilities(layer: nn.Linear, features: np.ndarray, multilabel: bool) -> np.ndarray:
    with torch.no_grad():
        logits = layer(torch.from_numpy(features.astype(np.float32)))
        return (torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)).numpy()


@dataclass
class FineTuneHistory:
    epochs: list[int]
    train_loss: list[float]
    validation_score: list[float]
    best_epoch: int
    stopped_because: str


def _random_view(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation: random crop (60-100% of the side), flip, brightness/contrast jitter."""
    height, width = rgb.shape[:2]
    fraction = rng.uniform(0.6, 1.0)
    crop_h, crop_w = max(1, int(height * fraction)), max(1, int(width * fraction))
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    view = rgb[top : top + crop_h, left : left + crop_w]
    if rng.random() < 0.5:
        view = view[:, ::-1]
    gain, bias = rng.uniform(0.75, 1.25), rng.uniform(-20, 20)
    return np.clip(view.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)


def fine_tune(
    network: ClassifierNetwork,
    train_images: Sequence[np.ndarray],
    train_targets: np.ndarray,
    validation_images: Sequence[np.ndarray],
    validation_targets: np.ndarray,
    info: ModelInfo,
    budget_seconds: float,
    seed: int,
    on_epoch: Callable[[float], None] | None = None,
    should_cancel: CancelCheck | None = None,
    patience: int = 4,
    batch_size: int = 16,
) -> FineTuneHistory:
    """Fine-tune all layers with AdamW until the budget or `patience` epochs without validation gain; keep best."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    multilabel = network.multilabel
    loss_fn: nn.Module = nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss(label_smoothing=0.1)
    _freeze_prefix(network)
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in network.backbone.parameters() if p.requires_grad], "lr": 3e-4},
            {"params": network.head.parameters(), "lr": 3e-3},
        ],
        weight_decay=1e-4,
    )
    prefix = FrozenRunner(PrefixModule(network.backbone), info.input_height, info.input_width)
    _freeze_prefix(network)
    validation = torch.cat(
        [
            torch.from_numpy(prefix(np.stack([preprocess(rgb, info)[0] for rgb in validation_images[i : i + 16]])))
            for i in range(0, len(validation_images), 16)
        ]
    )
    started = time.monotonic()
    history = FineTuneHistory([], [], [], 0, "budget")
    best_score, best_state = -1.0, copy.deepcopy(network.state_dict())
    epoch = 0
    while True:
        epoch += 1
        network.train()
        _freeze_batch_norm(network.backbone)
        order = rng.permutation(len(train_images))
        losses = []
        for start in range(0, len(order), batch_size):
            if should_cancel and should_cancel():
                raise TrainingCancelled("training cancelled")
            picked = order[start : start + batch_size]
            views = np.stack([preprocess(_random_view(train_images[i], rng), info)[0] for i in picked])
            batch = torch.from_numpy(prefix(views))
            target = torch.from_numpy(train_targets[picked])
            target = target.float() if multilabel else target.long()
            optimizer.zero_grad()
            loss = loss_fn(network.logits_from_prefix(batch), target)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        score = _validation_score(network, validation, validation_targets)
        history.epochs.append(epoch)
        history.train_loss.append(float(np.mean(losses)))
        history.validation_score.append(score)
        if score > best_score:
            best_score, best_state, history.best_epoch = score, copy.deepcopy(network.state_dict()), epoch
        elapsed = time.monotonic() - started
        if on_epoch:
            on_epoch(min(1.0, elapsed / budget_seconds))
        if epoch - history.best_epoch >= patience:
            history.stopped_because = f"early stop: no validation gain for {patience} epochs"
            break
        if elapsed * (epoch + 1) / epoch > budget_seconds:
            break
    network.load_state_dict(best_state)
    network.eval()
    return history


def frozen_parameter(name: str) -> bool:
    """Trunk parameters kept frozen when training: the prefix (stem, blocks 0-4) and every batch norm."""
    in_prefix = name.startswith(("_conv_stem", "_bn0")) or (name.startswith("_blocks.") and int(name.split(".")[1]) < 5)
    return in_prefix or "._bn" in name or name.startswith("_bn")


def _freeze_prefix(network: ClassifierNetwork) -> None:
    for name, parameter in network.backbone.named_parameters():
        parameter.requires_grad = not frozen_parameter(name)


def _freeze_batch_norm(trunk: nn.Module) -> None:
    """Small CPU batches: keep the ImageNet batch-norm statistics."""
    for module in trunk.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


def _validation_score(network: ClassifierNetwork, prefixes: torch.Tensor, targets: np.ndarray) -> float:
    """Accuracy (multiclass) or mean per-tag accuracy at 0.5 (multilabel), minus a tiny loss term to break ties."""
    network.eval()
    with torch.no_grad():
        chunks = [network.logits_from_prefix(prefixes[i : i + 32]) for i in range(0, len(prefixes), 32)]
        logits = torch.cat(chunks)
        probabilities = (torch.sigmoid(logits) if network.multilabel else torch.softmax(logits, dim=1)).numpy()
    if network.multilabel:
        accuracy = float(((probabilities >= 0.5) == (targets >= 0.5)).mean())
        loss = float(-np.mean(np.log(np.where(targets >= 0.5, probabilities, 1 - probabilities) + 1e-7)))
    else:
        accuracy = float((probabilities.argmax(1) == targets).mean())
        loss = float(-np.mean(np.log(probabilities[np.arange(len(targets)), targets] + 1e-7)))
    return accuracy - 1e-3 * loss
