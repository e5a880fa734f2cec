"""Read the dataset formats users already have into `Sample`s. Torch-free.

`load_dataset(path)` detects the format:
- folder-per-class: `root/<tag>/*.jpg` (an image file name found under several tag folders gets all those tags);
- COCO JSON: a `.json` file (or a folder holding one) with `images`, `annotations` (bbox x,y,w,h in pixels),
  `categories`; images resolved next to the JSON, in `images/`, or by their `file_name` path;
- Pascal VOC XML: `*.xml` files with `<object><name>` and `<bndbox>` (in the folder or `Annotations/`), images in
  the same folder, `JPEGImages/` or `images/` beside it;
- YOLO txt: `images/` + `labels/` (`class cx cy w h`, normalized) with class names from `classes.txt`,
  `obj.names` or `data.yaml`;
- PASCAL Annotation 1.00 txt (Penn-Fudan): `Annotation/*.txt` with "Bounding box for object" lines.
Boxes become normalized left/top/width/height. Problems raise `DatasetError` with one line saying what is wrong.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import yaml
from PIL import Image

from veil.vision.data import LabeledBox, Sample

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
FORMATS = ("folders", "coco", "voc", "yolo", "pascal-v1")


class DatasetError(ValueError):
    """The dataset cannot be read; the message says what and where."""


def _loader(path: Path) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        try:
            return Image.open(path)
        except OSError as error:
            raise DatasetError(f"cannot read image {path}: {error}") from None

    return load


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # a corrupt or placeholder file: skipped, as Custom Vision's uploader would reject it
        return False


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _box(tag: str, x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> LabeledBox | None:
    x1, y1 = max(0.0, x1), max(0.0, y1)
    x2, y2 = min(float(width), x2), min(float(height), y2)
    if x2 <= x1 or y2 <= y1:
        return None
    return LabeledBox(tag, x1 / width, y1 / height, (x2 - x1) / width, (y2 - y1) / height)


def detect_format(path: Path) -> str:
    """Guess the dataset format from the files present."""
    if path.is_file() and path.suffix.lower() == ".json":
        return "coco"
    if not path.is_dir():
        raise DatasetError(f"dataset not found: {path} (expected a folder, or a COCO .json file)")
    if any(path.glob("*.json")) or any(path.glob("annotations/*.json")):
        return "coco"
    if any(path.glob("*.xml")) or any(path.glob("Annotations/*.xml")) or any(path.glob("annotations/*.xml")):
        return "voc"
    if (path / "labels").is_dir() and (path / "images").is_dir():
        return "yolo"
    if any(path.glob("Annotation/*.txt")) or any(path.glob("*/Annotation/*.txt")):
        return "pascal-v1"
    if any(child.is_dir() and any(_is_image(f) for f in child.iterdir()) for child in path.iterdir()):
        return "folders"
    raise DatasetError(f"no dataset found in {path}: expected tag folders, COCO JSON, VOC XML, YOLO or PASCAL txt")


def load_dataset(path: str | Path, fmt: str | None = None) -> list[Sample]:
    """All labelled images of the dataset at `path` (format detected unless given)."""
    root = Path(path)
    kind = fmt or detect_format(root)
    readers = {"folders": _folders, "coco": _coco, "voc": _voc, "yolo": _yolo, "pascal-v1": _pascal_v1}
    if kind not in readers:
        raise DatasetError(f"unknown dataset format {kind!r}; known: {', '.join(FORMATS)}")
    samples = readers[kind](root)
    if not samples:
        raise DatasetError(f"no labelled images found in {root} (format {kind})")
    return samples


def _folders(root: Path) -> list[Sample]:
    by_name: dict[str, Sample] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(filter(_is_image, folder.iterdir())):
            if not _readable(file):
                continue
            sample = by_name.setdefault(file.name, Sample(file.name, _loader(file), []))
            sample.labels.append(folder.name)
    return list(by_name.values())


def _coco(root: Path) -> list[Sample]:
    candidates = [root] if root.is_file() else sorted([*root.glob("*.json"), *root.glob("annotations/*.json")])
    if not candidates:
        raise DatasetError(f"no COCO .json file in {root}")
    json_path = candidates[0]
    try:
        data = json.loads(json_path.read_text())
        categories = {c["id"]: str(c["name"]) for c in data["categories"]}
        images = {i["id"]: i for i in data["images"]}
        annotations = data.get("annotations", [])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetError(f"{json_path} is not COCO JSON (needs images, annotations, categories): {error}") from None
    base = json_path.parent
    boxes: dict[int, list[LabeledBox]] = {}
    for item in annotations:
        image = images.get(item.get("image_id"))
        if image is None or item.get("category_id") not in categories or "bbox" not in item:
            raise DatasetError(f"{json_path}: annotation {item.get('id')} refers to an unknown image or category")
        x, y, w, h = (float(v) for v in item["bbox"])
        box = _box(categories[item["category_id"]], x, y, x + w, y + h, int(image["width"]), int(image["height"]))
        if box:
            boxes.setdefault(image["id"], []).append(box)
    samples = []
    for image_id, image in images.items():
        file = _find_image(base, str(image["file_name"]), ("images", "../images", "."))
        samples.append(Sample(file.name, _loader(file), [], boxes.get(image_id, [])))
    return samples


def _find_image(base: Path, name: str, folders: tuple[str, ...]) -> Path:
    for folder in folders:
        candidate = (base / folder / name) if not Path(name).is_absolute() else Path(name)
        if candidate.is_file():
            return candidate
        candidate = base / folder / Path(name).name
        if candidate.is_file():
            return candidate
    raise DatasetError(f"image {name!r} listed in the annotations was not found near {base}")


def _voc(root: Path) -> list[Sample]:
    xml_files = sorted([*root.glob("*.xml"), *root.glob("Annotations/*.xml"), *root.glob("annotations/*.xml")])
    samples = []
    for xml_file in xml_files:
        try:
            tree = ET.parse(xml_file).getroot()
        except ET.ParseError as error:
            raise DatasetError(f"{xml_file} is not valid VOC XML: {error}") from None
        name = tree.findtext("filename") or xml_file.with_suffix(".jpg").name
        image = _find_image(xml_file.parent, name, (".", "../JPEGImages", "../images", "JPEGImages", "images"))
        width, height = _size(image)
        boxes = []
        for obj in tree.iter("object"):
            bound = obj.find("bndbox")
            tag = (obj.findtext("name") or "").strip()
            if bound is None or not tag:
                raise DatasetError(f"{xml_file}: an <object> lacks <name> or <bndbox>")
            coords = [float(bound.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax")]
            box = _box(tag, coords[0] - 1, coords[1] - 1, coords[2], coords[3], width, height)  # VOC is 1-based
            if box:
                boxes.append(box)
        samples.append(Sample(image.name, _loader(image), [], boxes))
    return samples


def _yolo_names(root: Path) -> list[str]:
    for candidate in ("classes.txt", "obj.names"):
        if (root / candidate).is_file():
            return [line.strip() for line in (root / candidate).read_text().splitlines() if line.strip()]
    for candidate in ("data.yaml", "dataset.yaml"):
        if (root / candidate).is_file():
            names = yaml.safe_load((root / candidate).read_text()).get("names")
            return [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    raise DatasetError(f"YOLO dataset {root} has no classes.txt, obj.names or data.yaml naming the classes")


def _yolo(root: Path) -> list[Sample]:
    names = _yolo_names(root)
    samples = []
    for image in sorted(p for p in (root / "images").rglob("*") if _is_image(p)):
        relative = image.relative_to(root / "images").with_suffix(".txt")
        label_file = root / "labels" / relative
        boxes = []
        if label_file.is_file():
            width, height = _size(image)
            for number, line in enumerate(label_file.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 5 or not parts[0].isdigit() or int(parts[0]) >= len(names):
                    raise DatasetError(f"{label_file}:{number}: expected 'class cx cy w h' with a known class")
                cx, cy, w, h = (float(v) for v in parts[1:5])
                box = _box(
                    names[int(parts[0])],
                    (cx - w / 2) * width,
                    (cy - h / 2) * height,
                    (cx + w / 2) * width,
                    (cy + h / 2) * height,
                    width,
                    height,
                )
                if box:
                    boxes.append(box)
        samples.append(Sample(image.name, _loader(image), [], boxes))
    return samples


_PASCAL_BOX = re.compile(r'Bounding box for object \d+ "([^"]+)".*?:\s*\((\d+),\s*(\d+)\)\s*-\s*\((\d+),\s*(\d+)\)')
_PASCAL_FILE = re.compile(r'Image filename\s*:\s*"([^"]+)"')


def _pascal_v1(root: Path, tag: str = "person") -> list[Sample]:
    """PASCAL Annotation 1.00 (Penn-Fudan). Its walking/standing labels are both people: one tag, `person`."""
    files = sorted([*root.glob("Annotation/*.txt"), *root.glob("*/Annotation/*.txt")])
    samples = []
    for file in files:
        text = file.read_text(errors="replace")
        match = _PASCAL_FILE.search(text)
        if not match:
            raise DatasetError(f"{file}: no 'Image filename' line (not a PASCAL 1.00 annotation)")
        image = _find_image(file.parent.parent, Path(match.group(1)).name, ("PNGImages", "images", "."))
        width, height = _size(image)
        boxes = []
        for found in _PASCAL_BOX.finditer(text):
            x1, y1, x2, y2 = (float(v) for v in found.groups()[1:])
            box = _box(tag, x1 - 1, y1 - 1, x2, y2, width, height)  # 1-based pixel coordinates
            if box:
                boxes.append(box)
        samples.append(Sample(image.name, _loader(image), [], boxes))
    return samples
