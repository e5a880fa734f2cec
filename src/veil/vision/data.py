"""Training data as typed values, and the splits used for honest evaluation. Torch-free (API and CLI import it).

A `Sample` is one labelled image: a key (the image id or file name), a way to get its pixels (a loader callable,
so thousands of images are not decoded up front, or an RGB array), its tags and, for detection, its boxes in
Custom Vision's normalized left/top/width/height. Splits are stratified by each image's rarest tag so every tag
appears on both sides; with few images k-fold cross-validation is used instead (`plan_evaluation`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps


@dataclass(frozen=True)
class LabeledBox:
    """A ground-truth region: tag name and normalized left/top/width/height (0..1, Custom Vision's convention)."""

    tag: str
    left: float
    top: float
    width: float
    height: float


@dataclass
class Sample:
    """One labelled image. `image` is a loader returning a PIL image, or an HxWx3 uint8 RGB array."""

    key: str
    image: Callable[[], Image.Image] | np.ndarray
    labels: list[str] = field(default_factory=list)
    boxes: list[LabeledBox] = field(default_factory=list)

    def rgb(self) -> np.ndarray:
        """The pixels as an HxWx3 uint8 RGB array (EXIF orientation applied for loaded files)."""
        if isinstance(self.image, np.ndarray):
            return np.ascontiguousarray(self.image[..., :3], dtype=np.uint8)
        picture = ImageOps.exif_transpose(self.image())
        return np.asarray(picture.convert("RGB"), dtype=np.uint8)

    def tags(self) -> list[str]:
        """Tags of the image: its labels, or for detection the tags of its boxes."""
        return sorted(set(self.labels) | {box.tag for box in self.boxes})


class NotEnoughData(ValueError):
    """Too few images for a tag; names the tag, how many it has and how many are needed."""

    def __init__(self, tag: str, count: int, required: int, task: str) -> None:
        self.tag, self.count, self.required = tag, count, required
        super().__init__(
            f"tag {tag!r} has {count} image(s); {task} needs at least {required} per tag — add more images of it"
        )


class InvalidDataset(ValueError):
    """The samples cannot be trained on (no tags, a Negative image with other tags, boxes outside 0..1, ...)."""


@dataclass(frozen=True)
class EvaluationPlan:
    """Which images are held out: one split ("holdout") or k folds ("kfold:k"). `folds[i]` = held-out indices."""

    method: str
    folds: list[list[int]]

    def train_indices(self, fold: int, count: int) -> list[int]:
        held_out = set(self.folds[fold])
        return [index for index in range(count) if index not in held_out]


def _strata(samples: Sequence[Sample]) -> list[str]:
    """Stratify by each image's rarest tag, so rare tags land on both sides of a split."""
    frequency = Counter(tag for sample in samples for tag in sample.tags())
    return [min(sample.tags(), key=lambda tag: (frequency[tag], tag)) if sample.tags() else "" for sample in samples]


def stratified_folds(samples: Sequence[Sample], folds: int, seed: int) -> list[list[int]]:
    """Assign images to `folds` groups, round-robin within each stratum after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for index, stratum in enumerate(_strata(samples)):
        groups.setdefault(stratum, []).append(index)
    assignment: list[list[int]] = [[] for _ in range(folds)]
    offset = 0
    for stratum in sorted(groups):
        members = list(rng.permutation(groups[stratum]))
        for position, index in enumerate(members):
            assignment[(position + offset) % folds].append(int(index))
        offset += len(members)
    return [sorted(fold) for fold in assignment]


def plan_evaluation(
    samples: Sequence[Sample], seed: int, holdout_fraction: float = 0.2, kfold_below: int = 60, k: int = 5
) -> EvaluationPlan:
    """Held-out split for enough images; k-fold cross-validation below `kfold_below` images."""
    if len(samples) < kfold_below:
        folds = min(k, len(samples))
        return EvaluationPlan(method=f"kfold:{folds}", folds=stratified_folds(samples, folds, seed))
    parts = max(2, round(1 / holdout_fraction))
    return EvaluationPlan(method="holdout", folds=[stratified_folds(samples, parts, seed)[0]])


def check_minimum_images(samples: Sequence[Sample], tags: Sequence[str], required: int, task: str) -> None:
    """Custom Vision's rule: every trained tag needs `required` images; raise `NotEnoughData` naming the tag."""
    counts = Counter(tag for sample in samples for tag in sample.tags())
    for tag in tags:
        if counts[tag] < required:
            raise NotEnoughData(tag, counts[tag], required, task)


def to_normalized_ltwh(xyxy: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """Pixel x1,y1,x2,y2 → normalized left, top, width, height, clipped to the image."""
    x1, y1 = max(0.0, float(xyxy[0])), max(0.0, float(xyxy[1]))
    x2, y2 = min(float(width), float(xyxy[2])), min(float(height), float(xyxy[3]))
    return x1 / width, y1 / height, max(0.0, x2 - x1) / width, max(0.0, y2 - y1) / height


def to_pixel_xyxy(box: LabeledBox, width: int, height: int) -> tuple[float, float, float, float]:
    """Normalized left/top/width/height → pixel x1,y1,x2,y2."""
    return (box.left * width, box.top * height, (box.left + box.width) * width, (box.top + box.height) * height)
