"""Schemathesis (pinned in the dev extra) fuzzes every operation of a live `veil serve`'s OpenAPI document with
all its checks — no 5xx, every status code, header, content type and body as documented, schema-valid input
accepted and invalid input refused, auth not ignored — once with the prediction key and once with a training
(admin) key. It is bounded (`MAX_EXAMPLES` per operation) and reproducible (fixed seed, deterministic generation).

Fuzzing reaches deep routes because the path parameters are drawn (90 % of the time) from a seeded installation:
a classification project with tags, images and a trained, published iteration, and a detection project whose
images carry regions. Deleting a project draws from projects made to be deleted, so the seeded ones survive
for the other operations. The prediction key runs first: the training key may unpublish the iteration.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.conftest import dataset_path
from tests.support.http_helpers import TRAINING, create_ants_bees, ok, start_training, wait_iteration
from tests.support.live_server import VeilServer, make_server
from tests.support.sdk_helpers import photos

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
# Per operation and phase: 5 keeps the suite under its 30 minutes (8 took 9 min at load 22 and found nothing more
# on its last runs); VEIL_FUZZ_EXAMPLES=8 or more for a deeper run.
MAX_EXAMPLES = int(os.environ.get("VEIL_FUZZ_EXAMPLES", "5"))
SEED = 13
PUBLISHED = "fuzzed"


@dataclass
class Seeded:
    server: VeilServer
    ids: dict[str, list[str]]  # path parameter name → real values


def _detection_project(http: httpx.Client, root: Path) -> tuple[str, str, list[str]]:
    """A detection project, one tag, two photos with a region each (base64 JSON, as the SDK sends them)."""
    domains = ok(http.get(f"{TRAINING}/domains"))
    assert isinstance(domains, list)
    domain = next(d["id"] for d in domains if d["type"] == "ObjectDetection")
    project = ok(http.post(f"{TRAINING}/projects", params={"name": "fuzz boxes", "domainId": domain}))
    assert isinstance(project, dict)
    tag = ok(http.post(f"{TRAINING}/projects/{project['id']}/tags", params={"name": "insect"}))
    assert isinstance(tag, dict)
    region = {"tagId": tag["id"], "left": 0.1, "top": 0.2, "width": 0.5, "height": 0.4}
    entries = [
        {"name": p.name, "contents": base64.b64encode(p.read_bytes()).decode(), "regions": [region]}
        for p in photos(root / "val" / "ants", 2)
    ]
    created = ok(http.post(f"{TRAINING}/projects/{project['id']}/images/files", json={"images": entries}))
    assert isinstance(created, dict)
    return project["id"], tag["id"], [i["image"]["id"] for i in created["images"]]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    root = dataset_path("ants-bees")
    # The wrong-key throttle (tests/security) would answer 429 to the fuzzer's deliberate bad keys: lifted here.
    server = make_server(tmp_path_factory.mktemp("fuzz"), VEIL_AUTH_FAILURE_BURST="1000000")
    server.start()
    try:
        server.keys["admin"] = server.create_key("admin")
        server.keys["predictor"] = server.create_key("predictor")
        with httpx.Client(
            base_url=server.endpoint, headers={"Training-Key": server.keys["admin"]}, timeout=120
        ) as http:
            project = create_ants_bees(http, root, per_class=5, name="fuzz classes")
            iteration = wait_iteration(http, project.id, start_training(http, project.id)["id"])
            assert iteration["status"] == "Completed", iteration["trainingErrorDetails"]
            ok(
                http.post(
                    f"{TRAINING}/projects/{project.id}/iterations/{iteration['id']}/publish",
                    params={"publishName": PUBLISHED, "predictionId": "ignored"},
                )
            )
            boxes, box_tag, box_images = _detection_project(http, root)
            images = ok(http.get(f"{TRAINING}/projects/{project.id}/images", params={"take": 3}))
            assert isinstance(images, list)
            doomed = [ok(http.post(f"{TRAINING}/projects", params={"name": f"doomed {i}"})) for i in range(3)]
            domains = ok(http.get(f"{TRAINING}/domains"))
            keys = ok(http.get("/veil/v1/keys"))
            assert isinstance(domains, list) and isinstance(keys, list)
        ids = {
            "projectId": [project.id, boxes],
            "iterationId": [iteration["id"]],
            "publishedName": [PUBLISHED],
            "tagId": [*project.tags.values(), box_tag],
            "tagName": list(project.tags),
            "imageId": [*(i["id"] for i in images), *box_images],
            "domainId": [d["id"] for d in domains[:4]],
            "keyId": [k["id"] for k in keys if k["role"] == "predictor"],
            "doomed": [p["id"] for p in doomed if isinstance(p, dict)],
        }
        # Fuzz without the training worker: a fuzzed `train` queues a job and nothing trains meanwhile.
        server.stop()
        server.serve_args = ("--no-worker",)
        server.start()
        yield Seeded(server, ids)
    finally:
        server.stop()


def _config(seeded: Seeded, folder: Path) -> Path:
    """schemathesis.toml: real ids for the path parameters (90 % of the time), throwaway projects to delete."""
    lines = []
    for name, values in seeded.ids.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    lines += [
        f'"path.{name}" = {{ dictionary = "{name}", probability = 0.9 }}' for name in seeded.ids if name != "doomed"
    ]
    lines += [
        "",
        # Custom Vision's rules beyond a JSON schema (name lengths, tag types, image bytes that decode, project
        # state, URL fetching off by default) answer 400 with the SDK's specific codes from the service layer;
        # schema-level constraints would turn those into generic validation errors. So schema-valid input may
        # be a 400; it must never be a 5xx or an undocumented answer.
        "[checks.positive_data_acceptance]",
        'expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429"]',
        "",
        "[[operations]]",
        'include-method = "DELETE"',
        r"include-path-regex = '/projects/\{projectId\}$'",
        'parameters = { "path.projectId" = { dictionary = "doomed", probability = 0.9 } }',
    ]
    path = folder / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fuzz(seeded: Seeded, header: str, key: str, folder: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    command = [
        SCHEMATHESIS,
        "--config-file",
        str(_config(seeded, folder)),
        "--no-color",
        "run",
        f"{seeded.server.endpoint}/openapi.json",
        # v3.3 training and v3.0 prediction are the same routers as v3.4-preview and v3.1: one of each. And
        # `artifacts`, the one route answered 501 by design (test_customvision.py checks that answer).
        "--exclude-path-regex",
        r"^/customvision/(v3\.3/training|v3\.0/prediction)/|/artifacts$",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-deterministic",
        "--workers",
        "1",  # two workers crash Hypothesis's lambda printer on CPython 3.11 (concurrent ast.parse)
        "--request-timeout",
        "60",
        "--header",
        f"{header}: {key}",
        "--report",
        "junit",
        "--report-dir",
        str(folder),
    ]
    # Run in the test's folder: schemathesis keeps a crash cache in its working directory, which it would replay.
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=1200, check=False)
    summary = "\n".join(result.stdout.splitlines()[-40:])
    return result, summary


@pytest.mark.parametrize(("header", "role"), [("Prediction-Key", "predictor"), ("Training-Key", "admin")])
def test_fuzzed_api_has_no_server_error_and_keeps_its_schema(
    seeded: Seeded, header: str, role: str, tmp_path: Path
) -> None:
    result, summary = _fuzz(seeded, header, seeded.server.keys[role], tmp_path)
    print(summary)  # the operation and case counts, kept in the pytest log (-rA / -s)
    server_log = seeded.server.log_path.read_text(errors="replace") if seeded.server.log_path else ""
    tracebacks = server_log[server_log.find("Traceback") :][-8000:] if "Traceback" in server_log else ""
    assert result.returncode == 0, (
        f"schemathesis found failures:\n{result.stdout[-20000:]}\n{result.stderr[-2000:]}\nserver:\n{tracebacks}"
    )
    tested = re.search(r"(\d+) passed", summary)
    assert tested and int(tested[1]) > 100, summary  # it ran the operations, it did not skip them
    assert "Traceback" not in server_log, tracebacks
