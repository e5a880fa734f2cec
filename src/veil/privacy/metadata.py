"""Reading images upright and writing them without identifying metadata.

EXIF orientation is applied to the pixels first (so a rotated phone photo is anonymized and saved upright),
then nothing of the source's metadata is copied unless asked: EXIF (with GPS), XMP, IPTC, ICC and comments
all vanish because the output is encoded from bare pixels. A DP-Pix record, when there is one, is written as
the image's comment (JPEG COM / PNG tEXt), so the privacy budget travels with the output.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

# A decompression bomb guard in the same spirit as the ingest limits: 80 megapixels.
MAX_PIXELS = 80_000_000
RECORD_KEY = "veil-anonymized"


class ImageFileError(ValueError):
    """An input image cannot be read; the message names the file and the reason."""


def open_upright(path: Path) -> Image.Image:
    """Decode `path` fully, with its EXIF orientation applied; raise ImageFileError on anything unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:  # checked from the header, before any pixel is decoded
                raise ImageFileError(f"{path}: {width}x{height} is over the {MAX_PIXELS:,} pixel limit")
            image.load()
            upright = ImageOps.exif_transpose(image)
            upright.info.update({k: v for k, v in image.info.items() if k not in upright.info})
            return upright
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageFileError):
            raise
        raise ImageFileError(f"{path}: not a readable image ({exc})") from exc


def _kept_metadata(source: Image.Image, fmt: str) -> dict[str, object]:
    """Source metadata to carry over with --keep-metadata (orientation reset: pixels are already upright)."""
    kept: dict[str, object] = {}
    exif = source.getexif()
    if exif:
        exif[0x0112] = 1
        kept["exif"] = exif.tobytes()
    for key in ("icc_profile", "xmp"):
        if source.info.get(key):
            kept[key] = source.info[key]
    if fmt == "JPEG" and source.info.get("comment"):
        kept["comment"] = source.info["comment"]
    return kept


def save_image(image: Image.Image, dst: Path, *, source: Image.Image | None = None, record: str | None = None) -> None:
    """Write `image` to `dst` atomically (temp file + rename), copying `source`'s metadata only when given.

    `record` (e.g. the DP-Pix accounting) is stored as the image comment.
    """
    fmt = Image.registered_extensions().get(dst.suffix.lower())
    if fmt is None:
        raise ImageFileError(f"{dst}: unknown image extension {dst.suffix!r}")
    params: dict[str, object] = _kept_metadata(source, fmt) if source is not None else {}
    if fmt == "JPEG":
        params["quality"] = 95
        if record:
            params["comment"] = f"{RECORD_KEY}: {record}"
        image = image.convert("RGB") if image.mode not in ("RGB", "L", "CMYK") else image
    elif fmt == "PNG" and record:
        info = PngImagePlugin.PngInfo()
        info.add_text(RECORD_KEY, record)
        params["pnginfo"] = info
    dst.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    os.close(handle)
    try:
        image.save(temp, format=fmt, **params)
        os.replace(temp, dst)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
