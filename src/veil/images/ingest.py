"""Safe image ingest: only re-encoded pixels get past the door.

Steps: size limit on the raw bytes → format sniffed by Pillow (JPEG, PNG, BMP, GIF, WebP, TIFF) →
dimensions and frame count read from the header *before* decoding (no decompression bombs) → bounded decode →
EXIF orientation applied → a fresh image of pixels only (EXIF/GPS, ICC, XMP, comments dropped) → re-encoded.

    >>> image = decode_image(raw_bytes, IngestLimits())      # ImageRejected with a status and a reason
    >>> clean = encode_image(image, source_format="JPEG")    # .data, .content_type, .width, .height
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from enum import StrEnum

from PIL import Image, ImageOps, UnidentifiedImageError

from veil.config import Settings

ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP", "TIFF"})
JPEG_QUALITY = 95


class RejectStatus(StrEnum):
    """Custom Vision's per-image statuses for a refused upload."""

    bad_format = "ErrorImageFormat"
    size = "ErrorImageSize"
    dimensions = "ErrorImageDimensions"


class ImageRejected(Exception):
    """The upload is not an acceptable image; `status` is Custom Vision's, `reason` says what to fix."""

    def __init__(self, status: RejectStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class IngestLimits:
    max_bytes: int = 6 * 1024 * 1024
    min_side: int = 16
    max_side: int = 10_240
    max_pixels: int = 60_000_000
    max_frames: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestLimits:
        return cls(
            max_bytes=settings.max_image_bytes,
            min_side=settings.min_image_side,
            max_side=settings.max_image_side,
            max_pixels=settings.max_image_pixels,
            max_frames=settings.max_image_frames,
        )


@dataclass(frozen=True)
class CleanImage:
    """Re-encoded bytes holding pixels only, ready to be sealed."""

    data: bytes
    content_type: str
    width: int
    height: int


def _check_size(data: bytes, limits: IngestLimits) -> None:
    if not data:
        raise ImageRejected(RejectStatus.size, "the upload is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            RejectStatus.size,
            f"the image is {len(data):,} bytes; at most {limits.max_bytes:,} bytes are accepted",
        )


def _open(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRejected(
            RejectStatus.bad_format, "not a recognised image; send JPEG, PNG, BMP, GIF, WebP or TIFF"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageRejected(RejectStatus.bad_format, f"unreadable image header: {exc}") from None
    except Image.DecompressionBombError as exc:  # Pillow's own guard fires for extreme headers
        raise ImageRejected(RejectStatus.dimensions, f"the image declares too many pixels: {exc}") from None
    if image.format not in ACCEPTED_FORMATS:
        raise ImageRejected(
            RejectStatus.bad_format,
            f"{image.format} images are not accepted; send JPEG, PNG, BMP, GIF, WebP or TIFF",
        )
    return image


def _check_header(image: Image.Image, limits: IngestLimits) -> None:
    width, height = image.size
    if not (limits.min_side <= width <= limits.max_side and limits.min_side <= height <= limits.max_side):
        raise ImageRejected(
            RejectStatus.dimensions,
            f"the image is {width}×{height} px; each side must be between {limits.min_side} and {limits.max_side} px",
        )
    if width * height > limits.max_pixels:
        raise ImageRejected(
            RejectStatus.dimensions, f"the image has {width * height:,} pixels; at most {limits.max_pixels:,}"
        )
    frames = _frame_count(image, limits.max_frames)
    if frames > limits.max_frames:
        raise ImageRejected(
            RejectStatus.bad_format,
            f"the image has more than {limits.max_frames} frames; send a still image (only the first frame is kept)",
        )


def _frame_count(image: Image.Image, limit: int) -> int:
    """Frames in an animation, counting no further than limit + 1 (seeking reads but does not keep frames)."""
    if not getattr(image, "is_animated", False):
        return 1
    count = 1
    try:
        while count <= limit:
            image.seek(count)
            count += 1
    except EOFError:
        pass
    finally:
        image.seek(0)
    return count


def _decode_pixels(image: Image.Image) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image.load()
            oriented = ImageOps.exif_transpose(image)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(RejectStatus.bad_format, f"the image data is truncated or corrupt: {exc}") from None
    has_alpha = oriented.mode in ("RGBA", "LA", "PA") or "transparency" in oriented.info
    pixels = oriented.convert("RGBA" if has_alpha else "RGB")
    # A brand-new image from raw pixels: no EXIF, GPS, ICC, XMP or comment can come along.
    return Image.frombytes(pixels.mode, pixels.size, pixels.tobytes())


def decode_image(data: bytes, limits: IngestLimits) -> tuple[Image.Image, str]:
    """Decode untrusted bytes into a metadata-free RGB/RGBA image; returns it and the source format."""
    _check_size(data, limits)
    image = _open(data)
    source_format = "JPEG" if image.format == "MPO" else str(image.format)
    _check_header(image, limits)
    return _decode_pixels(image), source_format


def encode_image(image: Image.Image, source_format: str) -> CleanImage:
    """JPEG in, JPEG out (quality 95); everything else, or anything with transparency, as lossless PNG."""
    buffer = io.BytesIO()
    if source_format == "JPEG" and image.mode == "RGB":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        content_type = "image/jpeg"
    else:
        image.save(buffer, format="PNG", optimize=False)
        content_type = "image/png"
    return CleanImage(buffer.getvalue(), content_type, image.width, image.height)


def thumbnail(data: bytes, max_side: int) -> CleanImage:
    """A smaller copy (longest side ≤ `max_side`) of an already-clean image, same encoding rules."""
    with Image.open(io.BytesIO(data)) as image:
        source_format = str(image.format)
        image.thumbnail((max_side, max_side))
        return encode_image(image.copy(), source_format)
