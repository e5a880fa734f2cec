"""Safe image ingest: untrusted bytes pass a bounded decode, then only the pixels (and the colour profile) are kept.

The gate (every upload): size limit on the raw bytes → format sniffed by Pillow (JPEG, PNG, BMP, GIF, WebP,
TIFF) → dimensions and frame count read from the header *before* decoding (no decompression bombs) → the whole
image decoded under those limits. Nothing is kept unless every step passes.

What is kept (`keep_pixels`):
- JPEG: the upload's own compressed data, never re-compressed. The marker stream is rebuilt from the segments
  a decoder needs (frame, tables, restart interval, scans with their entropy-coded data byte for byte, EOI);
  every APPn (EXIF/GPS, XMP, IPTC, maker notes, thumbnails) and COM segment is dropped, except the ICC colour
  profile (APP2 ICC_PROFILE, unless the project's policy says `keep_icc_profile: false`), JFIF's density (its
  thumbnail removed) and Adobe's colour-transform flag (APP14, needed to read the colours right). Anything after
  the first EOI (a second MPO picture, an appended archive or script) is dropped. Broken markers, bytes between
  segments, truncated segments and restart markers out of sequence are refused; with `jpegtran` installed
  (Debian's libjpeg-turbo-progs) the entropy-coded data must also decode without a single libjpeg warning.
  The result is decoded again and must give exactly the pixels of the upload, else the decoded pixels are kept
  as lossless PNG. An EXIF orientation is applied by `jpegtran -perfect` (lossless, in the DCT domain) when the
  image's dimensions allow it; otherwise (or without jpegtran) the upright pixels are re-encoded once with the
  upload's own quantization tables and chroma subsampling.
- PNG, WebP, TIFF, BMP, GIF: the decoded, upright pixels as lossless PNG (first frame), with the ICC profile.

    >>> clean = keep_pixels(raw_bytes, IngestLimits())        # ImageRejected with a status and a reason
    >>> source = read_image(raw_bytes, IngestLimits())        # upright RGB/RGBA pixels, for anonymization
    >>> clean = encode_image(hidden, source.source_format, icc_profile=source.icc_profile, jpeg=source.jpeg)
"""

from __future__ import annotations

import io
import shutil
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

import numpy as np
from PIL import Image, ImageChops, ImageOps, JpegImagePlugin, UnidentifiedImageError

from veil.config import Settings

ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP", "TIFF"})
# Only where no upload tables exist to reuse (a JPEG made from a PNG never happens; kept for thumbnails' sources
# whose tables Pillow cannot read back).
JPEG_QUALITY = 95
JPEGTRAN_TIMEOUT_S = 30
EXIF_ORIENTATION = 0x0112
# EXIF orientation → jpegtran's lossless transform making the image upright (the same as ImageOps.exif_transpose).
JPEGTRAN_TRANSFORMS: dict[int, list[str]] = {
    2: ["-flip", "horizontal"],
    3: ["-rotate", "180"],
    4: ["-flip", "vertical"],
    5: ["-transpose"],
    6: ["-rotate", "90"],
    7: ["-transverse"],
    8: ["-rotate", "270"],
}


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


class KeptAs(StrEnum):
    """How the kept bytes relate to the upload (recorded in benchmarks and tests, said in the docs)."""

    jpeg_data_kept = "jpeg-data-kept"  # the upload's entropy-coded data, metadata segments dropped
    jpeg_rotated_losslessly = "jpeg-rotated-losslessly"  # jpegtran -perfect applied the EXIF orientation
    jpeg_reencoded = "jpeg-reencoded"  # once, with the upload's own quantization tables and subsampling
    png = "png"  # lossless


@dataclass(frozen=True)
class JpegTables:
    """A JPEG upload's quantization tables and chroma subsampling: its quality, reused by a re-encode."""

    quantization: dict[int, list[int]]
    subsampling: int  # Pillow's code (0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0), -1 unknown


@dataclass(frozen=True)
class CleanImage:
    """The bytes Veil keeps: pixels only (plus the ICC profile), ready to be sealed."""

    data: bytes
    content_type: str
    width: int
    height: int
    kept_as: KeptAs = KeptAs.png


@dataclass(frozen=True)
class SourceImage:
    """An upload past the gate: upright, metadata-free RGB/RGBA pixels and what a faithful re-encode needs."""

    pixels: Image.Image
    source_format: str  # "JPEG" (MPO included) or the lossless format it came in
    icc_profile: bytes | None
    jpeg: JpegTables | None


# --- the gate ------------------------------------------------------------------------------------------------


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


