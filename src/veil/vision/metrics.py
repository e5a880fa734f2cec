"""Honest metrics from held-out predictions, recomputable at any threshold. numpy only — no torch.

Training keeps, for every image the model did NOT train on, its ground truth and the model's raw answer
(`Evaluation`: all tag probabilities, or every box above a low floor). `performance(evaluation, threshold,
overlap_threshold)` turns that into Custom Vision's numbers on request, so the API can answer
`GET .../performance?threshold=0.7&overlapThreshold=0.5` without retraining:

- per tag: precision and recall at `threshold`, average precision (area under the precision/recall curve over
  all thresholds; detection: a prediction is correct when its IoU with an unmatched ground-truth box of the same
  tag is ≥ `overlap_threshold`, VOC all-point interpolation);
- overall: micro-averaged precision and recall, mean average precision over tags (mAP@overlap);
- standard deviations: over the folds for k-fold cross-validation ("folds"), or over 100 seeded bootstrap
  resamples of the held-out images for a single held-out split ("bootstrap"); `Performance.std_method` says which.

A Negative tag (Custom Vision: "none of the tags") is not scored as a tag of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from veil.vision.data import LabeledBox

BOOTSTRAP_RESAMPLES = 100


@dataclass(frozen=True)
class ScoredBox:
    """A predicted region: tag, probability and normalized left/top/width/height."""

    tag: str
    probability: float
    left: float
    top: float
    width: float
    height: float


@dataclass
class ImageResult:
    """One held-out image: ground truth and the raw prediction of the model that did not see it."""

    key: str
    fold: int
    true_labels: list[str] = field(default_factory=list)
    true_boxes: list[LabeledBox] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)
    predicted_boxes: list[ScoredBox] = field(default_factory=list)


@dataclass
class Evaluation:
    """Held-out predictions of one training run. `method` is "holdout" or "kfold:k"."""

    task: str
    method: str
    labels: list[str]
    images: list[ImageResult]
    negative_tag: str | None = None

    @property
    def scored_labels(self) -> list[str]:
        return [label for label in self.labels if label != self.negative_tag]

    @property
    def fold_count(self) -> int:
        return int(self.method.split(":")[1]) if self.method.startswith("kfold:") else 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        images = [
            ImageResult(
                key=item["key"],
                fold=item["fold"],
                true_labels=list(item["true_labels"]),
                true_boxes=[LabeledBox(**box) for box in item["true_boxes"]],
                probabilities=dict(item["probabilities"]),
                predicted_boxes=[ScoredBox(**box) for box in item["predicted_boxes"]],
            )
            for item in data["images"]
        ]
        return cls(data["task"], data["method"], list(data["labels"]), images, data.get("negative_tag"))


@dataclass(frozen=True)
class TagPerformance:
    tag: str
    precision: float
    recall: float
    average_precision: float
    precision_std: float
    recall_std: float
    average_precision_std: float
    held_out_images: int


@dataclass(frozen=True)
class Performance:
    threshold: float
    overlap_threshold: float
    precision: float
    recall: float
    mean_average_precision: float
    precision_std: float
    recall_std: float
    mean_average_precision_std: float
    per_tag: list[TagPerformance]
    evaluation_method: str
    std_method: str  # "folds" or "bootstrap"
    held_out_images: int


@dataclass(frozen=True)
class _Counts:
    """Per tag: true positives, predicted positives, actual positives at the threshold; AP over all thresholds."""

    true_positive: dict[str, int]
    predicted: dict[str, int]
    actual: dict[str, int]
    average_precision: dict[str, float]


def _average_precision(scores: np.ndarray, correct: np.ndarray, positives: int) -> float:
    """All-point interpolated AP: area under the monotone precision envelope of the ranked predictions."""
    if positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = correct[order].astype(np.float64)
    true_positive = np.cumsum(hits)
    precision = true_positive / np.arange(1, len(hits) + 1)
    recall = true_positive / positives
    precision = np.concatenate([[0.0], precision, [0.0]])
    recall = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def _iou(box: ScoredBox | LabeledBox, others: Sequence[LabeledBox]) -> np.ndarray:
    if not others:
        return np.zeros(0)
    other = np.array([[o.left, o.top, o.left + o.width, o.top + o.height] for o in others])
    x1, y1 = np.maximum(box.left, other[:, 0]), np.maximum(box.top, other[:, 1])
    x2 = np.minimum(box.left + box.width, other[:, 2])
    y2 = np.minimum(box.top + box.height, other[:, 3])
    intersection = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = box.width * box.height + (other[:, 2] - other[:, 0]) * (other[:, 3] - other[:, 1]) - intersection
    return np.asarray(intersection / np.maximum(union, 1e-12))


def _match_detections(image: ImageResult, tag: str, overlap: float) -> tuple[list[float], list[bool], int]:
    """Greedy matching by descending score: (scores, is-correct flags, number of ground-truth boxes)."""
    truths = [box for box in image.true_boxes if box.tag == tag]
    predictions = sorted((b for b in image.predicted_boxes if b.tag == tag), key=lambda b: -b.probability)
    used = np.zeros(len(truths), dtype=bool)
    scores, correct = [], []
    for prediction in predictions:
        overlaps = _iou(prediction, truths)
        overlaps[used] = -1.0
        best = int(np.argmax(overlaps)) if len(overlaps) else -1
        hit = best >= 0 and overlaps[best] >= overlap
        if hit:
            used[best] = True
        scores.append(prediction.probability)
        correct.append(bool(hit))
    return scores, correct, len(truths)


_PerImage = tuple[np.ndarray, np.ndarray, int]  # scores, is-correct flags, ground-truth count


def _per_image(evaluation: Evaluation, overlap: float) -> dict[str, list[_PerImage]]:
    """Each image's scored predictions per tag, matched once (resampling only regroups these)."""
    tables: dict[str, list[_PerImage]] = {}
    for tag in evaluation.scored_labels:
        rows: list[_PerImage] = []
        for image in evaluation.images:
            if evaluation.task == "detect":
                scores, correct, positives = _match_detections(image, tag, overlap)
                rows.append((np.array(scores, dtype=np.float64), np.array(correct, dtype=bool), positives))
            else:
                truth = tag in image.true_labels
                rows.append((np.array([image.probabilities.get(tag, 0.0)]), np.array([truth]), int(truth)))
        tables[tag] = rows
    return tables


