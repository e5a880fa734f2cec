"""Anonymization on ingest: a project's privacy policy applied to a decoded image before it is encrypted.

Called by the image-ingest service (after safe decode, before encryption) so original pixels never reach disk.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from veil.privacy.image import anonymize_image
from veil.privacy.settings import AnonymizeSettings, Method
from veil.store.policy import PrivacyPolicy


def settings_from_policy(policy: PrivacyPolicy) -> AnonymizeSettings:
    """Translate a project policy into settings; a policy-level detector is a path to a Veil ONNX export
    (read from a `detector` field when the policy has one)."""
    detector = getattr(policy, "detector", None)
    return _settings(
        tuple(policy.targets),
        policy.method,
        float(policy.epsilon),
        int(policy.cell),
        int(policy.m),
        str(detector) if detector else None,
    )


@lru_cache(maxsize=32)
def _settings(
    targets: tuple[str, ...], method: Method, epsilon: float, cell: int, m: int, detector: str | None
) -> AnonymizeSettings:
    # One settings object per distinct policy, so its detector (an ONNX session) is built once and reused.
    return AnonymizeSettings(
        targets=targets,
        method=method,
        epsilon=epsilon,
        cell=cell,
        m=m,
        detector=Path(detector) if detector else None,
    )


def anonymize_for_ingest(image: Image.Image, policy: PrivacyPolicy) -> Image.Image:
    """Return `image` with the policy's targets hidden (or unchanged when the policy is off).

    Keeps size and mode: alpha is carried over untouched, greyscale comes back greyscale.

    Example:
        >>> clean = anonymize_for_ingest(Image.open("group.jpg"), project.privacy_policy)
    """
    if not policy.anonymize_on_ingest:
        return image
    settings = settings_from_policy(policy)
    alpha = image.getchannel("A") if "A" in image.getbands() else None
    rgb = np.asarray(image.convert("RGB"))
    result = anonymize_image(rgb, settings)
    clean = Image.fromarray(result.image, "RGB")
    if image.mode in ("L", "LA"):
        clean = clean.convert("L")
    if alpha is not None:
        clean = clean.convert("RGBA" if clean.mode == "RGB" else "LA")
        clean.putalpha(alpha)
    if result.dp is not None:
        clean.info["veil_dp"] = result.dp.describe()  # callers storing the image keep this with it
    return clean
