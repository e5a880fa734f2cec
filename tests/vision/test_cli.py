"""`veil train` and `veil predict` as a user runs them (real subprocesses), including their one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from tests.conftest import dataset_path

from veil.vision.runtime import load_model

VEIL = [sys.executable, "-m", "veil.cli"]


def _veil(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from veil.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def _folder_dataset(root: Path, per_class: int) -> Path:
    source = dataset_path("ants-bees") / "train"
    for tag in ("ants", "bees"):
        (root / tag).mkdir(parents=True)
        for path in sorted((source / tag).glob("*.jpg"))[40 : 40 + per_class]:
            (root / tag / path.name).symlink_to(path)
    return root


def test_train_then_predict_offline(tmp_path: Path) -> None:
    data = _folder_dataset(tmp_path / "photos", 6)
    out = tmp_path / "out" / "bugs.zip"
    trained = _veil("train", str(data), "--task", "classify", "--input-size", "64", "--seed", "2", "--out", str(out))
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "held-out metrics (kfold:5" in trained.stdout and "overall" in trained.stdout
    assert out.is_file() and (out.parent / "bugs.pr-ants.png").is_file() and (out.parent / "bugs.pr-bees.png").is_file()

    photo = sorted((dataset_path("ants-bees") / "val" / "bees").glob("*.jpg"))[0]
    predicted = _veil("predict", "--model", str(out), str(photo), "--json")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    answer = json.loads(predicted.stdout)[0]["predictions"]
    assert {p["tagName"] for p in answer} == {"ants", "bees"}
    # the CLI and the library (the service's code path) give the same numbers
    from PIL import Image

    library = load_model(out).classify(np.asarray(Image.open(photo).convert("RGB")))
    assert [(p.tag, round(p.probability, 6)) for p in library] == [(p["tagName"], p["probability"]) for p in answer]


def test_errors_are_one_line_with_nonzero_exit(tmp_path: Path) -> None:
    missing = _veil("train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.zip"))
    assert missing.returncode != 0 and "dataset not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 nonsense")
    bad_model = _veil("predict", "--model", str(junk), str(junk))
    assert bad_model.returncode != 0 and "not a Veil model bundle" in bad_model.stderr
    assert len(bad_model.stderr.strip().splitlines()) == 1


def test_multilabel_training_from_tag_folders(tmp_path: Path) -> None:
    """A photo under several tag folders carries all those tags; each tag gets its own sigmoid."""
    data = tmp_path / "animals"
    sources = {
        "ants": sorted((dataset_path("ants-bees") / "train" / "ants").glob("*.jpg"))[40:46],
        "bees": sorted((dataset_path("ants-bees") / "train" / "bees").glob("*.jpg"))[40:46],
        "raccoon": sorted((dataset_path("raccoon") / "images").glob("*.jpg"))[:6],
    }
    for tag, photos in sources.items():
        for folder in (tag, "animal"):
            (data / folder).mkdir(parents=True, exist_ok=True)
            for photo in photos:
                (data / folder / photo.name).symlink_to(photo)
    out = tmp_path / "animals.zip"
    trained = _veil("train", str(data), "--task", "multilabel", "--seed", "1", "--out", str(out))
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "held-out metrics" in trained.stdout and all(tag in trained.stdout for tag in ("animal", "raccoon"))

    unseen_raccoon = sorted((dataset_path("raccoon") / "images").glob("*.jpg"))[-1]
    unseen_bee = sorted((dataset_path("ants-bees") / "val" / "bees").glob("*.jpg"))[0]
    predicted = _veil("predict", "--model", str(out), str(unseen_raccoon), str(unseen_bee), "--json")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    raccoon, bee = (
        {p["tagName"]: p["probability"] for p in row["predictions"]} for row in json.loads(predicted.stdout)
    )
    assert raccoon["animal"] > 0.5 and raccoon["raccoon"] > 0.5
    assert raccoon["ants"] < 0.5 and raccoon["bees"] < 0.5
    assert bee["animal"] > 0.5 and bee["raccoon"] < 0.5 and bee["bees"] > bee["ants"]
    # independent sigmoids: probabilities need not sum to one
    assert abs(sum(raccoon.values()) - 1.0) > 0.2
