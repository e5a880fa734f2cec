"""Keeping the user's pixels: real photos given EXIF/GPS, XMP, IPTC, a comment and an ICC profile at test time come
back (decrypted through the API) as the very pixels uploaded, with the profile and nothing else, no larger;
an orientation tag is applied losslessly; hostile JPEGs are cleaned to exactly their decoded image; pixels
survive export → import → a second Veil."""

from __future__ import annotations

import io
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import piexif
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageCms
from tests.conftest import dataset_path
from tests.support.in_process import TRAINING, Api

from veil.api.app import create_app
from veil.config import get_settings
from veil.images.ingest import IngestLimits, KeptAs, jpegtran_available, keep_pixels
from veil.services.context import AppContext
from veil.services.keys import bootstrap_admin_key

GPS_MARK = b"Veil-test-camera"  # the camera's name written into EXIF: it must not survive
XMP_MARK = b"veil:secret-location"
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
needs_jpegtran = pytest.mark.skipif(not jpegtran_available(), reason="jpegtran (Debian libjpeg-turbo-progs) absent")


def real_photos() -> list[Path]:
    """Four ants/bees and four WIDER FACE photos (different cameras, sizes and encoders)."""
    ants = sorted(p for p in dataset_path("ants-bees").rglob("*.jpg") if p.stat().st_size > 30_000)[:4]
    wider = sorted(dataset_path("faces-det").rglob("*.jpg"))[:4]
    assert len(ants) == 4 and len(wider) == 4
    return [*ants, *wider]


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def exif_with_gps(orientation: int = 1) -> bytes:
    exif = {
        "0th": {piexif.ImageIFD.Make: GPS_MARK, piexif.ImageIFD.Orientation: orientation},
        "GPS": {
            piexif.GPSIFD.GPSLatitudeRef: b"N",
            piexif.GPSIFD.GPSLatitude: ((48, 1), (51, 1), (2964, 100)),
            piexif.GPSIFD.GPSLongitudeRef: b"E",
            piexif.GPSIFD.GPSLongitude: ((2, 1), (17, 1), (4008, 100)),
        },
    }
    return piexif.dump(exif)


def with_metadata(jpeg: bytes, orientation: int = 1) -> bytes:
    """The photo with EXIF (GPS, camera, orientation), XMP, IPTC, a comment and an ICC profile added as a phone
    or an editor would, its compressed data untouched (so its pixels are the photo's); a photo that has a colour
    profile already keeps its own."""
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:Description " + XMP_MARK + b"/></x:xmpmeta>"
    iptc = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0c\x1c\x02\x5a\x00\x06Paris!"
    added = (
        segment(0xE1, exif_with_gps(orientation))
        + segment(0xE1, xmp)
        + segment(0xED, iptc)
        + (b"" if icc_segments(jpeg) else segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + ICC))
        + segment(0xFE, b"shot at home " + GPS_MARK)
    )
    return jpeg[:2] + added + jpeg[2:]


