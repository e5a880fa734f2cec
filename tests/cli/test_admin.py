"""`veil export` takes a trained model out of a live Veil's encrypted store (on the same data directory) as the
bundle the API's export gives; `veil predict` runs it offline with the service's answers; the read is audited."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import httpx
from tests.conftest import dataset_path
from tests.support.http_helpers import PREDICTION, TRAINING, create_ants_bees, ok, start_training, wait_iteration
from tests.support.live_server import VeilServer
from tests.support.sdk_helpers import photos


def test_export_a_trained_iteration_from_the_data_directory(veil_server: VeilServer, tmp_path: Path) -> None:
    with httpx.Client(
        base_url=veil_server.endpoint, headers={"Training-Key": veil_server.keys["admin"]}, timeout=60
    ) as http:
        project = create_ants_bees(http, dataset_path("ants-bees"), per_class=5, name="cli-export")
        nothing_yet = veil_server.cli("export", project.id, "-o", str(tmp_path / "none.zip"), check=False)
        assert nothing_yet.returncode == 2 and "no trained iteration" in nothing_yet.stderr
        assert len(nothing_yet.stderr.strip().splitlines()) == 1

        iteration = wait_iteration(http, project.id, start_training(http, project.id, backbone="lite0")["id"])
        assert iteration["status"] == "Completed", iteration["trainingErrorDetails"]
        ok(http.post(f"{TRAINING}/projects/{project.id}/iterations/{iteration['id']}/publish",
                     params={"publishName": "bugs", "predictionId": "x"}))  # fmt: skip

        out = tmp_path / "models" / "bugs.zip"
        exported = veil_server.cli("export", project.id, "--iteration", "bugs", "-o", str(out))
        assert f"wrote {out}" in exported.stdout
        with zipfile.ZipFile(out) as bundle:
            assert {"model.onnx", "labels.txt", "model_card.json"} <= set(bundle.namelist())
            card = json.loads(bundle.read("model_card.json"))
        assert card["training"]["backbone"] == "efficientnet-lite0" and sorted(card["labels"]) == ["ant", "bee"]

        photo = photos(dataset_path("ants-bees") / "val" / "bees", 1)[0]
        offline = veil_server.cli("predict", "--model", str(out), str(photo), "--json")
        offline_probabilities = {p["tagName"]: p["probability"] for p in json.loads(offline.stdout)[0]["predictions"]}
        served = httpx.post(
            f"{veil_server.endpoint}{PREDICTION}/{project.id}/classify/iterations/bugs/image/nostore",
            content=photo.read_bytes(),
            headers={"Prediction-Key": veil_server.keys["predictor"]},
            timeout=60,
        )
        assert served.status_code == 200, served.text
        for prediction in served.json()["predictions"]:
            assert abs(offline_probabilities[prediction["tagName"]] - prediction["probability"]) < 1e-4

        events = ok(http.get("/veil/v1/audit", params={"limit": 1000}))
        assert isinstance(events, list)
        downloads = [e for e in events if e["action"] == "model.download" and project.id in e["resourceIds"]]
        assert downloads and downloads[-1]["role"] == "operator"

        wrong = veil_server.cli("export", project.id, "--iteration", "Iteration 9", "-o", str(out), check=False)
        assert wrong.returncode == 2 and "'Iteration 1'" in wrong.stderr  # names the iterations that exist
        unknown = veil_server.cli("export", "no-such-project", "-o", str(out), check=False)
        assert unknown.returncode == 2 and "not found" in unknown.stderr
