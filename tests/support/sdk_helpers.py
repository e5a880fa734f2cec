"""Small helpers shared by the SDK tests: real dataset files, polling, and Penn-Fudan box parsing."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

POLL_TIMEOUT_S = 240.0


def photos(folder: Path, count: int, skip: int = 0) -> list[Path]:
    """The first `count` JPEG photos of a class folder after `skip` (sorted: the same files every run)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    return files[skip : skip + count]


def wait_for(fetch: Callable[[], T], done: Callable[[T], bool], what: str, timeout_s: float = POLL_TIMEOUT_S) -> T:
    """Poll `fetch()` until `done(result)`, as the quickstarts do with `time.sleep` loops."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not done after {timeout_s}s: last {value!r}")
        time.sleep(0.5)


_BOX = re.compile(r"\(Xmin, Ymin\) - \(Xmax, Ymax\) : \((\d+), (\d+)\) - \((\d+), (\d+)\)")
_SIZE = re.compile(r"Image size \(X x Y x C\) : (\d+) x (\d+)")


def pennfudan_boxes(annotation: Path) -> tuple[int, int, list[tuple[float, float, float, float]]]:
    """(width, height, boxes as normalized left/top/width/height) from a Penn-Fudan PASCAL-v1 annotation."""
    text = annotation.read_text()
    size = _SIZE.search(text)
    assert size, f"no image size in {annotation}"
    width, height = int(size.group(1)), int(size.group(2))
    boxes = []
    for match in _BOX.finditer(text):
        x0, y0, x1, y1 = (int(v) for v in match.groups())
        # PASCAL v1 pixel coordinates start at 1.
        boxes.append(((x0 - 1) / width, (y0 - 1) / height, (x1 - x0 + 1) / width, (y1 - y0 + 1) / height))
    return width, height, boxes


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """IoU of two normalized left/top/width/height boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter_w = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    inter_h = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def box_of(prediction: Any) -> tuple[float, float, float, float]:
    bb = prediction.bounding_box
    return (bb.left, bb.top, bb.width, bb.height)


def keep_predictions(endpoint: str, training_key: str, project_id: str) -> None:
    """Turn on stored predictions for a project: Veil's storing prediction routes keep no image unless the
    project's privacy policy allows it (off for every new project), while answering the same JSON."""
    import httpx

    url, headers = f"{endpoint}/veil/v1/projects/{project_id}/privacy", {"Training-Key": training_key}
    policy = httpx.get(url, headers=headers, timeout=30).json()
    assert policy["store_predictions"] is False  # the default
    response = httpx.put(url, headers=headers, json={**policy, "store_predictions": True}, timeout=30)
    assert response.status_code == 200, response.text
