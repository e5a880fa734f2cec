"""Faces hidden before any edge picture leaves memory: the one face hider of the preview and the recorder.

It wraps Veil's anonymizer (`veil.privacy`: CenterFace, solid fill), loaded on first use so a pipeline that
writes no pictures never loads a face model.
"""

from __future__ import annotations

import numpy as np


class FaceHider:
    """`hider(rgb) -> rgb` with every face CenterFace finds solid-filled."""

    def __init__(self) -> None:
        from veil.privacy.detectors import detector_for
        from veil.privacy.settings import AnonymizeSettings

        self._settings = AnonymizeSettings(method="solid")
        self._detector = detector_for(self._settings)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        from veil.privacy.image import anonymize_image

        return anonymize_image(rgb, self._settings, self._detector).image
