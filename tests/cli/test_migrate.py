"""`veil migrate azure` against a second live `veil serve` acting as the Custom Vision source (same Training API).

A multilabel project (tagged and untagged photos, metadata) and a detection project (boxes) are built on the source
over HTTP as an Azure user would; the migration writes into a separate data directory; a `veil serve` on that
directory then shows the same tag names, boxes (1e-6), metadata and pixels. A re-run adds nothing; a wrong key is
exit 2 with one line.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.conftest import dataset_path
from tests.support.http_helpers import TRAINING, ok
from tests.support.live_server import VEIL, VeilServer, make_server
from tests.support.sdk_helpers import photos

DETECTION_DOMAIN = "da2e3a8a-40a5-4171-82f4-58522f70fbc1"
FOOD_DOMAIN = "c151d5b5-dd07-472a-acc8-15d29dea8518"


@dataclass
class Source:
    server: VeilServer
    http: httpx.Client
    project_ids: list[str]


def _png(path: Path) -> bytes:
    with Image.open(path) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue()


def _upload(http: httpx.Client, project_id: str, data: bytes, tag_ids: list[str] | None = None) -> str:
    params = {"tagIds": ",".join(tag_ids)} if tag_ids else {}
    summary = ok(
        http.post(
            f"{TRAINING}/projects/{project_id}/images",
            params=params,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
    )
    assert isinstance(summary, dict)
    return str(summary["images"][0]["image"]["id"])


def _multilabel_project(http: httpx.Client) -> str:
    project = ok(http.post(f"{TRAINING}/projects", params={"name": "insects", "classificationType": "Multilabel"}))
    assert isinstance(project, dict)
    pid = project["id"]
    tags = {}
    for name in ("animal", "ant", "bee"):
        tag = ok(http.post(f"{TRAINING}/projects/{pid}/tags", params={"name": name, "description": f"a {name}"}))
        assert isinstance(tag, dict)
        tags[name] = tag["id"]
    root = dataset_path("ants-bees") / "train"
    images = []
    for index, path in enumerate(photos(root / "ants", 3)):
        data = path.read_bytes() if index % 2 == 0 else _png(path)  # JPEG and PNG sources
        images.append(_upload(http, pid, data, [tags["animal"], tags["ant"]]))
    for path in photos(root / "bees", 2):
        images.append(_upload(http, pid, path.read_bytes(), [tags["animal"], tags["bee"]]))
    for path in photos(root / "bees", 2, skip=5):
        images.append(_upload(http, pid, _png(path)))  # untagged
    metadata = {"camera": "hive-3", "site": "north"}
    ok(http.post(f"{TRAINING}/projects/{pid}/images/metadata", params={"imageIds": ",".join(images[:3])},
                 json=metadata))  # fmt: skip
    return str(pid)


def _detection_project(http: httpx.Client) -> str:
    project = ok(http.post(f"{TRAINING}/projects", params={"name": "people", "domainId": DETECTION_DOMAIN}))
    assert isinstance(project, dict)
    pid = project["id"]
    tag = ok(http.post(f"{TRAINING}/projects/{pid}/tags", params={"name": "person"}))
    assert isinstance(tag, dict)
    root = dataset_path("pedestrians-det") / "PennFudanPed" / "PNGImages"
    for path in sorted(root.glob("*.png"))[:3]:
        image_id = _upload(http, pid, path.read_bytes())
        with Image.open(path) as image:
            width, height = image.size
        # Boxes with many significant digits: they must survive JSON and the database to 1e-6.
        regions = [
            {"imageId": image_id, "tagId": tag["id"], "left": 37 / width, "top": 11 / height,
             "width": 101.5 / width, "height": 203.25 / height},
            {"imageId": image_id, "tagId": tag["id"], "left": 1 / 3, "top": 2 / 7, "width": 1 / 9, "height": 3 / 11},
        ]  # fmt: skip
        ok(http.post(f"{TRAINING}/projects/{pid}/images/regions", json={"regions": regions}))
    return str(pid)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    server = make_server(tmp_path_factory.mktemp("azure-source"))
    server.start()
    server.keys["admin"] = server.create_key("admin")
    with httpx.Client(base_url=server.endpoint, headers={"Training-Key": server.keys["admin"]}, timeout=60) as http:
        yield Source(server, http, [_multilabel_project(http), _detection_project(http)])
    server.stop()


def _migrate(target: Path, endpoint: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VEIL_DATA_DIR": str(target), "COLUMNS": "200"}
    env.pop("VEIL_DATABASE_URL", None)
    return subprocess.run(
        [*VEIL, "migrate", "azure", "--endpoint", endpoint, "--training-key", key, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _images(http: httpx.Client, project_id: str) -> list[dict]:  # type: ignore[type-arg]
    found = ok(http.get(f"{TRAINING}/projects/{project_id}/images", params={"take": 256, "taggingStatus": "All"}))
    assert isinstance(found, list)
    return found


def _bytes(http: httpx.Client, image: dict) -> bytes:  # type: ignore[type-arg]
    response = http.get(image["originalImageUri"])
    assert response.status_code == 200, response.text
    return response.content


def _decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.int16)


def _signature(image: dict) -> tuple:  # type: ignore[type-arg]
    """What identifies an image across the two Veils: its size and metadata (ids differ)."""
    return (image["width"], image["height"], json.dumps(image.get("metadata") or {}, sort_keys=True))


def test_projects_arrive_identical_and_a_rerun_adds_nothing(source: Source, tmp_path: Path) -> None:
    target = make_server(tmp_path)
    target_dir, key = target.data_dir, source.server.keys["admin"]
    first = _migrate(target_dir, source.server.endpoint + "/", key, "--all")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "insects" in first.stdout and "people" in first.stdout

    target.start()
    try:
        target_key = target.create_key("admin")
        with httpx.Client(base_url=target.endpoint, headers={"Training-Key": target_key}, timeout=60) as mine:
            _check_identical(source.http, mine)
            counts_before = _counts(mine)

            again = _migrate(target_dir, source.server.endpoint, key, "--project", source.project_ids[0],
                             "--project", source.project_ids[1], "--with-iterations-metadata")  # fmt: skip
            assert again.returncode == 0, again.stdout + again.stderr
            assert "0 new" in again.stdout and "0 refused" in again.stdout
            assert "Source iterations" in again.stdout  # none trained on the source: an empty table
            assert _counts(mine) == counts_before
    finally:
        target.stop()


def _counts(http: httpx.Client) -> dict[str, int]:
    projects = ok(http.get(f"{TRAINING}/projects"))
    assert isinstance(projects, list)
    return {p["name"]: len(_images(http, p["id"])) for p in projects}


def _check_identical(theirs: httpx.Client, mine: httpx.Client) -> None:
    source_projects = ok(theirs.get(f"{TRAINING}/projects"))
    target_projects = ok(mine.get(f"{TRAINING}/projects"))
    assert isinstance(source_projects, list) and isinstance(target_projects, list)
    assert sorted(p["name"] for p in target_projects) == sorted(p["name"] for p in source_projects)
    by_name = {p["name"]: p for p in target_projects}
    for src in source_projects:
        dst = by_name[src["name"]]
        assert dst["settings"]["domainId"] == src["settings"]["domainId"]
        assert dst["settings"].get("classificationType") == src["settings"].get("classificationType")
        src_tags = ok(theirs.get(f"{TRAINING}/projects/{src['id']}/tags"))
        dst_tags = ok(mine.get(f"{TRAINING}/projects/{dst['id']}/tags"))
        assert isinstance(src_tags, list) and isinstance(dst_tags, list)
        assert sorted((t["name"], t["description"], t["type"], t["imageCount"]) for t in dst_tags) == sorted(
            (t["name"], t["description"], t["type"], t["imageCount"]) for t in src_tags
        )
        src_images, dst_images = _images(theirs, src["id"]), _images(mine, dst["id"])
        assert len(dst_images) == len(src_images)
        unmatched = list(dst_images)
        for image in src_images:
            twin = _twin(theirs, mine, image, unmatched)
            unmatched.remove(twin)
            assert sorted(t["tagName"] for t in twin.get("tags") or []) == sorted(
                t["tagName"] for t in image.get("tags") or []
            )
            src_boxes = sorted(
                (r["tagName"], r["left"], r["top"], r["width"], r["height"]) for r in image.get("regions") or []
            )
            dst_boxes = sorted(
                (r["tagName"], r["left"], r["top"], r["width"], r["height"]) for r in twin.get("regions") or []
            )
            assert len(dst_boxes) == len(src_boxes)
            for a, b in zip(src_boxes, dst_boxes, strict=True):
                assert a[0] == b[0] and np.allclose(a[1:], b[1:], rtol=0, atol=1e-6), (a, b)


def _twin(theirs: httpx.Client, mine: httpx.Client, image: dict, candidates: list[dict]) -> dict:  # type: ignore[type-arg]
    """The migrated copy of `image`: same size and metadata, and pixel for pixel the same after decoding (JPEG
    data is kept untouched by ingest, PNG is lossless)."""
    expected = _decoded(_bytes(theirs, image))
    for candidate in candidates:
        if _signature(candidate) == _signature(image) and np.array_equal(_decoded(_bytes(mine, candidate)), expected):
            return candidate
    raise AssertionError(f"no image in the target equals source image {image['id']} {_signature(image)}")


def test_a_wrong_key_is_exit_2_with_one_line(source: Source, tmp_path: Path) -> None:
    result = _migrate(tmp_path / "target", source.server.endpoint, "not-a-key", "--all")
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "refused the training key" in result.stderr
    assert not (tmp_path / "target").exists()  # nothing was written anywhere


def test_an_endpoint_that_is_not_custom_vision_is_exit_2_with_one_line(tmp_path: Path) -> None:
    result = _migrate(tmp_path / "target", "http://127.0.0.1:9", "some-key", "--all")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "cannot reach http://127.0.0.1:9" in result.stderr
