"""Training entry point: `train(TrainRequest) -> TrainResult` (imports torch; runs in the worker or `veil train`).

    from veil.vision.train import TrainRequest, train
    result = train(TrainRequest(task="classify", samples=samples, seed=0), progress=print)
    result.bundle            # Veil zip: model.onnx + labels.txt + model card
    result.evaluation        # held-out predictions; veil.vision.metrics.performance(result.evaluation, 0.5, 0.5)

Tasks: "classify" (one tag per image), "multilabel", "detect". Regular classification = frozen-feature linear
classifier, evaluated by k-fold cross-validation below 60 images, else on a stratified 20 % held-out split; the
delivered classifier is then refitted on every image (the evaluation measures that procedure on unseen images).
Advanced classification fine-tunes on 80 % (with an inner validation split for early stopping) and is evaluated
on the held-out 20 %. Detection (time budget: Regular 3 minutes; Advanced the request's) trains on 80 % and is
evaluated on the held-out 20 %; below 40 images it is 3-fold cross-validated with half the budget, and the
delivered model trains on every image for the other half. Held-out images are always scored through the
exported ONNX model — exactly what the service will run.
Minimum data (Custom Vision's rule): 5 images per tag for classification, 15 for detection → `NotEnoughData`.
`should_cancel()` is polled between batches → `TrainingCancelled`.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import torch

import veil
from veil.vision import classify, detect, membership
from veil.vision.backbone import MEAN, STD, FrozenRunner, pretrained_backbone
from veil.vision.classify import TrainingCancelled
from veil.vision.data import (
    EvaluationPlan,
    InvalidDataset,
    LabeledBox,
    NotEnoughData,
    Sample,
    check_minimum_images,
    plan_evaluation,
    stratified_folds,
    to_normalized_ltwh,
    to_pixel_xyxy,
)
from veil.vision.dp import PrivacyBudget, PrivacyReport, PrivacySpent
from veil.vision.export import ModelCard, add_metadata, export_onnx, make_bundle
from veil.vision.metrics import Evaluation, ImageResult, Performance, ScoredBox, performance
from veil.vision.plots import pr_curve_png, training_curve_png
from veil.vision.runtime import ExportedModel, ModelInfo, load_model
from veil.vision.variants import (
    DEFAULT_DETECTION_BACKBONE,
    DEFAULT_PRIVATE_DETECTION_BACKBONE,
    DEFAULT_VARIANT,
    backbone_named,
    variant_named,
)

__all__ = [
    "InvalidDataset",
    "LabeledBox",
    "NotEnoughData",
    "Sample",
    "TrainProgress",
    "TrainRequest",
    "TrainResult",
    "TrainingCancelled",
    "train",
]

TASKS = ("classify", "multilabel", "detect")
MIN_IMAGES = {"classify": 5, "multilabel": 5, "detect": 15}
REGULAR_DETECTION_MINUTES = 3.0
DEFAULT_ADVANCED_MINUTES = 10.0
# Classification embeds each image once, so the larger Lite2 costs seconds and buys accuracy (ants/bees:
# 0.967 vs Lite0's 0.948; re-checked by cross-validation on the train split: within noise of the best) while
# serving stays under 15 ms. Detection starts from the COCO-pretrained `yolox-nano`
# (variants.DEFAULT_DETECTION_BACKBONE; private detection keeps Lite0 FCOS unless asked otherwise).
DEFAULT_BACKBONE = {
    "classify": "efficientnet-lite2",
    "multilabel": "efficientnet-lite2",
    "detect": DEFAULT_DETECTION_BACKBONE,
}
DETECTION_SCORE_FLOOR = 0.05
DETECTION_KFOLD_BELOW = 40  # fewer images: a 20 % holdout would score fewer than 8
DETECTION_FOLDS = 3  # held-out boxes kept down to this score so AP covers the whole PR curve


@dataclass
class TrainRequest:
    """What to train. `input_size` (multiple of 32) defaults to 224 (classification) / 256 (detection).
    `test_keys` fixes the held-out images (e.g. a benchmark's test split); otherwise the split is stratified."""

    task: str
    samples: list[Sample]
    advanced: bool = False
    budget_minutes: float | None = None
    seed: int = 0
    selected_tags: list[str] | None = None
    negative_tag: str | None = None
    backbone: str | None = (
        None  # efficientnet-lite0|1|2, yolox-nano (detect); None: the task's default (DEFAULT_BACKBONE; DP: lite0)
    )
    input_size: int | None = None
    name: str = "veil-model"
    threads: int | None = None
    test_keys: list[str] | None = None  # evaluate on exactly these images (a fixed test set) instead of a split
    privacy: PrivacyBudget | None = None  # differential privacy (veil.vision.dp); None: not private
    # Tests and benchmarks only: train each detector for exactly this many optimizer steps (split like the time
    # budget across cross-validation folds) instead of by the clock, so results do not depend on machine load.
    max_steps: int | None = None
    audit: bool = True  # membership-inference audit of the iteration (veil.vision.membership)


@dataclass(frozen=True)
class TrainProgress:
    stage: str
    percent: float
    eta_seconds: float | None


@dataclass
class TrainResult:
    onnx: bytes
    bundle: bytes
    info: ModelInfo
    labels: list[str]
    evaluation: Evaluation
    performance: Performance
    pr_curves: dict[str, bytes]
    model_card: ModelCard
    training_curve: bytes | None = None
    seconds: float = 0.0
    settings: dict[str, object] = field(default_factory=dict)
    privacy: PrivacyReport | None = None  # ε spent (if private) and the membership audit

    @property
    def per_image(self) -> list[ImageResult]:
        return self.evaluation.images


ProgressCallback = Callable[[TrainProgress], None]


class _Reporter:
    """Maps stage-local fractions onto one 0–100 % bar and estimates the remaining time from the elapsed time."""

    def __init__(self, callback: ProgressCallback | None, stages: dict[str, tuple[float, float]]) -> None:
        self.callback, self.stages, self.started = callback, stages, time.monotonic()

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.callback:
            return
        low, high = self.stages[stage]
        percent = 100.0 * (low + (high - low) * min(max(fraction, 0.0), 1.0))
        elapsed = time.monotonic() - self.started
        eta = elapsed * (100.0 - percent) / percent if percent >= 1.0 else None
        self.callback(TrainProgress(stage, round(percent, 1), None if eta is None else round(eta, 1)))


def _labels_for(request: TrainRequest) -> list[str]:
    present = sorted({tag for sample in request.samples for tag in sample.tags()} - {request.negative_tag})
    if request.selected_tags:
        missing = [tag for tag in request.selected_tags if tag not in present]
        if missing:
            raise NotEnoughData(missing[0], 0, MIN_IMAGES[request.task], request.task)
        present = [tag for tag in present if tag in request.selected_tags]
    if request.task == "classify" and len(present) + (1 if _has_negative(request) else 0) < 2:
        raise InvalidDataset("classification needs at least 2 tags (or one tag and Negative images)")
    if not present:
        raise InvalidDataset("no tagged images to train on")
    return present


def _has_negative(request: TrainRequest) -> bool:
    return request.negative_tag is not None and any(request.negative_tag in s.labels for s in request.samples)


def _backbone(request: TrainRequest) -> str:
    """The backbone's full name: the request's, else the task's default (private detection: its own)."""
    default = DEFAULT_BACKBONE.get(request.task, DEFAULT_VARIANT)
    if request.privacy is not None and request.task == "detect":
        default = DEFAULT_PRIVATE_DETECTION_BACKBONE
    return backbone_named(request.backbone or default, request.task)


def _validate(request: TrainRequest, labels: list[str]) -> list[Sample]:
    if request.task not in TASKS:
        raise InvalidDataset(f"unknown task {request.task!r}; expected one of {', '.join(TASKS)}")
    try:
        _backbone(request)
    except ValueError as exc:
        raise InvalidDataset(str(exc)) from None
    size = request.input_size
    if size is not None and (size < 64 or size % 32):
        raise InvalidDataset(f"input size {size} must be a multiple of 32 and at least 64")
    keep = set(labels) | ({request.negative_tag} if request.negative_tag else set())
    samples = []
    for sample in request.samples:
        if request.negative_tag in sample.labels and len(sample.labels) > 1:
            raise InvalidDataset(f"image {sample.key!r} is tagged {request.negative_tag!r} and also other tags")
        if request.task == "classify" and len([t for t in sample.labels if t in keep]) > 1:
            raise InvalidDataset(f"image {sample.key!r} has {len(sample.labels)} tags; multiclass needs exactly one")
        for box in sample.boxes:
            if not (0 <= box.left <= 1 and 0 <= box.top <= 1 and box.width > 0 and box.height > 0):
                raise InvalidDataset(f"image {sample.key!r} has a region outside 0..1: {box}")
        if request.task == "detect":
            boxes = [box for box in sample.boxes if box.tag in keep]
            if boxes or request.negative_tag in sample.labels:
                samples.append(Sample(sample.key, sample.image, list(sample.labels), boxes))
        elif any(tag in keep for tag in sample.labels):
            samples.append(Sample(sample.key, sample.image, [t for t in sample.labels if t in keep], []))
    check_minimum_images(
        samples, labels, MIN_IMAGES[request.task], "detection" if request.task == "detect" else "classification"
    )
    return samples


def _training_threads() -> int:
    """All cores on a quiet machine; one thread when the cores are already busy, where PyTorch's OpenMP
    barriers otherwise wait on descheduled threads (measured 4× slower per step than a single thread)."""
    cores = os.cpu_count() or 1
    return 1 if os.getloadavg()[0] >= cores else cores


def train(
    request: TrainRequest,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train, evaluate on unseen images, export. Raises NotEnoughData / InvalidDataset / TrainingCancelled."""
    started = time.monotonic()
    labels = _labels_for(request)
    samples = _validate(request, labels)
    if request.privacy:
        request.privacy.validate(request.task, request.advanced, len(samples), _backbone(request))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(request.threads or _training_threads())
    try:
        if request.task == "detect":
            result = _train_detection(request, samples, labels, progress, should_cancel)
        elif request.advanced:
            result = _train_classification_advanced(request, samples, labels, progress, should_cancel)
        else:
            result = _train_classification_regular(request, samples, labels, progress, should_cancel)
    finally:
        torch.set_num_threads(previous_threads)
    result.seconds = time.monotonic() - started
    result.model_card.training["wall_seconds"] = round(result.seconds, 1)
    result.bundle = make_bundle(result.onnx, result.model_card)
    return result


# ---------------------------------------------------------------- classification


def _class_names(request: TrainRequest, labels: list[str]) -> list[str]:
    """Output classes: the tags, plus the Negative tag as a class of its own in multiclass."""
    if request.task == "classify" and _has_negative(request):
        assert request.negative_tag is not None
        return [*labels, request.negative_tag]
    return labels


def _targets(request: TrainRequest, samples: Sequence[Sample], classes: list[str]) -> np.ndarray:
    if request.task == "multilabel":
        return np.array([[1.0 if c in s.labels else 0.0 for c in classes] for s in samples], dtype=np.float32)
    return np.array([classes.index(s.labels[0]) for s in samples], dtype=np.int64)


def _classifier_info(request: TrainRequest, classes: list[str]) -> ModelInfo:
    size = request.input_size or variant_named(_backbone(request)).native_size
    return ModelInfo(
        task=request.task,
        labels=classes,
        input_width=size,
        input_height=size,
        resize_mode="stretch",
        mean=MEAN,
        std=STD,
        version=veil.__version__,
    )


def _classification_result(image: Sample, fold: int, classes: list[str], row: np.ndarray) -> ImageResult:
    return ImageResult(
        key=image.key,
        fold=fold,
        true_labels=list(image.labels),
        probabilities={tag: float(p) for tag, p in zip(classes, row, strict=True)},
    )


def _train_classification_regular(
    request: TrainRequest,
    samples: list[Sample],
    labels: list[str],
    progress: ProgressCallback | None,
    should_cancel: Callable[[], bool] | None,
) -> TrainResult:
    from veil.vision.dp_train import LinearHead

    stages = {"features": (0.0, 0.75), "fitting": (0.75, 0.87), "audit": (0.87, 0.97), "export": (0.97, 1.0)}
    report = _Reporter(progress, stages)
    classes = _class_names(request, labels)
    info = _classifier_info(request, classes)
    multilabel = request.task == "multilabel"
    backbone = pretrained_backbone(_backbone(request))
    report("features", 0.0)
    runner = FrozenRunner(backbone, info.input_height, info.input_width)
    embeddings = classify.embed(
        runner, [s.rgb for s in samples], info, lambda done: report("features", done / len(samples)), should_cancel
    )
    targets = _targets(request, samples, classes)
    plan = _plan(request, samples, kfold_below=60)
    head = LinearHead(embeddings, targets, multilabel, len(classes), request.privacy, request.seed, should_cancel)
    results: list[ImageResult] = []
    audited: list[membership.AuditTarget] = []
    for fold, held_out in enumerate(plan.folds):
        if should_cancel and should_cancel():
            raise TrainingCancelled("training cancelled")
        train_idx = plan.train_indices(fold, len(samples))
        layer = head.fit(train_idx)
        rows = head.probabilities(layer, held_out)
        results.extend(
            _classification_result(samples[i], fold, classes, row) for i, row in zip(held_out, rows, strict=True)
        )
        audited.append(membership.AuditTarget(head.logits(layer), train_idx, held_out))
        report("fitting", (fold + 1) / len(plan.folds))
    final = head.fit(range(len(samples)))
    audit = None
    if request.audit:
        # The delivered model trained on every image, so it has no non-members: the audit attacks the evaluation
        # models (the same procedure without the held-out images), with reference models of that procedure.
        audit = membership.audit(
            audited,
            targets,
            multilabel,
            head.reference_logits,
            seed=request.seed,
            on_progress=lambda fraction: report("audit", fraction),
            should_cancel=should_cancel,
        )
    network = classify.ClassifierNetwork(backbone, len(classes), multilabel, normalize=head.normalize)
    network.head.load_state_dict(final.state_dict())
    report("export", 0.0)
    onnx_bytes = export_onnx(network, info, ["probabilities"])
    evaluation = Evaluation(request.task, plan.method, classes, results, request.negative_tag)
    method = f"frozen {_backbone(request)} features (image + mirror) + L-BFGS logistic regression"
    if head.spent:
        method = f"frozen {_backbone(request)} features (image + mirror, L2-normalized) + DP-SGD logistic regression"
    settings = {"mode": "regular", "method": method, "input_size": info.input_width, "seed": request.seed}
    privacy = PrivacyReport(head.spent, audit)
    result = _finish(request, samples, onnx_bytes, info, evaluation, settings, privacy)
    report("export", 1.0)
    return result


def _plan(request: TrainRequest, samples: list[Sample], kfold_below: int, folds: int = 5) -> EvaluationPlan:
    """The held-out images: the request's fixed test set, else a stratified split (k-fold when few)."""
    if request.test_keys:
        wanted = set(request.test_keys)
        held_out = [i for i, s in enumerate(samples) if s.key in wanted]
        if not held_out or len(held_out) == len(samples):
            raise InvalidDataset("test_keys must name some, but not all, of the training images")
        return EvaluationPlan("holdout", [held_out])
    return plan_evaluation(samples, request.seed, kfold_below=kfold_below, k=folds)


def _budget_seconds(request: TrainRequest, regular_minutes: float) -> float:
    if request.budget_minutes is not None:
        if request.budget_minutes <= 0:
            raise InvalidDataset(f"training budget must be positive, got {request.budget_minutes} minutes")
        return request.budget_minutes * 60.0
    return (DEFAULT_ADVANCED_MINUTES if request.advanced else regular_minutes) * 60.0


def _train_classification_advanced(
    request: TrainRequest,
    samples: list[Sample],
    labels: list[str],
    progress: ProgressCallback | None,
    should_cancel: Callable[[], bool] | None,
) -> TrainResult:
    if request.privacy is not None:
        return _train_classification_advanced_dp(request, request.privacy, samples, labels, progress, should_cancel)
    stages = {"loading": (0.0, 0.05), "fine-tuning": (0.05, 0.85), "export": (0.85, 0.88), "audit": (0.88, 1.0)}
    report = _Reporter(progress, stages)
    classes = _class_names(request, labels)
    info = _classifier_info(request, classes)
    multilabel = request.task == "multilabel"
    plan = _plan(request, samples, kfold_below=0)
    held_out = plan.folds[0]
    training = plan.train_indices(0, len(samples))
    inner = stratified_folds([samples[i] for i in training], 5, request.seed + 1)[0]
    validation_idx = [training[i] for i in inner]
    fit_idx = [i for i in training if i not in set(validation_idx)]
    report("loading", 0.0)
    images = [_downsized(s.rgb(), info.input_width) for s in samples]
    targets = _targets(request, samples, classes)
    network = classify.ClassifierNetwork(pretrained_backbone(_backbone(request)), len(classes), multilabel)
    history = classify.fine_tune(
        network,
        [images[i] for i in fit_idx],
        targets[fit_idx],
        [images[i] for i in validation_idx],
        targets[validation_idx],
        info,
        _budget_seconds(request, DEFAULT_ADVANCED_MINUTES),
        request.seed,
        lambda fraction: report("fine-tuning", fraction),
        should_cancel,
    )
    report("export", 0.0)
    onnx_bytes = export_onnx(network, info, ["probabilities"])
    model = load_model(onnx_bytes)
    rows = model.probabilities([images[i] for i in held_out])
    results = [_classification_result(samples[i], 0, classes, row) for i, row in zip(held_out, rows, strict=True)]
    evaluation = Evaluation(request.task, plan.method, classes, results, request.negative_tag)
    settings = {
        "mode": "advanced",
        "method": f"fine-tuned {_backbone(request)} (AdamW, crops/flips/colour jitter)",
        "input_size": info.input_width,
        "seed": request.seed,
        "epochs": len(history.epochs),
        "best_epoch": history.best_epoch,
        "stopped": history.stopped_because,
        "budget_minutes": round(_budget_seconds(request, DEFAULT_ADVANCED_MINUTES) / 60, 2),
    }
    report("export", 1.0)
    audit = None
    if request.audit:
        audit = _audit_fine_tuned(request, model, images, targets, fit_idx, held_out, info, report, should_cancel)
    result = _finish(request, samples, onnx_bytes, info, evaluation, settings, PrivacyReport(None, audit))
    result.training_curve = training_curve_png(history.epochs, history.train_loss, history.validation_score, "accuracy")
    report("audit", 1.0)
    return result


def _train_classification_advanced_dp(
    request: TrainRequest,
    budget: PrivacyBudget,
    samples: list[Sample],
    labels: list[str],
    progress: ProgressCallback | None,
    should_cancel: Callable[[], bool] | None,
) -> TrainResult:
    """Advanced classification with differential privacy (veil.vision.dp_train.fine_tune_dp) on every
    non-held-out image for a fixed number of epochs: by default the DP head on the network's embeddings with every
    convolution frozen (DP fine-tuning of the last stage, batch norms folded, is `train_convolutions`; it was
    measured worse at tens of images per class, see DPFineTuneSettings)."""
    from veil.vision.backbone import fuse_batch_norm
    from veil.vision.dp_train import fine_tune_dp

    stages = {"loading": (0.0, 0.1), "fine-tuning": (0.1, 0.85), "export": (0.85, 0.88), "audit": (0.88, 1.0)}
    report = _Reporter(progress, stages)
    classes = _class_names(request, labels)
    info = _classifier_info(request, classes)
    multilabel = request.task == "multilabel"
    plan = _plan(request, samples, kfold_below=0)
    held_out = plan.folds[0]
    training = plan.train_indices(0, len(samples))
    report("loading", 0.0)
    images = [_downsized(s.rgb(), info.input_width) for s in samples]
    targets = _targets(request, samples, classes)
    network = classify.ClassifierNetwork(
        fuse_batch_norm(pretrained_backbone(_backbone(request)).eval()), len(classes), multilabel, normalize=True
    )
    _zero_head(network)
    spent = fine_tune_dp(
        network,
        [images[i] for i in training],
        targets[training],
        info,
        budget,
        budget.delta_for(len(samples)),
        request.seed,
        on_step=lambda fraction: report("fine-tuning", fraction),
        should_cancel=should_cancel,
    )
    report("export", 0.0)
    onnx_bytes = export_onnx(network, info, ["probabilities"])
    model = load_model(onnx_bytes)
    rows = model.probabilities([images[i] for i in held_out])
    results = [_classification_result(samples[i], 0, classes, row) for i, row in zip(held_out, rows, strict=True)]
    evaluation = Evaluation(request.task, plan.method, classes, results, request.negative_tag)
    settings = {
        "mode": "advanced",
        "method": f"{_backbone(request)} at {info.input_width} px, DP-SGD linear layer on its L2-normalized "
        "embeddings of image + mirror (convolutions frozen: DP fine-tuning of the last stage measured worse, "
        "veil.vision.dp_train.DPFineTuneSettings)",
        "input_size": info.input_width,
        "seed": request.seed,
        "epochs": spent.epochs,
    }
    report("export", 1.0)
    audit = None
    if request.audit:
        audit = _audit_fine_tuned(request, model, images, targets, training, held_out, info, report, should_cancel)
    result = _finish(request, samples, onnx_bytes, info, evaluation, settings, PrivacyReport(spent, audit))
    report("audit", 1.0)
    return result


def _zero_head(network: classify.ClassifierNetwork) -> None:
    """A zero linear layer: DP-SGD starts from "no opinion" (a random head would add noise of its own)."""
    import torch

    with torch.no_grad():
        network.head.weight.zero_()
        network.head.bias.zero_()


def _audit_fine_tuned(
    request: TrainRequest,
    model: ExportedModel,
    images: list[np.ndarray],
    targets: np.ndarray,
    members: list[int],
    non_members: list[int],
    info: ModelInfo,
    report: _Reporter,
    should_cancel: Callable[[], bool] | None,
) -> membership.AuditReport:
    """Attack the delivered fine-tuned model: members = the images it trained on, non-members = the held-out ones
    (the early-stopping images are neither). Fine-tuning reference models would cost minutes each, so the
    calibrated attack uses linear heads on the frozen backbone as cheaper proxies ("offline" calibration)."""
    from veil.vision.dp_train import LinearHead

    multilabel = request.task == "multilabel"
    scored = np.concatenate([model.probabilities(images[i : i + 32]) for i in range(0, len(images), 32)])
    probabilities = np.clip(scored.astype(np.float64), 1e-12, 1 - 1e-12)
    # logits that give back these probabilities: log p (softmax is shift-invariant), log-odds for sigmoids
    logits = np.log(probabilities) - (np.log1p(-probabilities) if multilabel else 0.0)
    report("audit", 0.2)
    runner = FrozenRunner(pretrained_backbone(_backbone(request)), info.input_height, info.input_width)
    loaders = [functools.partial(np.asarray, rgb) for rgb in images]
    embeddings = classify.embed(runner, loaders, info, should_cancel=should_cancel)
    report("audit", 0.5)
    classes = len(info.labels)
    proxies = LinearHead(embeddings, targets, multilabel, classes, None, request.seed, should_cancel)
    return membership.audit(
        [membership.AuditTarget(logits, members, non_members)],
        targets,
        multilabel,
        proxies.reference_logits,
        calibration="offline",
        seed=request.seed,
        on_progress=lambda fraction: report("audit", 0.5 + 0.5 * fraction),
        should_cancel=should_cancel,
    )


def _downsized(rgb: np.ndarray, input_size: int) -> np.ndarray:
    """Keep images in memory at about 1.5× the input size (fine-tuning crops from them)."""
    import cv2

    scale = input_size * 1.5 / min(rgb.shape[:2])
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------- detection


def _detection_item(
    sample: Sample, classes: list[str], input_size: int
) -> tuple[detect.DetectionItem, tuple[int, int]]:
    rgb = sample.rgb()
    height, width = rgb.shape[:2]
    boxes = np.array([to_pixel_xyxy(b, width, height) for b in sample.boxes], dtype=np.float32).reshape(-1, 4)
    ids = np.array([classes.index(b.tag) for b in sample.boxes], dtype=np.int64)
    small, scaled = detect.shrink_for_training(rgb, boxes, input_size)
    return detect.DetectionItem(small, scaled, ids), (width, height)


def _train_detection(
    request: TrainRequest,
    samples: list[Sample],
    labels: list[str],
    progress: ProgressCallback | None,
    should_cancel: Callable[[], bool] | None,
) -> TrainResult:
    """Below `DETECTION_KFOLD_BELOW` images: k-fold cross-validation, then the delivered model on every image;
    else one stratified holdout and the model trained without it is the one delivered."""
    size = request.input_size or 256
    yolox = _backbone(request) == "yolox-nano"
    info = ModelInfo(
        task="detect",
        labels=labels,
        input_width=size,
        input_height=size,
        resize_mode="letterbox",
        # YOLOX was trained on BGR 0-255 pixels, not normalized
        mean=(0.0, 0.0, 0.0) if yolox else MEAN,
        std=(1.0, 1.0, 1.0) if yolox else STD,
        channel_order="BGR" if yolox else "RGB",
        version=veil.__version__,
        default_threshold=0.3,
        nms_iou=0.5,
    )
    plan = _plan(request, samples, kfold_below=DETECTION_KFOLD_BELOW, folds=DETECTION_FOLDS)
    kfold = plan.method.startswith("kfold")
    stages = {"loading": (0.0, 0.05), "training": (0.05, 0.88), "evaluating": (0.88, 0.94), "audit": (0.94, 1.0)}
    if kfold:
        stages = {
            "loading": (0.0, 0.05),
            "cross-validation": (0.05, 0.5),
            "training": (0.5, 0.92),
            "export": (0.92, 0.93),
            "audit": (0.93, 1.0),
        }
    report = _Reporter(progress, stages)
    items = []
    for count, sample in enumerate(samples):
        items.append(_detection_item(sample, labels, size)[0])
        report("loading", (count + 1) / len(samples))
    budget = _detection_budget(request)
    # δ from every image, so the fold models and the delivered one share one setting (as classification)
    delta = request.privacy.delta_for(len(samples)) if request.privacy else None
    results: list[ImageResult] = []
    # the audited detectors with their members, non-members and steps taken: the fold models (the delivered one,
    # trained on every image, has no non-members), or the delivered model trained without the held-out split
    audited: list[tuple[bytes, list[int], list[int], int]] = []
    if kfold:
        # Few images: every image is scored by a model that never saw it. Half the budget goes to the fold
        # models, half to the delivered one trained on everything (measured on Penn-Fudan, 30 images: the
        # delivered model beats one trained on 80 % for the whole budget, and fold models score a little lower
        # than it, so the estimate errs on the modest side).
        share = budget.share(1 / 2 / len(plan.folds))
        for fold, held_out in enumerate(plan.folds):
            train_idx = plan.train_indices(fold, len(samples))

            def on_fold(fraction: float, fold: int = fold) -> None:
                report("cross-validation", (fold + fraction) / len(plan.folds))

            fold_onnx, fold_history, _ = _fit_detector(
                request, [items[i] for i in train_idx], info, share, fold, on_fold, should_cancel, delta
            )
            results.extend(_score_held_out(fold_onnx, samples, held_out, fold, should_cancel))
            audited.append((fold_onnx, train_idx, list(held_out), fold_history.iterations))
        onnx_bytes, history, spent = _fit_detector(
            request, items, info, budget.share(1 / 2), 0, lambda f: report("training", f), should_cancel, delta
        )
        report("export", 1.0)
    else:
        held_out = plan.folds[0]
        train_idx = plan.train_indices(0, len(samples))
        onnx_bytes, history, spent = _fit_detector(
            request,
            [items[i] for i in train_idx],
            info,
            budget,
            0,
            lambda f: report("training", f),
            should_cancel,
            delta,
        )
        report("evaluating", 0.0)
        results = _score_held_out(onnx_bytes, samples, held_out, 0, should_cancel, lambda f: report("evaluating", f))
        audited.append((onnx_bytes, list(train_idx), list(held_out), history.iterations))
    evaluation = Evaluation("detect", plan.method, labels, results, request.negative_tag)
    settings = {
        "mode": "advanced" if request.advanced else "regular",
        "method": (
            "COCO-pretrained YOLOX-Nano, class head started from the closest COCO class, pretrained weights at "
            f"{_yolox_lr_factor()} × its learning rate, SimOTA loss (flip, scale and colour jitter)"
            if yolox
            else f"{_backbone(request)} + FPN P3-P7 + FCOS head (flip, scale and colour jitter)"
        ),
        "input_size": size,
        "seed": request.seed,
        "budget_minutes": round(budget.seconds / 60, 2),
        "iterations": history.iterations,
        "epochs": len(history.epochs),
    }
    if budget.steps is not None:
        settings["max_steps"] = budget.steps
    if spent is not None:
        # DP calibrates its noise for a step count fixed up front: it trains by steps, not by the clock
        settings["method"] = (
            "COCO-pretrained YOLOX-Nano (frozen), its 1×1 class and objectness convolutions trained by DP-SGD, "
            "class rows from the COCO class chosen by report-noisy-max, per-image loss with SimOTA targets fixed "
            "by the frozen network "
            f"({spent.steps} steps, {spent.epochs:g} epochs over fixed flip/scale/colour views; "
            "veil.vision.dp_yolox.DPYoloxSettings)"
            if yolox
            else f"{_backbone(request)} (frozen, ImageNet) + FPN P3-P7 + FCOS head trained by DP-SGD, per-image loss "
            f"({spent.steps} steps, {spent.epochs:g} epochs over fixed flip/scale/colour views; "
            "veil.vision.dp_detect.DPDetectionSettings)"
        )
        settings.pop("budget_minutes")
    if kfold:
        settings["evaluation"] = (
            f"{len(plan.folds)}-fold cross-validation, each fold model trained for "
            f"{_describe(budget.share(1 / 2 / len(plan.folds)))}; the delivered model trained on every image for "
            f"{_describe(budget.share(1 / 2))}"
        )
        if spent is not None and budget.steps is None:
            settings["evaluation"] = (
                f"{len(plan.folds)}-fold cross-validation, each fold model trained by the same DP-SGD procedure on "
                "its images; the delivered model on every image"
            )
    audit = None
    if request.audit:
        audit = _audit_detectors(
            audited, samples, items, info, _backbone(request), request.seed, lambda f: report("audit", f), should_cancel
        )
    result = _finish(request, samples, onnx_bytes, info, evaluation, settings, PrivacyReport(spent, audit))
    report("audit", 1.0)
    if history.epochs:
        result.training_curve = training_curve_png(history.epochs, history.train_loss, history.train_loss, "loss")
    return result


def _audit_detectors(
    audited: list[tuple[bytes, list[int], list[int], int]],
    samples: list[Sample],
    items: list[detect.DetectionItem],
    info: ModelInfo,
    backbone: str,
    seed: int,
    on_fraction: Callable[[float], None],
    should_cancel: Callable[[], bool] | None,
) -> membership.AuditReport:
    """The membership audit of detectors: each audited model (exported, as served) scores its members and
    non-members by `membership.detection_fit` (the loss-threshold attack); proxy reference detectors
    (`veil.vision.detection_audit`), trained for no more steps than the audited ones, calibrate it."""
    from veil.vision import detection_audit

    started = time.monotonic()
    targets = []
    scoring_share = 0.3  # of the audit's progress; the reference detectors take the rest
    for number, (onnx_bytes, members, non_members, _) in enumerate(audited):
        model = load_model(onnx_bytes)
        fit = np.zeros(len(samples))
        chosen = [*members, *non_members]
        for count, index in enumerate(chosen):
            if should_cancel and should_cancel():
                raise TrainingCancelled("training cancelled")
            fit[index] = _detection_fit(model, samples[index])
            on_fraction(scoring_share * (number + (count + 1) / len(chosen)) / len(audited))
        targets.append(membership.ScoredTarget(fit, members, non_members))
    images = detection_audit.calibration_images(
        [i for _, members, _, _ in audited for i in members],
        [i for _, _, non_members, _ in audited for i in non_members],
        seed,
    )
    references = detection_audit.reference_fits(
        items,
        info,
        backbone,
        images,
        min(detection_audit.REFERENCE_STEPS, *(max(1, steps) for *_, steps in audited)),
        seed + 1,
        on_progress=lambda f: on_fraction(scoring_share + (1 - scoring_share) * f),
        should_cancel=should_cancel,
    )
    return membership.audit_detection(targets, seed, started, references)


def _detection_fit(model: ExportedModel, sample: Sample) -> float:
    rgb = sample.rgb()
    height, width = rgb.shape[:2]
    truth = np.array([to_pixel_xyxy(b, width, height) for b in sample.boxes], dtype=np.float64).reshape(-1, 4)
    detections = model.detect(rgb, threshold=DETECTION_SCORE_FLOOR)
    names = [str(name) for name in detections.data.get("class_name", [])]
    return membership.detection_fit(
        truth, [b.tag for b in sample.boxes], np.asarray(detections.xyxy), np.asarray(detections.confidence), names
    )


def _yolox_lr_factor() -> float:
    """The rate of YOLOX-Nano's pretrained weights relative to its class head (imported late: onnx2torch)."""
    from veil.vision.yolox import PRETRAINED_LR_FACTOR

    return PRETRAINED_LR_FACTOR


def _detection_budget(request: TrainRequest) -> detect.TrainingBudget:
    seconds = _budget_seconds(request, REGULAR_DETECTION_MINUTES)
    if request.max_steps is not None and request.max_steps < 1:
        raise InvalidDataset(f"max_steps must be at least 1, got {request.max_steps}")
    return detect.TrainingBudget(seconds, request.max_steps)


def _describe(budget: detect.TrainingBudget) -> str:
    return f"{budget.steps} steps" if budget.steps is not None else f"{budget.seconds / 60:.2f} min"


def _fit_detector(
    request: TrainRequest,
    items: list[detect.DetectionItem],
    info: ModelInfo,
    budget: detect.TrainingBudget,
    seed_offset: int,
    on_fraction: Callable[[float], None],
    should_cancel: Callable[[], bool] | None,
    delta: float | None = None,
) -> tuple[bytes, detect.DetectionHistory, PrivacySpent | None]:
    """Train one detector on `items` within `budget`; its exported ONNX graph (what gets scored and served).
    With `request.privacy`, DP-SGD on the FPN + head (`veil.vision.dp_detect`), or on YOLOX-Nano's 1×1 class and
    objectness convolutions (`veil.vision.dp_yolox`), at `delta`: the graph, the history and what was spent."""
    seed = request.seed + seed_offset
    torch.manual_seed(seed)
    privacy = request.privacy
    if _backbone(request) == "yolox-nano":
        from veil.vision import yolox

        spent = None
        if privacy is not None:
            from veil.vision.dp_yolox import train_yolox_dp

            net, history, spent = train_yolox_dp(
                items,
                info,
                privacy,
                privacy.delta_for(len(items)) if delta is None else delta,
                seed,
                steps=budget.steps,
                on_progress=on_fraction,
                should_cancel=should_cancel,
            )
        else:
            net = yolox.pretrained_yolox_nano(len(info.labels), items, info)
            history = yolox.train_yolox(net, items, info, budget, seed, on_fraction, should_cancel)
        export = yolox.YoloxExport(net, info.input_height, info.input_width)
        return export_onnx(export, info, ["boxes", "scores"]), history, spent
    detector = detect.build_detector(pretrained_backbone(_backbone(request)), len(info.labels), info.input_width)
    spent = None
    if privacy is not None:
        from veil.vision.dp_detect import train_detector_dp

        history, spent = train_detector_dp(
            detector,
            items,
            info,
            privacy,
            privacy.delta_for(len(items)) if delta is None else delta,
            seed,
            steps=budget.steps,
            on_progress=on_fraction,
            should_cancel=should_cancel,
        )
    else:
        history = detect.train_detector(detector, items, info, budget, seed, on_fraction, should_cancel)
    onnx_bytes = export_onnx(detect.DetectorExport(detector, info.input_width), info, ["boxes", "scores"])
    return onnx_bytes, history, spent


def _score_held_out(
    onnx_bytes: bytes,
    samples: list[Sample],
    held_out: Sequence[int],
    fold: int,
    should_cancel: Callable[[], bool] | None,
    on_fraction: Callable[[float], None] | None = None,
) -> list[ImageResult]:
    model = load_model(onnx_bytes)
    results = []
    for count, index in enumerate(held_out):
        if should_cancel and should_cancel():
            raise TrainingCancelled("training cancelled")
        results.append(_detection_result(model, samples[index], fold))
        if on_fraction:
            on_fraction((count + 1) / len(held_out))
    return results


def _detection_result(model: object, sample: Sample, fold: int) -> ImageResult:
    """Run the exported model (the served code path) on a held-out image; keep boxes down to the score floor."""
    from veil.vision.runtime import ExportedModel

    assert isinstance(model, ExportedModel)
    rgb = sample.rgb()
    height, width = rgb.shape[:2]
    detections = model.detect(rgb, threshold=DETECTION_SCORE_FLOOR)
    names = detections.data.get("class_name", [])
    predicted = [
        ScoredBox(str(name), float(score), *to_normalized_ltwh(xyxy, width, height))
        for xyxy, score, name in zip(detections.xyxy, detections.confidence, names, strict=True)  # type: ignore[arg-type]
    ]
    return ImageResult(
        key=sample.key, fold=fold, true_labels=sample.tags(), true_boxes=list(sample.boxes), predicted_boxes=predicted
    )


# ---------------------------------------------------------------- shared


def _finish(
    request: TrainRequest,
    samples: list[Sample],
    onnx_bytes: bytes,
    info: ModelInfo,
    evaluation: Evaluation,
    settings: Mapping[str, object],
    privacy: PrivacyReport | None = None,
) -> TrainResult:
    summary = performance(evaluation, 0.5, 0.5)
    counts = Counter(tag for sample in samples for tag in sample.tags())
    metrics: dict[str, object] = {
        "precision@0.5": summary.precision,
        "recall@0.5": summary.recall,
        "mAP" if request.task == "detect" else "mean average precision": summary.mean_average_precision,
        "held_out_images": summary.held_out_images,
    }
    for tag in summary.per_tag:
        metrics[f"AP {tag.tag}"] = tag.average_precision
    card = ModelCard(
        name=request.name,
        task=request.task,
        labels=info.labels,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        veil_version=veil.__version__,
        image_counts=dict(counts),
        total_images=len(samples),
        evaluation_method=evaluation.method,
        metrics=metrics,
        training={**settings, "backbone": _backbone(request)},
        privacy=privacy.to_dict() if privacy else {},
        preprocessing={
            "input": f"{info.input_width}x{info.input_height}",
            "resize": info.resize_mode,
            "mean": list(info.mean),
            "std": list(info.std),
            "channels": info.channel_order,
        },
    )
    curves = {tag.tag: pr_curve_png(evaluation, tag.tag, 0.5, tag.average_precision) for tag in summary.per_tag}
    if privacy:
        onnx_bytes = add_metadata(onnx_bytes, {"veil.privacy": json.dumps(privacy.summary(), sort_keys=True)})
    return TrainResult(
        onnx=onnx_bytes,
        bundle=b"",
        info=info,
        labels=info.labels,
        evaluation=evaluation,
        performance=summary,
        pr_curves=curves,
        model_card=card,
        settings=dict(settings),
        privacy=privacy,
    )