def _counts(tables: dict[str, list[_PerImage]], indices: Sequence[int], threshold: float) -> _Counts:
    true_positive, predicted, actual, average_precision = {}, {}, {}, {}
    for tag, rows in tables.items():
        picked = [rows[i] for i in indices]
        scores = np.concatenate([row[0] for row in picked]) if picked else np.zeros(0)
        correct = np.concatenate([row[1] for row in picked]) if picked else np.zeros(0, dtype=bool)
        positives = sum(row[2] for row in picked)
        above = scores >= threshold
        true_positive[tag] = int((above & correct).sum())
        predicted[tag] = int(above.sum())
        actual[tag] = positives
        average_precision[tag] = _average_precision(scores, correct, positives)
    return _Counts(true_positive, predicted, actual, average_precision)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _summary(counts: _Counts, tags: Sequence[str]) -> dict[str, float]:
    """Flat metric vector of one image set: per-tag p/r/ap and the overall figures."""
    values: dict[str, float] = {}
    for tag in tags:
        values[f"p:{tag}"] = _ratio(counts.true_positive[tag], counts.predicted[tag])
        values[f"r:{tag}"] = _ratio(counts.true_positive[tag], counts.actual[tag])
        values[f"ap:{tag}"] = counts.average_precision[tag]
    values["precision"] = _ratio(sum(counts.true_positive.values()), sum(counts.predicted.values()))
    values["recall"] = _ratio(sum(counts.true_positive.values()), sum(counts.actual.values()))
    present = [tag for tag in tags if counts.actual[tag] > 0]
    values["map"] = float(np.mean([counts.average_precision[t] for t in present])) if present else 0.0
    return values


