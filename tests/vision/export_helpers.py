"""Held-out images and the service's answers for the export agreement tests (tests/vision/test_export_*.py)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from tests.conftest import dataset_path

from veil.images.ingest import IngestLimits, decode_image
from veil.vision.runtime import ExportedModel, fit_to_input


def held_out_ants_bees(per_class: int | None = None) -> list[Path]:
    """ants/bees `val` (never trained on by the export fixtures), readable JPEGs only."""
    root = dataset_path("ants-bees") / "val"
    paths = [p for tag in ("ants", "bees") for p in sorted((root / tag).glob("*.jpg"))[:per_class]]
    return [p for p in paths if _decodes(p)]


def held_out_people(count: int = 50) -> list[Path]:
    """Penn-Fudan's last `count` images (the detector fixture trains on the first 60)."""
    return sorted((dataset_path("pedestrians-det") / "PennFudanPed" / "PNGImages").glob("*.png"))[-count:]


def _decodes(path: Path) -> bool:
    try:
        service_rgb(path)
    except Exception:
        return False
    return True


def service_rgb(path: Path) -> np.ndarray:
    """The pixels the Veil service predicts on for an uploaded file (its decode: EXIF orientation, RGB)."""
    image, _ = decode_image(path.read_bytes(), IngestLimits())
    return np.asarray(image.convert("RGB"))


def azure_input(model: ExportedModel, rgb: np.ndarray, channels_last: bool = False) -> np.ndarray:
    """The service's own resized pixels as Azure's input: BGR 0..255 float32, NCHW (or NHWC)."""
    fitted, _ = fit_to_input(rgb, model.info)
    bgr = np.ascontiguousarray(fitted[..., ::-1], dtype=np.float32)
    return bgr[None] if channels_last else bgr.transpose(2, 0, 1)[None].copy()


def unzip(data: bytes, folder: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(folder)
    return folder
