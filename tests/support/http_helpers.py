"""Raw HTTP helpers for the contract tests: a small ants/bees project trained as curl users would."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.support.sdk_helpers import photos

TRAINING = "/customvision/v3.3/training"
PREDICTION = "/customvision/v3.0/prediction"


@dataclass(frozen=True)
class SmallProject:
    id: str
    tags: dict[str, str]  # name → id


def ok(response: httpx.Response, status: int = 200) -> dict | list | int | bool:  # type: ignore[type-arg]
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json() if response.content else {}


def create_ants_bees(http: httpx.Client, root: Path, per_class: int, name: str = "contract") -> SmallProject:
    """A classification project with `per_class` real photos per tag, uploaded as octet-stream bodies."""
    project = ok(http.post(f"{TRAINING}/projects", params={"name": name}))
    assert isinstance(project, dict)
    tags = {}
    for tag, folder in (("ant", "ants"), ("bee", "bees")):
        created = ok(http.post(f"{TRAINING}/projects/{project['id']}/tags", params={"name": tag}))
        assert isinstance(created, dict)
        tags[tag] = created["id"]
        for path in photos(root / "train" / folder, per_class):
            ok(
                http.post(
                    f"{TRAINING}/projects/{project['id']}/images",
                    params={"tagIds": tags[tag]},
                    content=path.read_bytes(),
                    headers={"Content-Type": "application/octet-stream"},
                )
            )
    return SmallProject(project["id"], tags)


def start_training(http: httpx.Client, project_id: str, **params: str) -> dict:  # type: ignore[type-arg]
    iteration = ok(http.post(f"{TRAINING}/projects/{project_id}/train", params=params))
    assert isinstance(iteration, dict) and iteration["status"] == "Training"
    return iteration


def wait_iteration(http: httpx.Client, project_id: str, iteration_id: str, timeout_s: float = 240) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout_s
    while True:
        iteration = ok(http.get(f"{TRAINING}/projects/{project_id}/iterations/{iteration_id}"))
        assert isinstance(iteration, dict)
        if iteration["status"] != "Training":
            return iteration
        assert time.monotonic() < deadline, f"iteration still training after {timeout_s}s"
        time.sleep(0.5)


def wait_job_running(http: httpx.Client, project_id: str, iteration_id: str, timeout_s: float = 60) -> dict:  # type: ignore[type-arg]
    """Poll Veil's job route until the training job runs in its worker process."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = ok(http.get(f"/veil/v1/projects/{project_id}/iterations/{iteration_id}/job"))
        assert isinstance(job, dict)
        if job["status"] == "running":
            return job
        assert job["status"] == "queued", job
        assert time.monotonic() < deadline, "training job never started"
        time.sleep(0.2)


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc), e.g. the worker's training process under `veil serve`."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(child) for child in text)
    return children


def training_process(server_pid: int, timeout_s: float = 30) -> int:
    """The spawned training process of the server (a multiprocessing child, not its resource tracker)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for child in child_pids(server_pid):
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"spawn_main" in cmdline:
                return child
        assert time.monotonic() < deadline, "no training process under the server"
        time.sleep(0.2)