def _load(image: Image.Image) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(RejectStatus.bad_format, f"the image data is truncated or corrupt: {exc}") from None


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a malformed EXIF block (Pillow raises several types) means: no orientation to apply
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageRejected(RejectStatus.bad_format, f"the image data is truncated or corrupt: {exc}") from None


def _pixels_only(image: Image.Image) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    pixels = image.convert("RGBA" if has_alpha else "RGB")
    # A brand-new image from raw pixels: no EXIF, GPS, ICC, XMP or comment can come along.
    return Image.frombytes(pixels.mode, pixels.size, pixels.tobytes())


def _gate(data: bytes, limits: IngestLimits) -> Image.Image:
    """The opened and fully decoded upload, or ImageRejected."""
    _check_size(data, limits)
    image = _open(data)
    _check_header(image, limits)
    _load(image)
    return image


def _source_format(image: Image.Image) -> str:
    return "JPEG" if image.format == "MPO" else str(image.format)


def _jpeg_tables(image: Image.Image) -> JpegTables | None:
    quantization = getattr(image, "quantization", None)
    # Pillow writes one or two tables for RGB output; a CMYK upload's four do not fit a YCbCr re-encode.
    if not quantization or len(quantization) > 2 or image.mode not in ("RGB", "L"):
        return None
    return JpegTables({k: list(v) for k, v in quantization.items()}, JpegImagePlugin.get_sampling(image))


def read_image(data: bytes, limits: IngestLimits) -> SourceImage:
    """Decode untrusted bytes into upright, metadata-free pixels, with the profile and tables a re-encode reuses."""
    image = _gate(data, limits)
    is_jpeg = _source_format(image) == "JPEG"
    return SourceImage(
        pixels=_pixels_only(_upright(image)),
        source_format=_source_format(image),
        icc_profile=image.info.get("icc_profile") or None,
        jpeg=_jpeg_tables(image) if is_jpeg else None,
    )


def decode_image(data: bytes, limits: IngestLimits) -> tuple[Image.Image, str]:
    """Decode untrusted bytes into a metadata-free, upright RGB/RGBA image; returns it and the source format."""
    source = read_image(data, limits)
    return source.pixels, source.source_format


def decode_rgb(data: bytes, limits: IngestLimits) -> np.ndarray:
    """Untrusted bytes through the same gate into upright HxWx3 uint8 RGB pixels, for a model and nothing else
    (nothing is kept, so no metadata-free copy is made): the pixels of `decode_image(...)[0].convert("RGB")`."""
    image = _upright(_gate(data, limits))
    if image.mode != "RGB":  # palettes, alpha, grey, CMYK, 16-bit: exactly the kept-image conversion
        image = _pixels_only(image).convert("RGB")
    return np.asarray(image)


# --- what is kept --------------------------------------------------------------------------------------------


def keep_pixels(data: bytes, limits: IngestLimits, *, keep_icc_profile: bool = True) -> CleanImage:
    """The bytes to keep for an upload no policy alters: a JPEG's own compressed data without its metadata (see
    the module's docstring), anything else as lossless PNG; `keep_icc_profile` keeps the colour profile."""
    _check_size(data, limits)
    image = _open(data)
    _check_header(image, limits)
    if _source_format(image) == "JPEG":
        return _keep_jpeg(data, image, keep_icc_profile=keep_icc_profile)
    _load(image)
    icc_profile = (image.info.get("icc_profile") or None) if keep_icc_profile else None
    return encode_image(_pixels_only(_upright(image)), _source_format(image), icc_profile=icc_profile)


def encode_image(
    image: Image.Image,
    source_format: str,
    *,
    icc_profile: bytes | None = None,
    jpeg: JpegTables | None = None,
) -> CleanImage:
    """Encode pixels once: a JPEG source as JPEG with its own tables (`jpeg`; quality 95 without them), anything
    else, or anything with transparency, as lossless PNG. `icc_profile` is embedded when given."""
    buffer = io.BytesIO()
    extra: dict[str, object] = {"icc_profile": icc_profile} if icc_profile else {}
    if source_format == "JPEG" and image.mode in ("RGB", "L"):
        if jpeg is not None:
            extra["qtables"] = jpeg.quantization
            if jpeg.subsampling >= 0:
                extra["subsampling"] = jpeg.subsampling
        else:
            extra["quality"] = JPEG_QUALITY
        image.save(buffer, format="JPEG", **extra)
        return CleanImage(buffer.getvalue(), "image/jpeg", image.width, image.height, KeptAs.jpeg_reencoded)
    image.save(buffer, format="PNG", optimize=False, **extra)
    return CleanImage(buffer.getvalue(), "image/png", image.width, image.height, KeptAs.png)