def _spread(
    evaluation: Evaluation, tables: dict[str, list[_PerImage]], threshold: float
) -> tuple[dict[str, float], str]:
    """Standard deviation of every summary value: over folds (k-fold) or bootstrap resamples (holdout)."""
    tags = evaluation.scored_labels
    if evaluation.fold_count > 1:
        folds = [im.fold for im in evaluation.images]
        groups = [[i for i, fold in enumerate(folds) if fold == f] for f in range(evaluation.fold_count)]
        samples = [_summary(_counts(tables, g, threshold), tags) for g in groups if g]
        method = "folds"
    else:
        rng = np.random.default_rng(0)
        count = len(evaluation.images)
        samples = []
        for _ in range(BOOTSTRAP_RESAMPLES if count > 1 else 0):
            picked = [int(i) for i in rng.integers(0, count, count)]
            samples.append(_summary(_counts(tables, picked, threshold), tags))
        method = "bootstrap"
    if len(samples) < 2:
        return {}, method
    return {key: float(np.std([s[key] for s in samples], ddof=1)) for key in samples[0]}, method


def performance(evaluation: Evaluation, threshold: float = 0.5, overlap_threshold: float = 0.5) -> Performance:
    """Custom Vision's iteration performance from held-out predictions, at any threshold / IoU overlap."""
    tags = evaluation.scored_labels
    tables = _per_image(evaluation, overlap_threshold)
    counts = _counts(tables, range(len(evaluation.images)), threshold)
    values = _summary(counts, tags)
    spread, std_method = _spread(evaluation, tables, threshold)
    per_tag = [
        TagPerformance(
            tag=tag,
            precision=values[f"p:{tag}"],
            recall=values[f"r:{tag}"],
            average_precision=values[f"ap:{tag}"],
            precision_std=spread.get(f"p:{tag}", 0.0),
            recall_std=spread.get(f"r:{tag}", 0.0),
            average_precision_std=spread.get(f"ap:{tag}", 0.0),
            held_out_images=sum(
                1 for im in evaluation.images if tag in im.true_labels or any(b.tag == tag for b in im.true_boxes)
            ),
        )
        for tag in tags
    ]
    return Performance(
        threshold=threshold,
        overlap_threshold=overlap_threshold,
        precision=values["precision"],
        recall=values["recall"],
        mean_average_precision=values["map"],
        precision_std=spread.get("precision", 0.0),
        recall_std=spread.get("recall", 0.0),
        mean_average_precision_std=spread.get("map", 0.0),
        per_tag=per_tag,
        evaluation_method=evaluation.method,
        std_method=std_method,
        held_out_images=len(evaluation.images),
    )


def precision_recall_curve(
    evaluation: Evaluation, tag: str, overlap_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) points of one tag over all thresholds, for plotting."""
    if evaluation.task == "detect":
        matched = [_match_detections(image, tag, overlap_threshold) for image in evaluation.images]
        scores = np.array([s for m in matched for s in m[0]], dtype=np.float64)
        correct = np.array([c for m in matched for c in m[1]], dtype=bool)
        positives = sum(m[2] for m in matched)
    else:
        scores = np.array([image.probabilities.get(tag, 0.0) for image in evaluation.images], dtype=np.float64)
        correct = np.array([tag in image.true_labels for image in evaluation.images], dtype=bool)
        positives = int(correct.sum())
    order = np.argsort(-scores, kind="stable")
    true_positive = np.cumsum(correct[order])
    precision = true_positive / np.arange(1, len(order) + 1) if len(order) else np.zeros(0)
    recall = true_positive / positives if positives else np.zeros(len(order))
    return np.concatenate([[0.0], recall]), np.concatenate([[1.0], precision])


def classification_accuracy(evaluation: Evaluation) -> float:
    """Top-1 accuracy of a multiclass evaluation (a held-out image is right when its best tag is its label)."""
    right = 0
    for image in evaluation.images:
        best = max(image.probabilities, key=lambda tag: image.probabilities[tag]) if image.probabilities else None
        expected = image.true_labels[0] if image.true_labels else evaluation.negative_tag
        right += int(best == expected)
    return right / len(evaluation.images) if evaluation.images else 0.0