def markers(jpeg: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of each segment before the first scan."""
    found, position = [], 2
    while jpeg[position + 1] != 0xDA:
        length = int.from_bytes(jpeg[position + 2 : position + 4], "big")
        found.append((jpeg[position + 1], jpeg[position + 4 : position + 2 + length]))
        position += 2 + length
    return found


def icc_segments(jpeg: bytes) -> list[bytes]:
    return [p for m, p in markers(jpeg) if m == 0xE2 and p.startswith(b"ICC_PROFILE\x00")]


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.copy()


def same_pixels(a: bytes, b: bytes) -> bool:
    x, y = decoded(a), decoded(b)
    return x.mode == y.mode and x.size == y.size and x.tobytes() == y.tobytes()


def jpegtran(data: bytes, *args: str) -> bytes:
    return subprocess.run(["jpegtran", *args], input=data, capture_output=True, check=True).stdout


@pytest.fixture
def veil(tmp_path: Path) -> Iterator[Api]:
    ctx = AppContext.open(get_settings(data_dir=tmp_path / "a", database_url=f"sqlite:///{tmp_path / 'a.db'}"))
    key = bootstrap_admin_key(ctx)
    assert key is not None
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield Api(client=client, key=key, ctx=ctx)
    ctx.close()


@pytest.fixture
def second_veil(tmp_path: Path) -> Iterator[Api]:
    """Another installation: its own data directory, database and master key."""
    ctx = AppContext.open(get_settings(data_dir=tmp_path / "b", database_url=f"sqlite:///{tmp_path / 'b.db'}"))
    key = bootstrap_admin_key(ctx)
    assert key is not None
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield Api(client=client, key=key, ctx=ctx)
    ctx.close()


def upload(api: Api, project_id: str, data: bytes) -> str:
    response = api.client.post(
        f"{TRAINING}/projects/{project_id}/images",
        content=data,
        headers={**api.headers, "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["images"][0]["image"]["id"])


def stored(api: Api, project_id: str, image_id: str) -> bytes:
    response = api.image_data(project_id, image_id)
    assert response.status_code == 200, response.text
    return response.content


def test_real_photos_keep_their_pixels_and_profile_but_no_metadata(veil: Api) -> None:
    project_id = veil.create_project()
    for path in real_photos():
        sent = with_metadata(path.read_bytes())
        kept = stored(veil, project_id, upload(veil, project_id, sent))
        assert same_pixels(kept, sent), path.name
        assert len(kept) <= len(sent), path.name
        segments = markers(kept)
        assert {m for m, _ in segments if 0xE0 <= m <= 0xEF or m == 0xFE} <= {0xE0, 0xE2, 0xEE}, path.name
        assert [p for m, p in segments if m == 0xE2] == icc_segments(sent) != [], path.name
        assert decoded(kept).info.get("icc_profile") == decoded(sent).info.get("icc_profile"), path.name
        for mark in (GPS_MARK, XMP_MARK, b"Paris!", b"Exif\x00"):
            assert mark not in kept, (path.name, mark)
        assert not decoded(kept).getexif(), path.name


def test_the_policy_can_drop_the_colour_profile(veil: Api) -> None:
    project_id = veil.create_project()
    response = veil.client.put(
        f"/veil/v1/projects/{project_id}/privacy", json={"keep_icc_profile": False}, headers=veil.headers
    )
    assert response.status_code == 200, response.text
    sent = with_metadata(real_photos()[0].read_bytes())
    kept = stored(veil, project_id, upload(veil, project_id, sent))
    assert same_pixels(kept, sent)
    assert icc_segments(sent) and not icc_segments(kept) and "icc_profile" not in decoded(kept).info


def mcu_aligned(jpeg: bytes) -> bytes:
    """The photo cropped losslessly (in the DCT domain) to whole 16×16 blocks, so any rotation can be perfect."""
    width, height = decoded(jpeg).size
    return jpegtran(jpeg, "-crop", f"{width // 16 * 16}x{height // 16 * 16}+0+0", "-copy", "none")


@needs_jpegtran
@pytest.mark.parametrize(("orientation", "transform"), [(6, ["-rotate", "90"]), (3, ["-rotate", "180"])])
def test_an_orientation_tag_comes_back_upright_and_lossless(veil: Api, orientation: int, transform: list[str]) -> None:
    photo = mcu_aligned(real_photos()[4].read_bytes())
    sent = with_metadata(photo, orientation=orientation)
    project_id = veil.create_project()
    kept = stored(veil, project_id, upload(veil, project_id, sent))
    upright = jpegtran(photo, *transform)  # the lossless rotation of the very same compressed data
    assert same_pixels(kept, upright)
    assert decoded(kept).size == decoded(upright).size
    assert not decoded(kept).getexif() and decoded(kept).info.get("icc_profile") == ICC


def test_an_orientation_that_cannot_be_lossless_is_reencoded_once_upright() -> None:
    photo = next(data for data in (p.read_bytes() for p in real_photos()) if all(s % 16 for s in decoded(data).size))
    width, height = decoded(photo).size
    clean = keep_pixels(with_metadata(photo, orientation=6), IngestLimits())
    assert clean.kept_as is KeptAs.jpeg_reencoded  # partial edge blocks: no perfect rotation exists
    expected = decoded(photo).convert("RGB").transpose(Image.Transpose.ROTATE_270)
    got = decoded(clean.data).convert("RGB")
    assert got.size == expected.size == (height, width)
    # Re-encoded once with the photo's own quantization tables: close to the upright original, not equal (the
    # rotation moves the 8×8 block grid, so this costs about what the photo's own compression did; 38.6 dB here).
    mse = float(((np.asarray(got, dtype=np.float64) - np.asarray(expected, dtype=np.float64)) ** 2).mean())
    psnr = 10 * np.log10(255**2 / mse)
    assert 35 < psnr < 60, psnr
    sent_icc = decoded(with_metadata(photo)).info.get("icc_profile")
    assert sent_icc and decoded(clean.data).info.get("icc_profile") == sent_icc and GPS_MARK not in clean.data


# --- hostile JPEGs cleaned to exactly their decoded image ----------------------------------------------------


def hostile(photo: bytes) -> dict[str, bytes]:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.sh", "#!/bin/sh\necho owned\n")
    second = io.BytesIO()
    Image.new("RGB", (64, 64), (255, 0, 0)).save(second, "JPEG")
    return {
        "JPEG + ZIP polyglot": photo + archive.getvalue(),
        "trailing data after EOI": photo + b"<script>alert(1)</script>" * 100,
        "a second picture after EOI": photo + second.getvalue(),
        "huge APP segments (60 × 64 KB)": photo[:2] + segment(0xEF, b"\xaa" * 65_000) * 60 + photo[2:],
        "HTML in a comment": photo[:2] + segment(0xFE, b"<html><body onload=alert(1)>") + photo[2:],
        "JFIF thumbnail": photo[:2]
        + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x02\x02" + b"\x7f" * 12)
        + photo[2:],
    }


def test_hostile_jpegs_are_cleaned_to_exactly_their_image(veil: Api) -> None:
    photo = real_photos()[0].read_bytes()
    project_id = veil.create_project()
    for name, sent in hostile(photo).items():
        kept = stored(veil, project_id, upload(veil, project_id, sent))
        assert same_pixels(kept, photo), name
        assert kept.endswith(b"\xff\xd9") and kept.count(b"\xff\xd9") >= 1, name
        assert not zipfile.is_zipfile(io.BytesIO(kept)), name
        assert b"<script>" not in kept and b"<html>" not in kept and b"\xaa" * 100 not in kept, name
        assert len(kept) <= len(photo), name
        assert not [m for m, _ in markers(kept) if m in (0xEF, 0xFE)], name


# --- export → import → a second Veil ---------------------------------------------------------------------------


def test_pixels_survive_export_import_and_a_second_veil(veil: Api, second_veil: Api) -> None:
    sent = [with_metadata(p.read_bytes()) for p in real_photos()[3:6]]
    source = veil.create_project("source")
    ids = [upload(veil, source, data) for data in sent]
    token = veil.client.get(f"{TRAINING}/projects/{source}/export", headers=veil.headers).json()["token"]
    response = veil.client.post(
        f"{TRAINING}/projects/import", params={"token": token, "name": "copy"}, headers=veil.headers
    )
    assert response.status_code == 200, response.text
    copy = response.json()["id"]
    listed = veil.client.get(f"{TRAINING}/projects/{copy}/images", headers=veil.headers).json()
    copies = [stored(veil, copy, image["id"]) for image in listed]
    assert len(copies) == len(ids)
    # A second installation (its own key and store) takes the copies through its upload route.
    elsewhere = second_veil.create_project("elsewhere")
    again = [stored(second_veil, elsewhere, upload(second_veil, elsewhere, data)) for data in copies]
    for original in sent:
        assert sum(same_pixels(original, c) for c in copies) == 1
        assert sum(same_pixels(original, a) for a in again) == 1
    assert all(icc_segments(a) and GPS_MARK not in a for a in again)


def _variants(photo: bytes) -> dict[str, bytes]:
    """A real photo as the modes an upload may arrive in: JPEG as shot, EXIF-rotated JPEG, PNG with alpha,
    palette PNG with a transparent colour, grey PNG, CMYK JPEG."""
    image = Image.open(io.BytesIO(photo)).convert("RGB")

    def saved(im: Image.Image, fmt: str, **extra: object) -> bytes:
        buffer = io.BytesIO()
        im.save(buffer, format=fmt, **extra)
        return buffer.getvalue()

    rgba = image.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(image.size))
    return {
        "jpeg": photo,
        "jpeg rotated (EXIF 6)": saved(image, "JPEG", quality=90, exif=piexif.dump({"0th": {274: 6}})),
        "png with alpha": saved(rgba, "PNG"),
        "palette png, transparent colour": saved(image.quantize(64), "PNG", transparency=0),
        "grey png": saved(image.convert("L"), "PNG"),
        "cmyk jpeg": saved(image.convert("CMYK"), "JPEG", quality=90),
    }


def test_prediction_decode_gives_the_pixels_of_the_kept_image_path() -> None:
    """`decode_rgb` (prediction: no metadata-free copy) equals `decode_image(...)[0].convert("RGB")` (what the
    service decoded before) pixel for pixel, for every mode an upload arrives in."""
    from veil.images.ingest import decode_image, decode_rgb

    limits = IngestLimits()
    for path in real_photos()[:2]:
        for name, data in _variants(path.read_bytes()).items():
            fast = decode_rgb(data, limits)
            previous = np.asarray(decode_image(data, limits)[0].convert("RGB"))
            assert fast.dtype == np.uint8 and fast.ndim == 3 and fast.shape[2] == 3, name
            assert np.array_equal(fast, previous), f"{path.name}, {name}"
