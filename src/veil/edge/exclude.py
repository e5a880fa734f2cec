"""Privacy zones: the `exclude` polygons of a camera, blanked before detection.

Spatial Analysis' privacy guidance asks deployments to limit what they collect; a zone over a neighbour's window,
a staff-only door or a changing area is painted flat grey (YOLOX's own padding value) on the in-memory frame
before anything looks at it, so nobody inside is detected, tracked, counted, previewed or recorded.

Example::

    >>> import numpy as np
    >>> mask = ExclusionMask([[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]])
    >>> mask.apply(np.full((4, 4, 3), 255, np.uint8))[:, :, 0].tolist()
    [[114, 114, 114, 255], [114, 114, 114, 255], [114, 114, 114, 255], [114, 114, 114, 255]]
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

BLANK = 114  # the grey YOLOX pads its input with: a detector has learnt it holds nothing


class ExclusionMask:
    """`apply(rgb)`: a copy of the frame with every excluded polygon filled; the mask is built once per size."""

    def __init__(self, polygons: Sequence[Sequence[tuple[float, float]]]) -> None:
        self._polygons = [np.asarray(p, dtype=np.float64) for p in polygons]
        self._masks: dict[tuple[int, int], np.ndarray] = {}

    def __bool__(self) -> bool:
        return bool(self._polygons)

    def mask(self, height: int, width: int) -> np.ndarray:
        """Boolean HxW, True where pixels are excluded."""
        if (height, width) not in self._masks:
            canvas = np.zeros((height, width), np.uint8)
            # Normalized vertices → pixel corners: x = 1.0 is the right edge of the last column.
            points = [np.round(p * [width, height]).astype(np.int32) for p in self._polygons]
            cv2.fillPoly(canvas, points, 1)
            self._masks[(height, width)] = canvas.astype(bool)
        return self._masks[(height, width)]

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        if not self._polygons:
            return rgb
        blanked = rgb.copy()
        blanked[self.mask(*rgb.shape[:2])] = BLANK
        return blanked
