"""Every dataset format loads the same real boxes: COCO, VOC, YOLO built in tmp_path from the raccoon
annotations, plus the Penn-Fudan PASCAL 1.00 files and a folder-per-class tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from tests.conftest import dataset_path

from veil.vision.data import Sample
from veil.vision.datasets import DatasetError, load_dataset


def _pixel_boxes(sample: Sample, size: tuple[int, int]) -> list[tuple[str, float, float, float, float]]:
    width, height = size
    return sorted((b.tag, b.left * width, b.top * height, b.width * width, b.height * height) for b in sample.boxes)


def _close(a: list, b: list) -> bool:  # type: ignore[type-arg]
    return len(a) == len(b) and all(
        x[0] == y[0] and all(abs(p - q) < 1e-3 for p, q in zip(x[1:], y[1:], strict=True))
        for x, y in zip(a, b, strict=True)
    )


@pytest.fixture
def reference(raccoons: list[Sample]) -> dict[str, tuple[Sample, tuple[int, int]]]:
    images = dataset_path("raccoon") / "images"
    picked = raccoons[:6]
    return {s.key: (s, Image.open(images / s.key).size) for s in picked}


def _link_images(reference: dict, folder: Path) -> None:  # type: ignore[type-arg]
    folder.mkdir(parents=True)
    for key in reference:
        (folder / key).symlink_to(dataset_path("raccoon") / "images" / key)


def test_coco_json(tmp_path: Path, reference: dict) -> None:  # type: ignore[type-arg]
    _link_images(reference, tmp_path / "images")
    images, annotations = [], []
    for number, (key, (sample, (width, height))) in enumerate(reference.items(), 1):
        images.append({"id": number, "file_name": key, "width": width, "height": height})
        for _tag, x, y, w, h in _pixel_boxes(sample, (width, height)):
            annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": 3, "bbox": [x, y, w, h]})
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 3, "name": "raccoon"}]}
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    loaded = {s.key: s for s in load_dataset(tmp_path)}
    for key, (sample, size) in reference.items():
        assert _close(_pixel_boxes(loaded[key], size), _pixel_boxes(sample, size))


def test_yolo_txt(tmp_path: Path, reference: dict) -> None:  # type: ignore[type-arg]
    _link_images(reference, tmp_path / "images")
    (tmp_path / "labels").mkdir()
    (tmp_path / "classes.txt").write_text("raccoon\n")
    for key, (sample, _) in reference.items():
        lines = [f"0 {b.left + b.width / 2} {b.top + b.height / 2} {b.width} {b.height}" for b in sample.boxes]
        (tmp_path / "labels" / Path(key).with_suffix(".txt")).write_text("\n".join(lines))
    loaded = {s.key: s for s in load_dataset(tmp_path)}
    for key, (sample, size) in reference.items():
        assert _close(_pixel_boxes(loaded[key], size), _pixel_boxes(sample, size))


def test_voc_xml_written_fresh(tmp_path: Path, reference: dict) -> None:  # type: ignore[type-arg]
    _link_images(reference, tmp_path / "JPEGImages")
    (tmp_path / "Annotations").mkdir()
    for key, (sample, size) in reference.items():
        objects = "".join(
            f"<object><name>{tag}</name><bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}</ymin>"
            f"<xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
            for tag, x, y, w, h in _pixel_boxes(sample, size)
        )
        xml = f"<annotation><filename>{key}</filename>{objects}</annotation>"
        (tmp_path / "Annotations" / Path(key).with_suffix(".xml")).write_text(xml)
    loaded = {s.key: s for s in load_dataset(tmp_path)}
    for key, (sample, size) in reference.items():
        assert _close(_pixel_boxes(loaded[key], size), _pixel_boxes(sample, size))


def test_raccoon_voc_and_penn_fudan_counts(raccoons: list[Sample]) -> None:
    assert len(raccoons) == 40 and sum(len(s.boxes) for s in raccoons) == 44
    people = load_dataset(dataset_path("pedestrians-det") / "PennFudanPed")
    assert len(people) == 170 and sum(len(s.boxes) for s in people) == 423
    assert {b.tag for s in people for b in s.boxes} == {"person"}


def test_folder_per_class_reads_tags_and_skips_corrupt_files(tmp_path: Path) -> None:
    samples = load_dataset(dataset_path("ants-bees") / "train")
    assert {s.labels[0] for s in samples} == {"ants", "bees"} and len(samples) == 245  # incl. a real GIF
    source = dataset_path("ants-bees") / "train"
    for tag in ("ants", "bees"):
        (tmp_path / tag).mkdir()
        for photo in sorted((source / tag).glob("*.jpg"))[:2]:
            (tmp_path / tag / photo.name).symlink_to(photo)
    (tmp_path / "bees" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    loaded = load_dataset(tmp_path)
    assert len(loaded) == 4 and "truncated.jpg" not in {s.key for s in loaded}


def test_bad_datasets_raise_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "broken.json").write_text("{ not json")
    with pytest.raises(DatasetError, match="not COCO JSON"):
        load_dataset(tmp_path / "broken.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no dataset found"):
        load_dataset(empty)
