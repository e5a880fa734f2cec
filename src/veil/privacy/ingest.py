"""Anonymization on ingest: a project's privacy policy applied to a decoded image before it is encrypted.

Called by the one ingest path (`veil.services.ingest.keep_image`: after safe decode, before encryption) so
original pixels never reach disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from veil.privacy.detectors import Detector
from veil.privacy.image import anonymize_image
from veil.privacy.policy import PrivacyPolicy
from veil.privacy.settings import AnonymizeSettings


def settings_from_policy(policy: PrivacyPolicy, detector_name: str | None = None) -> AnonymizeSettings:
    """The anonymization settings of a project policy. `detector_name` names the policy's own detector in
    privacy's messages (the detector object itself is passed to `anonymize_for_ingest`)."""
    return AnonymizeSettings(
        targets=tuple(policy.targets),
        method=policy.method,
        epsilon=float(policy.epsilon),
        cell=int(policy.cell),
        m=int(policy.m),
        detector=Path(detector_name) if detector_name else None,
    )


def anonymize_for_ingest(
    image: Image.Image, policy: PrivacyPolicy, detector: Detector | None = None, detector_name: str | None = None
) -> Image.Image:
    """Return `image` with the policy's targets hidden (or unchanged when the policy is off).

    `detector`: what finds the targets when the policy names its own detector; None: privacy's detectors for
    the settings (built once per distinct settings by `detectors.detector_for`). Keeps size and mode: alpha is
    carried over untouched, greyscale comes back greyscale.

    Example:
        >>> clean = anonymize_for_ingest(Image.open("group.jpg"), project.privacy_policy)
    """
    if not policy.anonymize_on_ingest:
        return image
    settings = settings_from_policy(policy, detector_name)
    alpha = image.getchannel("A") if "A" in image.getbands() else None
    result = anonymize_image(np.asarray(image.convert("RGB")), settings, detector)
    clean = Image.fromarray(result.image, "RGB")
    if image.mode in ("L", "LA"):
        clean = clean.convert("L")
    if alpha is not None:
        clean = clean.convert("RGBA" if clean.mode == "RGB" else "LA")
        clean.putalpha(alpha)
    if result.dp is not None:
        clean.info["veil_dp"] = result.dp.describe()  # callers storing the image keep this with it
    return clean
