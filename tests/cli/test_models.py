"""`veil models list|add` as an operator runs them: the shipped model with its sha256 and licence, a model added
by name and then used by an edge config, and files that are not people detectors refused in one line."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import dataset_path

VEIL = [str(Path(sys.executable).parent / "veil")]
NANO = Path(__file__).resolve().parents[2] / "src" / "veil" / "edge" / "models" / "yolox_nano.onnx"


def veil(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    wide = {"COLUMNS": "250"}  # the table folds long cells: wide enough to read a sha256 on one line
    return subprocess.run(
        [*VEIL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env={**os.environ, **wide}
    )


def test_list_add_and_use_a_model_by_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    listed = veil("models", "list", "--data-dir", str(data), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    nano_sha = hashlib.sha256(NANO.read_bytes()).hexdigest()
    assert "yolox-nano" in listed.stdout and nano_sha in listed.stdout and "Apache-2.0" in listed.stdout

    copy = tmp_path / "street.onnx"
    copy.write_bytes(NANO.read_bytes())
    added = veil(
        "models", "add", str(copy), "--name", "street", "--licence", "Apache-2.0", "--data-dir", str(data), cwd=tmp_path
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == nano_sha  # the last line is the sha256 of what was stored
    copy.unlink()  # the registry holds its own copy
    assert (data / "models" / "street.onnx").read_bytes() == NANO.read_bytes()
    assert "street" in veil("models", "list", "--data-dir", str(data), cwd=tmp_path).stdout

    frames = dataset_path("people-video") / "train" / "MOT17-05-FRCNN" / "img1"
    config = tmp_path / "edge.yaml"
    config.write_text(f"cameras: [{{id: c, source: {{type: folder, path: {frames}}}}}]\ndetector: {{model: street}}\n")
    checked = veil("edge", "validate", str(config), "--data-dir", str(data), cwd=tmp_path)
    assert checked.returncode == 0 and "yolox (street.onnx)" in checked.stderr, checked.stderr


def test_what_is_not_a_people_detector_is_refused_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    cases = [
        ((str(text), "--name", "notes"), "notes.onnx is not an ONNX model file"),
        ((str(NANO), "--name", "Bad Name"), "model name 'Bad Name'"),
        ((str(NANO), "--name", "yolox-nano"), "already registered"),
        ((str(NANO), "--name", "x", "--person-class", "80"), "has only 80 classes"),
    ]
    for args, message in cases:
        done = veil("models", "add", *args, "--data-dir", str(data), cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and message in done.stderr, done.stderr
    assert not (data / "models").exists() or not list((data / "models").iterdir())
