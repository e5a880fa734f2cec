"""Anonymize one image and keep nothing: decode safely, hide faces (or other targets), re-encode, return.

The store-nothing counterpart of the ingest policy, for callers who only want the anonymized pixels back
(`POST /veil/v1/anonymize`, usable with a predictor key). Nothing is written: no blob, no row, no audit event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from veil.images.ingest import ImageRejected, decode_image, encode_image
from veil.services.context import AppContext
from veil.services.errors import InvalidInput, ServiceError
from veil.services.predictions import REJECT_CODES


@dataclass(frozen=True)
class AnonymizedImage:
    data: bytes
    content_type: str
    hidden: int  # how many regions were obscured
    method: str


def anonymize(ctx: AppContext, data: bytes, targets: tuple[str, ...], method: str) -> AnonymizedImage:
    from veil.privacy.image import anonymize_image
    from veil.privacy.settings import AnonymizeSettings, SettingsError

    if not data:
        raise InvalidInput("the request has no image", code="BadRequestImageStream")
    try:
        settings = AnonymizeSettings(targets=targets, method=method)  # type: ignore[arg-type]
    except SettingsError as exc:
        raise InvalidInput(str(exc)) from None
    try:
        image, source_format = decode_image(data, ctx.limits)
    except ImageRejected as rejected:
        raise ServiceError(rejected.reason, code=REJECT_CODES.get(rejected.status, "BadRequestImageFormat")) from None
    try:
        # privacy's detector cache (`detector_for`): one detector per distinct settings, shared with ingest
        result = anonymize_image(np.asarray(image.convert("RGB")), settings)
    except (SettingsError, FileNotFoundError) as exc:
        raise InvalidInput(f"cannot hide {', '.join(targets)}: {exc}") from None
    clean = encode_image(PILImage.fromarray(result.image), "JPEG" if source_format == "JPEG" else "PNG")
    return AnonymizedImage(clean.data, clean.content_type, len(result.detections), method)
