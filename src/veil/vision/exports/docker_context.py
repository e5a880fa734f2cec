"""The `DockerFile` export: a build context serving Azure's exported-container routes with Veil's own runtime.

Layout (a zip): `Dockerfile`, `README.md`, `app/app.py` (Flask, Azure's routes and JSON), `app/veil_runtime.py`
(a copy of `veil.vision.runtime`, the module the Veil service predicts with), `app/model.onnx` (Veil's native
graph), `app/labels.txt`, `app/tags.json` (tag name → id, when known), `app/requirements.txt`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from veil.vision import runtime
from veil.vision.runtime import ModelInfo


def _template(name: str) -> str:
    return resources.files("veil.vision.exports").joinpath("docker", name).read_text(encoding="utf-8")


def build_context(onnx_bytes: bytes, info: ModelInfo, tag_ids: dict[str, str] | None = None) -> dict[str, bytes | str]:
    files: dict[str, bytes | str] = {
        "Dockerfile": _template("Dockerfile"),
        "README.md": _template("README.md"),
        "app/app.py": _template("app.py"),
        "app/requirements.txt": _template("requirements.txt"),
        "app/veil_runtime.py": Path(runtime.__file__).read_text(encoding="utf-8"),
        "app/model.onnx": onnx_bytes,
        "app/labels.txt": "\n".join(info.labels) + "\n",
    }
    if tag_ids:
        files["app/tags.json"] = json.dumps(tag_ids, indent=2)
    return files
