"""Shared real-image fixtures for the vision tests: small subsets so the whole folder stays fast on 2 cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import dataset_path

from veil.vision.data import Sample
from veil.vision.datasets import load_dataset


def _readable_images(folder: Path, count: int, skip: int = 0) -> list[Path]:
    found = []
    for path in sorted(folder.iterdir())[skip:]:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception:
            continue
        found.append(path)
        if len(found) == count:
            break
    return found


def ants_bees(split: str, per_class: int, skip: int = 0) -> list[Sample]:
    root = dataset_path("ants-bees") / split
    samples = []
    for tag in ("ants", "bees"):
        for path in _readable_images(root / tag, per_class, skip):
            samples.append(Sample(path.name, (lambda p=path: Image.open(p)), [tag]))
    return samples


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="session")
def raccoons() -> list[Sample]:
    return load_dataset(dataset_path("raccoon"), "voc")


# ---- trained models shared by the export tests (tests/vision/test_export_*.py), trained once per session.
# No membership audit: these tests check the exported formats, not the audit (tests/vision/test_membership.py and
# tests/vision/test_export_privacy.py do); it cost the detector 10 s of its 47 s.


@pytest.fixture(scope="session")
def export_classifier() -> bytes:
    """A Lite0 ants/bees classifier (20 training images, seconds): Veil's ONNX."""
    from veil.vision.train import TrainRequest, train

    request = TrainRequest(
        "classify", ants_bees("train", 10), seed=7, backbone="efficientnet-lite0", input_size=224, audit=False
    )
    return train(request).onnx


@pytest.fixture(scope="session")
def export_detector() -> bytes:
    """A person detector on Penn-Fudan's first 60 images (60 optimizer steps); its last 50 stay unseen."""
    from veil.vision.train import TrainRequest, train

    people = load_dataset(dataset_path("pedestrians-det") / "PennFudanPed")
    # Lite0 FCOS, the compact detection domains' network: only compact domains export Azure's formats (yolox-nano,
    # the default elsewhere, does not convert to Core ML yet; its Azure ONNX export has its own test)
    request = TrainRequest(
        "detect", people[:60], max_steps=60, seed=1, input_size=256, audit=False, backbone="efficientnet-lite0"
    )
    return train(request).onnx
