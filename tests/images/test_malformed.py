"""A corpus of malformed uploads: each refused with a 4xx and its reason, nothing stored, server healthy."""

from __future__ import annotations

import io
import os
import shutil
import struct
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from tests.support.in_process import TRAINING, Api


@dataclass(frozen=True)
class Bad:
    name: str
    body: bytes
    content_type: str = "application/octet-stream"
    multipart: bool = False  # send `body` as one file part instead of a raw body
    reason: str = ""  # a word the refusal message must contain


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def tiff_claiming(width: int, height: int) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (278, 4, 1, height), (279, 4, 1, 2**32 - 1)]  # fmt: skip
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 8) + ifd


def bmp_claiming(width: int, height: int) -> bytes:
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(dib) + 64, 0, 0, 14 + len(dib)) + dib + b"\0" * 64


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def animated_gif(frames: int) -> bytes:
    images = [Image.new("L", (16, 16), (i * 37) % 256) for i in range(frames)]  # every frame differs
    return encoded(images[0], "GIF", save_all=True, append_images=images[1:], duration=10)


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def jpeg_with_restarts(picture: Image.Image) -> bytes:
    """A real photo encoded with a restart marker after every MCU row (the stream restart tricks tamper with)."""
    return encoded(picture, "JPEG", quality=90, restart_marker_rows=1)


def swap_first_restart_markers(jpeg: bytes) -> bytes:
    """RST0 and RST1 exchanged: libjpeg resynchronises silently and decodes a shuffled image."""
    first, second = jpeg.index(b"\xff\xd0"), jpeg.index(b"\xff\xd1")
    data = bytearray(jpeg)
    data[first + 1], data[second + 1] = 0xD1, 0xD0
    return bytes(data)


def corrupt_scan(jpeg: bytes) -> bytes:
    """Entropy-coded bytes overwritten in the middle of the scan (Pillow decodes it with grey blocks, silently)."""
    middle = len(jpeg) // 2
    return jpeg[:middle] + bytes([0x00, 0x00, 0x00, 0x00] * 8) + jpeg[middle + 32 :]


def hostile_jpegs(photo: bytes, picture: Image.Image) -> list[Bad]:
    """Hostile JPEGs that cannot be cleaned to one decoded image (the cleanable ones: tests/images/test_ingest.py)."""
    restarts = jpeg_with_restarts(picture)
    after_first_segment = 4 + int.from_bytes(photo[4:6], "big")
    bads = [
        Bad(
            "JPEG with junk bytes between segments",
            photo[:after_first_segment] + b"junk" + photo[after_first_segment:],
            reason="malformed JPEG",
        ),
        Bad(
            "JPEG segment longer than the file",
            photo[:2] + b"\xff\xe1\xff\xff" + b"x" * 100 + photo[2:][:50],
            reason="Truncated",
        ),
        Bad("JPEG restart markers out of order", swap_first_restart_markers(restarts), reason="restart marker"),
        Bad(
            "JPEG restart marker without a restart interval",
            restarts.replace(_jpeg_segment(0xDD, restarts[restarts.index(b"\xff\xdd") + 4 :][:2]), b"", 1),
            reason="restart",
        ),
        Bad(
            "JPEG with a second SOI inside",
            photo[:after_first_segment] + b"\xff\xd8" + photo[after_first_segment:],
            reason="malformed JPEG",
        ),
    ]
    if shutil.which("jpegtran"):  # the strict entropy-data check needs libjpeg's own tool
        bads.append(Bad("JPEG with corrupt compressed data", corrupt_scan(photo), reason="does not decode cleanly"))
    return bads