def thumbnail(data: bytes, max_side: int) -> CleanImage:
    """A smaller copy (longest side ≤ `max_side`) of an already-clean image, in its format, with its profile."""
    with Image.open(io.BytesIO(data)) as image:
        source_format = str(image.format)
        icc_profile = image.info.get("icc_profile") or None
        image.thumbnail((max_side, max_side))
        pixels = image.copy() if image.mode in ("RGB", "RGBA") else _pixels_only(image)
        return encode_image(pixels, source_format, icc_profile=icc_profile)


# --- JPEG without re-compression -----------------------------------------------------------------------------

SOI, EOI, SOS, DRI, APP0, APP2, APP14, COM = 0xD8, 0xD9, 0xDA, 0xDD, 0xE0, 0xE2, 0xEE, 0xFE
RST0, RST7 = 0xD0, 0xD7
# Segments a decoder needs: SOF0-15 except DHT (C4), JPG (C8) and DAC (CC) which are listed on their own,
# DHT, DAC, DQT, DNL, DRI, DHP, EXP.
TABLE_AND_FRAME_MARKERS = frozenset({*range(0xC0, 0xD0), 0xDB, 0xDC, 0xDD, 0xDE, 0xDF}) - {0xC8}


def _broken(reason: str) -> ImageRejected:
    return ImageRejected(RejectStatus.bad_format, f"malformed JPEG: {reason}")


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def _kept_app_segment(marker: int, payload: bytes, keep_icc_profile: bool) -> bytes | None:
    """The part of an APPn segment that is not metadata, or None to drop it whole."""
    if marker == APP0 and payload.startswith(b"JFIF\x00") and len(payload) >= 14:
        return _segment(APP0, payload[:12] + b"\x00\x00")  # version, density units, density; no thumbnail
    if marker == APP2 and payload.startswith(b"ICC_PROFILE\x00") and keep_icc_profile:
        return _segment(APP2, payload)
    if marker == APP14 and payload.startswith(b"Adobe") and len(payload) >= 12:
        return _segment(APP14, payload[:12])  # version, flags and the colour transform; nothing else
    return None


def _scan_end(data: bytes, start: int, restart_interval: int) -> int:
    """Where the entropy-coded data starting at `start` ends (the next marker that is not a restart or a stuffed
    0xFF00); restart markers must come in sequence, and only when a restart interval is defined."""
    expected = 0
    position = start
    while True:
        found = data.find(b"\xff", position)
        if found < 0 or found + 1 >= len(data):
            raise _broken("truncated: the compressed data runs past the end of the file without an EOI marker")
        following = data[found + 1]
        if following == 0x00:
            position = found + 2
            continue
        if RST0 <= following <= RST7:
            if not restart_interval:
                raise _broken("a restart marker in a scan without a restart interval (DRI)")
            if following - RST0 != expected:
                raise _broken(f"restart marker RST{following - RST0} where RST{expected} was due")
            expected = (expected + 1) % 8
            position = found + 2
            continue
        if following == 0xFF:  # fill bytes before a marker
            position = found + 1
            continue
        return found


def strip_jpeg_metadata(data: bytes, *, keep_icc_profile: bool = True) -> bytes:
    """The JPEG stream from SOI to its first EOI holding only what decodes the image (see the module docstring);
    ImageRejected for a stream that does not parse segment by segment."""
    if not data.startswith(b"\xff\xd8"):
        raise _broken("it does not start with SOI")
    out = [b"\xff\xd8"]
    position = 2
    restart_interval = 0
    seen_scan = False
    while True:
        if position + 2 > len(data):
            raise _broken("truncated: the file ends before its EOI marker")
        if data[position] != 0xFF:
            raise _broken(f"{data[position]:#04x} at byte {position} where a marker was due")
        while position + 1 < len(data) and data[position + 1] == 0xFF:  # fill bytes
            position += 1
        marker = data[position + 1] if position + 1 < len(data) else -1
        if marker == EOI:
            if not seen_scan:
                raise _broken("EOI before any image data")
            out.append(b"\xff\xd9")
            return b"".join(out)  # whatever follows EOI (MPO pictures, appended files) is dropped
        if marker == SOI or RST0 <= marker <= RST7 or marker in (0x00, 0x01, -1):
            raise _broken(f"unexpected marker 0xFF{marker & 0xFF:02X} at byte {position}")
        if position + 4 > len(data):
            raise _broken("a segment header is cut short")
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        end = position + 2 + length
        if length < 2 or end > len(data):
            raise _broken(f"segment 0xFF{marker:02X} at byte {position} declares {length} bytes past the end")
        payload = data[position + 4 : end]
        if marker == SOS:
            scan_end = _scan_end(data, end, restart_interval)
            out.append(data[position:scan_end])  # header and entropy-coded data, byte for byte
            seen_scan = True
            position = scan_end
            continue
        if marker == DRI:
            if length != 4:
                raise _broken("a DRI segment whose length is not 4")
            restart_interval = int.from_bytes(payload, "big")
        if marker in TABLE_AND_FRAME_MARKERS:
            out.append(data[position:end])
        elif 0xE0 <= marker <= 0xEF:
            kept = _kept_app_segment(marker, payload, keep_icc_profile)
            if kept:
                out.append(kept)
        elif marker != COM:
            raise _broken(f"unknown marker 0xFF{marker:02X} at byte {position}")
        position = end


