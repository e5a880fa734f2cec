"""A Veil model behind Azure Custom Vision's exported-container routes: POST /image and POST /url.

Runs `model.onnx` with `veil_runtime.py` (Veil's own prediction module, copied in at export time), so answers
match the Veil service's for the same image. Images live in memory for one request; nothing is written.

    python app.py [--host 0.0.0.0] [--port 80] [--model model.onnx]
"""

from __future__ import annotations

import argparse
import io
import json
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import veil_runtime
from flask import Flask, Response, jsonify, request
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_IMAGE_BYTES = 4 * 1024 * 1024  # the limit of Azure's exported containers and prediction API
DETECTION_THRESHOLD = 0.05  # as the Veil service: low-confidence boxes are returned, callers filter
HERE = Path(__file__).resolve().parent
IMAGE_ROUTES = (
    "/image",
    "/<project>/image",
    "/<project>/image/nostore",
    "/<project>/classify/iterations/<published_name>/image",
    "/<project>/classify/iterations/<published_name>/image/nostore",
    "/<project>/detect/iterations/<published_name>/image",
    "/<project>/detect/iterations/<published_name>/image/nostore",
)
URL_ROUTES = tuple(route.replace("/image", "/url") for route in IMAGE_ROUTES)


class BadImage(ValueError):
    pass


def decode(data: bytes) -> np.ndarray:
    """Bytes → RGB uint8 array, EXIF orientation applied (as the Veil service decodes uploads)."""
    if not data:
        raise BadImage("the request has no image")
    if len(data) > MAX_IMAGE_BYTES:
        raise BadImage(f"the image is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise BadImage(f"not a readable image: {error}") from None


def predictions(model: veil_runtime.ExportedModel, tag_ids: dict[str, str], rgb: np.ndarray) -> list[dict[str, Any]]:
    if model.info.task == "detect":
        height, width = rgb.shape[:2]
        detections = model.detect(rgb, threshold=DETECTION_THRESHOLD)
        found = []
        names = detections.data.get("class_name", [])
        for (x0, y0, x1, y1), confidence, name in zip(detections.xyxy, detections.confidence, names, strict=True):
            box = {
                "left": float(x0) / width,
                "top": float(y0) / height,
                "width": float(x1 - x0) / width,
                "height": float(y1 - y0) / height,
            }
            found.append(
                {
                    "probability": float(confidence),
                    "tagId": tag_ids.get(str(name), ""),
                    "tagName": str(name),
                    "boundingBox": box,
                }
            )
        return sorted(found, key=lambda item: -item["probability"])
    return [
        {"probability": tag.probability, "tagId": tag_ids.get(tag.tag, ""), "tagName": tag.tag, "boundingBox": None}
        for tag in model.classify(rgb)
    ]


def create_app(model_path: Path = HERE / "model.onnx") -> Flask:
    model = veil_runtime.load_model(model_path)
    tags_file = model_path.parent / "tags.json"
    tag_ids: dict[str, str] = json.loads(tags_file.read_text()) if tags_file.is_file() else {}
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_IMAGE_BYTES + 64 * 1024

    def answer(rgb: np.ndarray, project: str | None) -> Response:
        return jsonify(
            {
                "id": str(uuid.uuid4()),
                "project": project or "",
                "iteration": "",
                "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "predictions": predictions(model, tag_ids, rgb),
            }
        )

    def refuse(message: str, status: int = 400) -> tuple[Response, int]:
        return jsonify({"code": "BadRequestImageFormat", "message": message}), status

    @app.get("/")
    def index() -> str:
        return f"Veil model host ({model.info.task}: {', '.join(model.info.labels)})"

    def image_handler(project: str | None = None, published_name: str | None = None) -> Any:
        upload = request.files.get("imageData")
        data = upload.read() if upload else request.get_data()
        try:
            return answer(decode(data), project)
        except BadImage as error:
            return refuse(str(error))

    def url_handler(project: str | None = None, published_name: str | None = None) -> Any:
        body = request.get_json(silent=True, force=True) or {}
        url = str(body.get("url") or body.get("Url") or "")
        if not url.startswith(("http://", "https://")):
            return refuse('expected a JSON body {"url": "http(s)://..."}')
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                data = response.read(MAX_IMAGE_BYTES + 1)
            return answer(decode(data), project)
        except BadImage as error:
            return refuse(str(error))
        except OSError as error:
            return refuse(f"could not fetch {url}: {error}")

    for route in IMAGE_ROUTES:
        app.add_url_rule(route, view_func=image_handler, methods=["POST"], endpoint=f"image:{route}")
    for route in URL_ROUTES:
        app.add_url_rule(route, view_func=url_handler, methods=["POST"], endpoint=f"url:{route}")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--model", type=Path, default=HERE / "model.onnx")
    args = parser.parse_args()
    create_app(args.model).run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
