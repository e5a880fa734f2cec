"""`veil train --dp-epsilon` on a small real detection project with YOLOX-Nano, as a user runs it: exit 0, the
privacy table with the spent ε and the membership-inference audit; a bad ε exits 2 with one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import dataset_path


def _veil(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from veil.cli import main; main()"
    wide = {"COLUMNS": "250"}  # rich folds long cells; wide enough to read each row on one line
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **wide}
    )


def _raccoon_project(root: Path, count: int) -> Path:
    """The first `count` raccoon photos by name as a VOC project (annotations/ + images/, symlinked)."""
    source = dataset_path("raccoon")
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    for xml in sorted((source / "annotations").glob("*.xml"))[:count]:
        (root / "annotations" / xml.name).symlink_to(xml)
        image = source / "images" / xml.with_suffix(".jpg").name
        (root / "images" / image.name).symlink_to(image)
    return root


def test_cli_trains_private_yolox_detection_and_prints_epsilon_and_the_audit(tmp_path: Path) -> None:
    project = _raccoon_project(tmp_path / "raccoons", 15)  # the fewest a detection project takes
    out = tmp_path / "private.zip"
    flags = ["--task", "detect", "--backbone", "yolox-nano", "--input-size", "128", "--out", str(out)]
    trained = _veil("train", str(project), "--dp-epsilon", "8", *flags)
    assert trained.returncode == 0, trained.stderr[-2000:]
    text = " ".join(trained.stdout.split())
    spent = re.search(r"differential privacy │ ε = ([0-9.]+), δ = ([0-9.e+-]+) \(target ε 8\)", text)
    assert spent is not None, text[-3000:]
    assert 7.0 < float(spent.group(1)) <= 8.0 and float(spent.group(2)) < 1 / 15
    assert "membership-inference audit" in text and "loss threshold" in text
    assert re.search(r"loss threshold │ 0\.\d+ \[0\.\d+, [01]\.\d+\]", text), text[-3000:]
    with zipfile.ZipFile(out) as bundle:
        card = json.loads(bundle.read("model_card.json"))
    recorded = card["privacy"]["differential_privacy"]
    assert abs(recorded["epsilon"] - float(spent.group(1))) < 5e-3  # the table prints 3 significant digits
    assert "objectness" in recorded["mechanism"]  # ε covers the class rows and the objectness convolutions


def test_cli_refuses_a_zero_epsilon_for_yolox_detection_with_exit_2(tmp_path: Path) -> None:
    refused = _veil(
        "train", str(tmp_path / "never-read"), "--task", "detect", "--backbone", "yolox-nano", "--dp-epsilon", "0"
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "epsilon must be a positive number" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