@cache
def _jpegtran() -> str | None:
    return shutil.which("jpegtran")


def jpegtran_available() -> bool:
    return _jpegtran() is not None


def _run_jpegtran(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    jpegtran = _jpegtran()
    assert jpegtran is not None
    return subprocess.run([jpegtran, *args], input=data, capture_output=True, timeout=JPEGTRAN_TIMEOUT_S, check=False)


def _first_line(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "no message"


def _check_entropy_data(stripped: bytes) -> None:
    """libjpeg reads every coefficient; a warning (corrupt Huffman data, a missing restart marker, extraneous
    bytes) is a refusal: Pillow's decoder would have hidden it. jpegtran exits 2 on a warning, 1 on an error."""
    result = _run_jpegtran(["-copy", "none"], stripped)
    if result.returncode != 0:
        raise _broken(f"the compressed data does not decode cleanly ({_first_line(result.stderr)})")


def _decoded(data: bytes) -> Image.Image | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.copy()
    except (OSError, ValueError, SyntaxError, EOFError):
        return None


def _same_pixels(a: Image.Image, b: Image.Image) -> bool:
    """Decoder output compared as decoded (same mode, every byte): no conversion can hide a difference."""
    if a.mode != b.mode or a.size != b.size:
        return False
    if a.mode in ("L", "RGB", "CMYK"):  # in C, without copying both images out
        return ImageChops.difference(a, b).getbbox(alpha_only=False) is None
    return a.tobytes() == b.tobytes()


def _keep_jpeg(data: bytes, image: Image.Image, *, keep_icc_profile: bool) -> CleanImage:
    """`image` is opened and its header checked; the gate's decode of the upload, jpegtran's strict reading and
    the decode of the stripped stream run side by side (Pillow and jpegtran leave the GIL), and all must pass."""
    stripped = strip_jpeg_metadata(data, keep_icc_profile=keep_icc_profile)
    with ThreadPoolExecutor(max_workers=2) as pool:
        strict = pool.submit(_check_entropy_data, stripped) if jpegtran_available() else None
        decoded_again = pool.submit(_decoded, stripped)
        try:
            _load(image)
        finally:
            again = decoded_again.result()
            if strict is not None:
                strict.result()
    icc_profile = (image.info.get("icc_profile") or None) if keep_icc_profile else None
    if again is None or not _same_pixels(again, image):
        # Never seen on real photos; a stream whose pixels depend on a dropped segment keeps its decoded pixels.
        upright = _pixels_only(_upright(image))
        return encode_image(upright, "PNG", icc_profile=icc_profile)
    orientation = _orientation(image)
    if orientation == 1:
        return CleanImage(stripped, "image/jpeg", image.width, image.height, KeptAs.jpeg_data_kept)
    rotated = _rotate_losslessly(stripped, orientation)
    upright = _pixels_only(_upright(image))
    if rotated is not None:
        check = _decoded(rotated)
        if check is not None and check.size == upright.size:
            return CleanImage(rotated, "image/jpeg", check.width, check.height, KeptAs.jpeg_rotated_losslessly)
    return encode_image(upright, "JPEG", icc_profile=icc_profile, jpeg=_jpeg_tables(image))


def _rotate_losslessly(stripped: bytes, orientation: int) -> bytes | None:
    """jpegtran's DCT-domain transform, or None when it cannot be perfect (a partial edge MCU) or is missing."""
    if not jpegtran_available():
        return None
    result = _run_jpegtran(["-perfect", "-optimize", "-copy", "all", *JPEGTRAN_TRANSFORMS[orientation]], stripped)
    return result.stdout if result.returncode == 0 and result.stdout else None