def corpus(photo: bytes) -> list[Bad]:
    picture = Image.open(io.BytesIO(photo)).convert("RGB")
    png = encoded(picture, "PNG")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("photo.jpg", photo)
    return [
        Bad("empty body", b"", reason="empty"),
        Bad("truncated JPEG", photo[: len(photo) // 2], reason="truncated"),
        Bad("truncated PNG", png[: len(png) // 3], reason="truncated"),
        Bad("JPEG header only", photo[:20]),
        Bad("random bytes", os.urandom(20_000), reason="not a recognised image"),
        Bad("HTML page", b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"),
        Bad("SVG", b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect/></svg>'),
        Bad("PDF", b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF"),
        Bad("ZIP archive", archive.getvalue()),
        Bad("PNG header claiming 30000x30000", png_claiming(30_000, 30_000), reason="pixels"),
        Bad("TIFF claiming 20000x20", tiff_claiming(20_000, 20), reason="between 16 and 10240"),
        Bad("BMP claiming 30000x30000", bmp_claiming(30_000, 30_000), reason="pixels"),
        Bad("PNG bomb: 9000x9000 of zeros", encoded(Image.new("1", (9000, 9000)), "PNG"), reason="pixels"),
        Bad("1x1 PNG", encoded(Image.new("RGB", (1, 1)), "PNG"), reason="between 16"),
        Bad("10241x16 PNG", encoded(Image.new("L", (10_241, 16)), "PNG"), reason="10241×16"),
        Bad("7 MB file", photo + b"\0" * (7 * 1024 * 1024 - len(photo)), reason="at most"),
        Bad("GIF with 1000 frames", animated_gif(1000), reason="frames"),
        Bad("truncated GIF", animated_gif(3)[:40]),
        Bad("truncated WebP", encoded(picture, "WEBP")[:200]),
        Bad("ICO icon (not an accepted format)", encoded(picture, "ICO"), reason="not accepted"),
        Bad("JPEG sent as application/json", photo, content_type="application/json", reason="Content-Type"),
        Bad("JPEG sent as text/plain", photo, content_type="text/plain", reason="Content-Type"),
        Bad("random bytes as a multipart file", os.urandom(5000), multipart=True),
        Bad(
            "multipart with a broken body",
            b"--xyz\r\nnot a part",
            content_type="multipart/form-data; boundary=xyz",
        ),
        *hostile_jpegs(photo, picture),
    ]


def _post(api: Api, project_id: str, bad: Bad) -> tuple[int, dict[str, object]]:
    url = f"{TRAINING}/projects/{project_id}/images"
    if bad.multipart:
        response = api.client.post(url, files=[("imageData", ("x.jpg", bad.body, "image/jpeg"))], headers=api.headers)
    else:
        response = api.client.post(url, content=bad.body, headers={**api.headers, "Content-Type": bad.content_type})
    return response.status_code, response.json()


def _assert_nothing_stored(api: Api, project_id: str) -> None:
    count = api.client.get(f"{TRAINING}/projects/{project_id}/images/count", headers=api.headers).json()
    assert count == 0
    assert api.ctx.blobs.blob_ids(project_id) == set()
    folder = api.ctx.blobs.root / project_id
    assert not folder.exists() or not any(folder.iterdir()), "a blob (or a partial write) was left behind"


def test_malformed_corpus_is_refused_with_reasons(api: Api, photos: list[Path]) -> None:
    project_id = api.create_project()
    bads = corpus(photos[0].read_bytes())
    assert len(bads) >= 20
    for bad in bads:
        status, body = _post(api, project_id, bad)
        if status == 207:  # refused by ingest: Custom Vision's per-image status, with Veil's reason
            [refusal] = body["images"]  # type: ignore[misc]
            assert refusal["status"].startswith("Error") and body["isBatchSuccessful"] is False, f"{bad.name}: {body}"
            assert bad.reason in str(refusal["message"]), f"{bad.name}: {refusal}"
        else:  # refused before any image was read (size, content type, empty body)
            assert 400 <= status < 500, f"{bad.name}: {status} {body}"
            assert body.get("code") and body.get("message"), f"{bad.name}: {body}"
            assert bad.reason in str(body["message"]), f"{bad.name}: {body['message']}"
        assert api.client.get("/healthz").status_code == 200, f"unhealthy after {bad.name}"
    _assert_nothing_stored(api, project_id)
    assert api.upload(project_id, photos[:1])  # and the server still takes a good image


@pytest.mark.parametrize("problem", ["65 images in one request", "unknown tag id", "multipart without a file"])
def test_malformed_requests_store_nothing(api: Api, photos: list[Path], problem: str) -> None:
    project_id = api.create_project()
    url = f"{TRAINING}/projects/{project_id}/images"
    tiny = encoded(Image.new("RGB", (32, 32), (1, 2, 3)), "PNG")
    if problem == "65 images in one request":
        files = [("imageData", (f"{i}.png", tiny, "image/png")) for i in range(65)]
        response = api.client.post(url, files=files, headers=api.headers)
    elif problem == "unknown tag id":
        photo = ("imageData", ("a.jpg", photos[0].read_bytes(), "image/jpeg"))
        response = api.client.post(url, params={"tagIds": str(uuid.uuid4())}, files=[photo], headers=api.headers)
    else:
        body = b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nno file here\r\n--b--\r\n'
        headers = {**api.headers, "Content-Type": "multipart/form-data; boundary=b"}
        response = api.client.post(url, content=body, headers=headers)
    if problem == "multipart without a file":  # a field without a filename is an image part (msrest sends those)
        assert response.status_code == 207 and response.json()["images"][0]["status"] == "ErrorImageFormat"
    else:
        assert response.status_code == 400, response.text
        assert response.json()["code"].startswith("BadRequest") and response.json()["message"]
    _assert_nothing_stored(api, project_id)


def test_mixed_batch_keeps_the_good_and_reports_the_bad(api: Api, photos: list[Path]) -> None:
    project_id = api.create_project()
    files = [("imageData", ("good.jpg", photos[0].read_bytes(), "image/jpeg")),
             ("imageData", ("bad.jpg", b"<html>", "image/jpeg"))]  # fmt: skip
    response = api.client.post(f"{TRAINING}/projects/{project_id}/images", files=files, headers=api.headers)
    assert response.status_code == 207
    body = response.json()
    assert body["isBatchSuccessful"] is False
    assert [(i["sourceUrl"], i["status"]) for i in body["images"]] == [
        ("good.jpg", "OK"),
        ("bad.jpg", "ErrorImageFormat"),
    ]
    assert api.client.get(f"{TRAINING}/projects/{project_id}/images/count", headers=api.headers).json() == 1
