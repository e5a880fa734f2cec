"""The image pipeline as plain functions: frame in → detect → obscure → frame out (+ what was found)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import supervision as sv
from PIL import Image

from veil.privacy.detectors import Detector, detector_for
from veil.privacy.metadata import open_upright, save_image
from veil.privacy.obfuscate import DPRecord, mask_boxes, obscure
from veil.privacy.settings import AnonymizeSettings


@dataclass(frozen=True)
class AnonymizeResult:
    """An anonymized frame, the detections that were hidden (pixel xyxy, before mask scaling) and, for
    `dp-pixelate`, the differential-privacy accounting to store with the output."""

    image: np.ndarray
    detections: sv.Detections
    dp: DPRecord | None


def dp_record(settings: AnonymizeSettings, channels: int, frames: int = 1) -> DPRecord | None:
    if settings.method != "dp-pixelate":
        return None
    return DPRecord(settings.epsilon, settings.cell, settings.m, settings.noise_scale, channels, frames)


def hide_detections(
    rgb: np.ndarray,
    detections: sv.Detections,
    settings: AnonymizeSettings,
    rng: np.random.Generator | None = None,
) -> AnonymizeResult:
    """Obscure given detections (e.g. tracked and smoothed ones in a video) in a copy of `rgb`."""
    height, width = rgb.shape[:2]
    out = np.array(rgb, dtype=np.uint8, copy=True)
    boxes = mask_boxes(detections.xyxy, settings.mask_scale, width, height)
    pixels = out if out.ndim == 3 else out[:, :, None]
    obscure(pixels, boxes, settings, rng or np.random.default_rng(settings.seed))
    channels = 1 if out.ndim == 2 else out.shape[2]
    return AnonymizeResult(out, detections, dp_record(settings, channels))


def anonymize_image(rgb: np.ndarray, settings: AnonymizeSettings, detector: Detector | None = None) -> AnonymizeResult:
    """Detect the settings' targets in an RGB (HxWx3 uint8) frame and return it with them hidden.

    Pure: the input array is not modified. Example:
        >>> result = anonymize_image(rgb, AnonymizeSettings(method="pixelate"))
        >>> len(result.detections), result.image.shape == rgb.shape
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
    found = (detector or detector_for(settings)).detect(rgb)
    return hide_detections(rgb, found, settings)


def anonymize_image_file(
    src: Path, dst: Path, settings: AnonymizeSettings, detector: Detector | None = None
) -> AnonymizeResult:
    """Read `src` upright, hide the targets, write `dst` (metadata stripped unless `keep_metadata`)."""
    source = open_upright(src)
    alpha = source.getchannel("A") if "A" in source.getbands() else None
    result = anonymize_image(np.asarray(source.convert("RGB")), settings, detector)
    clean = Image.fromarray(result.image, "RGB")
    if source.mode in ("L", "LA", "I", "I;16", "1"):
        clean = clean.convert("L")  # greyscale in, greyscale out (the 3ε accounting is an upper bound)
    if alpha is not None and dst.suffix.lower() not in (".jpg", ".jpeg"):
        clean = clean.convert("RGBA" if clean.mode == "RGB" else "LA")
        clean.putalpha(alpha)
    record = result.dp.describe() if result.dp else None
    save_image(clean, dst, source=source if settings.keep_metadata else None, record=record)
    return result
