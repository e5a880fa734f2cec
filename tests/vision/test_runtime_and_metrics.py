"""The serving runtime stays torch-free and rejects bad files; metrics follow their definitions."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from veil.vision.data import LabeledBox
from veil.vision.metrics import Evaluation, ImageResult, ScoredBox, performance
from veil.vision.runtime import ModelLoadError, load_model


def test_runtime_imports_without_torch() -> None:
    code = (
        "import sys; import veil.vision.runtime, veil.vision.metrics, veil.vision.datasets, veil.vision.export; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_model_files_raise_model_load_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(ModelLoadError, match="not a valid ONNX"):
        load_model(junk)
    bundle = tmp_path / "empty.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("labels.txt", "a\n")
    with pytest.raises(ModelLoadError, match=r"model\.onnx"):
        load_model(bundle)
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "missing.zip")


def _box(tag: str, left: float, score: float | None = None) -> LabeledBox | ScoredBox:
    if score is None:
        return LabeledBox(tag, left, 0.1, 0.2, 0.2)
    return ScoredBox(tag, score, left, 0.1, 0.2, 0.2)


def test_detection_metrics_follow_overlap_and_threshold() -> None:
    truth = [_box("cat", 0.1), _box("cat", 0.5)]
    images = [
        ImageResult("a", 0, true_boxes=truth, predicted_boxes=[_box("cat", 0.1, 0.9), _box("cat", 0.52, 0.4)]),  # type: ignore[list-item]
        ImageResult("b", 0, true_boxes=[_box("cat", 0.3)], predicted_boxes=[_box("cat", 0.7, 0.8)]),  # type: ignore[list-item, list-item]
    ]
    evaluation = Evaluation("detect", "holdout", ["cat"], images)
    strict = performance(evaluation, threshold=0.5, overlap_threshold=0.5)
    # at 0.5: predictions 0.9 (hit) and 0.8 (miss) → precision 1/2, recall 1/3
    assert strict.precision == pytest.approx(0.5) and strict.recall == pytest.approx(1 / 3)
    low = performance(evaluation, threshold=0.3, overlap_threshold=0.5)
    assert low.recall == pytest.approx(2 / 3)  # the 0.4 box shifted by 0.02 still overlaps ≥ 0.5
    # ranked 0.9 hit, 0.8 miss, 0.4 hit: AP = 1/3·1 + 1/3·(2/3) = 0.5556
    assert low.mean_average_precision == pytest.approx(1 / 3 + 2 / 9)
    assert low.std_method == "bootstrap"
    impossible = performance(evaluation, threshold=0.3, overlap_threshold=0.95)
    assert impossible.recall == pytest.approx(1 / 3)


def test_normalize_is_bit_for_bit_the_interleaved_formula() -> None:
    """The planar `normalize` computes the same float32 operations as `(pixels - mean) / std` on the interleaved
    image transposed afterwards (what it did before): identical bits, RGB and BGR, on a real photo."""
    import numpy as np
    from PIL import Image
    from tests.conftest import dataset_path

    from veil.vision.runtime import ModelInfo, fit_to_input, normalize

    photo = sorted(dataset_path("ants-bees").rglob("*.jpg"))[0]
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    for order, mean, std in (("RGB", (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)),
                             ("BGR", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))):  # fmt: skip
        info = ModelInfo("classify", ["a"], 224, 160, mean=mean, std=std, channel_order=order)
        fitted, _ = fit_to_input(rgb, info)
        pixels = fitted.astype(np.float32)
        if order == "BGR":
            pixels = pixels[..., ::-1]
        reference = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        expected = np.ascontiguousarray(reference.transpose(2, 0, 1))
        got = normalize(fitted, info)
        assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (3, 160, 224)
        assert np.array_equal(got, expected), order
