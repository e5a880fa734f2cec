"""`veil anonymize` as a user runs it: folders mirrored, metadata stripped (GPS!), orientation applied,
one-line errors with exit codes, nothing half-written."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.privacy.conftest import hidden, read_rgb, run_veil, wider_faces

COUPLE = "19_Couple_Couple_19_881.jpg"
FAMILY = "20_Family_Group_Family_Group_20_760.jpg"


def _gps_exif(rotate: bool) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0112] = 6 if rotate else 1  # Orientation: 6 = rotate 90° clockwise to display
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)})
    return exif


def _tagged_copy(src: Path, dst: Path, rotate: bool = False) -> None:
    """A real photo re-saved with EXIF GPS, an XMP packet and a comment, as a phone would leave them."""
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>'
        b"<rdf:Description>Jane Doe</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    with Image.open(src) as image:
        image.save(dst, exif=_gps_exif(rotate), xmp=xmp, comment=b"shot at home", quality=95)
    data = dst.read_bytes()
    dst.write_bytes(data[:2] + _iptc_segment("Jane Doe at home, Berlin") + data[2:])  # right after SOI


def _iptc_segment(caption: str) -> bytes:
    """A JPEG APP13 segment holding a Photoshop IPTC block with a caption (IPTC 2:120)."""
    text = caption.encode()
    record = b"\x1c\x02\x78" + struct.pack(">H", len(text)) + text
    record += b"\x00" * (len(record) % 2)
    block = b"Photoshop 3.0\x00" + b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00"
    block += struct.pack(">I", len(record)) + record
    return b"\xff\xed" + struct.pack(">H", len(block) + 2) + block


def test_folder_is_mirrored_and_every_face_hidden(tmp_path: Path) -> None:
    inputs = tmp_path / "photos"
    for sub, name in (("a", COUPLE), ("a/b", FAMILY)):
        (inputs / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(wider_faces(name, 40)[0], inputs / sub / name)
    (inputs / "notes.txt").write_text("not an image")  # skipped, not an error
    result = run_veil("anonymize", inputs, "-o", tmp_path / "clean")
    assert result.returncode == 0, result.stderr
    clean_root = tmp_path / "clean"
    written = {p.relative_to(clean_root).as_posix() for p in clean_root.rglob("*") if p.is_file()}
    assert written == {f"a/b/{FAMILY}", f"a/{COUPLE}"}
    for sub, name in (("a", COUPLE), ("a/b", FAMILY)):
        original = read_rgb(inputs / sub / name)
        clean = read_rgb(tmp_path / "clean" / sub / name)
        for face in wider_faces(name, 40)[1]:
            assert hidden(original, clean, face), f"{name}: face {face} left visible"
    assert "anonymized 2 file(s)" in result.stdout


def test_gps_exif_xmp_and_comments_are_removed_and_orientation_applied(tmp_path: Path) -> None:
    photo = tmp_path / "phone.jpg"
    _tagged_copy(wider_faces(COUPLE, 40)[0], photo, rotate=True)
    with Image.open(photo) as tagged:
        assert tagged.getexif().get_ifd(0x8825), "precondition: the input carries GPS"
        assert any(marker == "APP13" for marker, _ in tagged.applist), "precondition: and IPTC"
        width, height = tagged.size
    result = run_veil("anonymize", photo, "-o", tmp_path / "clean.jpg")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "clean.jpg") as clean:
        assert not clean.getexif(), "EXIF (with GPS) must be gone"
        assert "xmp" not in clean.info and "comment" not in clean.info
        assert all(marker != "APP13" for marker, _ in clean.applist), "IPTC must be gone"
        assert clean.size == (height, width), "EXIF orientation must be applied before the tag is dropped"
    raw = (tmp_path / "clean.jpg").read_bytes()
    assert b"Jane Doe" not in raw and b"PhoneMaker" not in raw and b"Photoshop" not in raw


def test_keep_metadata_keeps_gps_with_orientation_reset(tmp_path: Path) -> None:
    photo = tmp_path / "phone.jpg"
    _tagged_copy(wider_faces(COUPLE, 40)[0], photo, rotate=True)
    result = run_veil("anonymize", photo, "-o", tmp_path / "kept.jpg", "--keep-metadata")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "kept.jpg") as kept:
        exif = kept.getexif()
        assert exif.get_ifd(0x8825)[2] == (52.0, 31.0, 12.0)
        assert exif[0x0112] == 1  # pixels are upright now, so the tag must not rotate them again


def test_dp_pixelate_records_the_budget_in_the_image_and_the_summary(tmp_path: Path) -> None:
    src = wider_faces(COUPLE, 40)[0]
    out = tmp_path / "dp.png"
    shutil.copy(src, tmp_path / "in.jpg")
    result = run_veil(
        "anonymize",
        tmp_path / "in.jpg",
        "-o",
        tmp_path / "dp.jpg",
        "--method",
        "dp-pixelate",
        "--epsilon",
        "0.25",
        "--cell",
        "8",
        "--m",
        "4",
    )
    assert result.returncode == 0, result.stderr
    assert "total over all images and frames released: ε=0.75" in result.stdout
    with Image.open(tmp_path / "dp.jpg") as image:
        comment = image.info["comment"].decode()
    assert "epsilon=0.25 per channel, cell=8, m=4" in comment
    assert not out.exists()


def test_unreadable_image_fails_cleanly_and_writes_nothing(tmp_path: Path) -> None:
    good = wider_faces(COUPLE, 40)[0].read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cut.jpg").write_bytes(good[:2000])  # a real JPEG cut off after 2 kB
    (tmp_path / "in" / "text.png").write_text("this is not a PNG")
    result = run_veil("anonymize", tmp_path / "in", "-o", tmp_path / "out")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("not a readable image" in line for line in errors)
    assert not list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jpg"], "input not found"),
        (["{photo}", "--method", "swirl"], "unknown method"),
        (["{photo}", "--targets", "faces,plates"], "need a Veil-exported detector"),
        (["{photo}", "-o", "{tmp}/out.mp4"], "must be a image file"),
        (["{photo}", "--detector", "{tmp}/none.onnx", "--targets", "plates"], "detector model not found"),
        (["{tmp}/notes.txt"], "unsupported file type"),
        (["{photo}", "--hold-frames", "-1"], "hold frames must be >= 0"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path: Path, args: list[str], message: str) -> None:
    photo = tmp_path / "p.jpg"
    shutil.copy(wider_faces(COUPLE, 40)[0], photo)
    (tmp_path / "notes.txt").write_text("hello")
    result = run_veil("anonymize", *[a.format(photo=photo, tmp=tmp_path) for a in args])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "p.jpg"]


def test_output_never_overwrites_the_input(tmp_path: Path) -> None:
    photo = tmp_path / "p.jpg"
    shutil.copy(wider_faces(COUPLE, 40)[0], photo)
    before = photo.read_bytes()
    result = run_veil("anonymize", photo, "-o", photo)
    assert result.returncode == 2 and "would overwrite its input" in result.stderr
    assert photo.read_bytes() == before
    assert np.asarray(Image.open(photo)).shape[2] == 3
