"""Training jobs inside a live `veil serve`: a crashed training process fails its iteration (with the reason)
and the server lives on; cancel stops a training; a server killed mid-training runs the job again on restart;
a separate `veil worker` runs the jobs of a `veil serve --no-worker`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import dataset_path
from tests.support.http_helpers import (
    TRAINING,
    create_ants_bees,
    ok,
    start_training,
    training_process,
    wait_iteration,
    wait_job_running,
)
from tests.support.live_server import VEIL, VeilServer, make_server


@pytest.fixture(scope="module")
def ants_bees(veil_server: VeilServer) -> Iterator[tuple[httpx.Client, str]]:
    with httpx.Client(
        base_url=veil_server.endpoint, headers={"Training-Key": veil_server.keys["admin"]}, timeout=60
    ) as http:
        project = create_ants_bees(http, dataset_path("ants-bees"), per_class=5, name="jobs")
        yield http, project.id


def _wait_for_progress(http: httpx.Client, project_id: str, iteration_id: str) -> None:
    """The training process reports its stage and percent into the job row; the API shows them."""
    deadline = time.monotonic() + 90
    while True:
        job = ok(http.get(f"/veil/v1/projects/{project_id}/iterations/{iteration_id}/job"))
        assert isinstance(job, dict) and job["status"] == "running", job
        if job["stage"] not in ("", "starting") and job["percent"] > 0:
            return
        assert time.monotonic() < deadline, f"no progress reported: {job}"
        time.sleep(0.1)


def test_a_killed_training_process_fails_the_iteration_and_the_server_lives_on(
    veil_server: VeilServer, ants_bees: tuple[httpx.Client, str]
) -> None:
    http, project_id = ants_bees
    assert veil_server.process is not None
    iteration = start_training(http, project_id, forceTrain="true")
    wait_job_running(http, project_id, iteration["id"])
    _wait_for_progress(http, project_id, iteration["id"])
    os.kill(training_process(veil_server.process.pid), signal.SIGKILL)  # what the OOM killer would do
    failed = wait_iteration(http, project_id, iteration["id"])
    assert failed["status"] == "Failed"
    assert "SIGKILL" in failed["trainingErrorDetails"]
    job = ok(http.get(f"/veil/v1/projects/{project_id}/iterations/{iteration['id']}/job"))
    assert isinstance(job, dict) and job["status"] == "failed" and "SIGKILL" in job["error"]
    assert veil_server.alive()
    assert httpx.get(f"{veil_server.endpoint}/healthz").status_code == 200


def test_cancel_stops_a_running_training(veil_server: VeilServer, ants_bees: tuple[httpx.Client, str]) -> None:
    http, project_id = ants_bees
    iteration = start_training(http, project_id, forceTrain="true")
    wait_job_running(http, project_id, iteration["id"])
    ok(http.post(f"/veil/v1/projects/{project_id}/iterations/{iteration['id']}/cancel"))
    cancelled = wait_iteration(http, project_id, iteration["id"])
    assert cancelled["status"] == "Failed" and "cancel" in cancelled["trainingErrorDetails"]
    job = ok(http.get(f"/veil/v1/projects/{project_id}/iterations/{iteration['id']}/job"))
    assert isinstance(job, dict) and job["status"] == "cancelled"
    not_training = http.post(f"/veil/v1/projects/{project_id}/iterations/{iteration['id']}/cancel")
    assert not_training.status_code == 400


def test_restart_retries_a_training_interrupted_by_a_server_kill(tmp_path: Path) -> None:
    """The job outlives the process running it: after a kill -9 and a restart, the interrupted training runs
    again (attempt 2) and completes; the project stays usable."""
    server = make_server(tmp_path)
    server.start()
    try:
        key = server.create_key("admin")
        with httpx.Client(base_url=server.endpoint, headers={"Training-Key": key}, timeout=60) as http:
            project = create_ants_bees(http, dataset_path("ants-bees"), per_class=5, name="restart")
            iteration = start_training(http, project.id)
            wait_job_running(http, project.id, iteration["id"])
            server.stop(signal.SIGKILL)  # the whole process group: server and training process
            server.start()
            try:
                after = wait_iteration(http, project.id, iteration["id"])
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nserver log:\n{server.log()[-4000:]}") from exc
            assert after["status"] == "Completed", after["trainingErrorDetails"]
            job = ok(http.get(f"/veil/v1/projects/{project.id}/iterations/{iteration['id']}/job"))
            assert isinstance(job, dict) and job["status"] == "succeeded" and job["attempts"] == 2, job
            # The project trains again normally.
            retry = http.post(f"{TRAINING}/projects/{project.id}/train", params={"forceTrain": "true"})
            assert retry.status_code == 200, retry.text
    finally:
        server.stop(signal.SIGKILL)


def test_a_separate_veil_worker_runs_the_jobs_of_a_server_without_one(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.serve_args = ("--no-worker",)
    server.start()
    worker_log = (tmp_path / "worker.log").open("wb")
    worker: subprocess.Popen[bytes] | None = None
    try:
        key = server.create_key("admin")
        with httpx.Client(base_url=server.endpoint, headers={"Training-Key": key}, timeout=60) as http:
            project = create_ants_bees(http, dataset_path("ants-bees"), per_class=5, name="scale-out")
            iteration = start_training(http, project.id, backbone="lite0")
            time.sleep(3)  # nobody runs it yet
            job = ok(http.get(f"/veil/v1/projects/{project.id}/iterations/{iteration['id']}/job"))
            assert isinstance(job, dict) and job["status"] == "queued", job
            worker = subprocess.Popen(
                [*VEIL, "worker", "--poll-seconds", "0.2"],
                env=server.env,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            done = wait_iteration(http, project.id, iteration["id"])
            assert done["status"] == "Completed", done["trainingErrorDetails"]
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
            assert "Veil worker" in (tmp_path / "worker.log").read_text()
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker_log.close()
        server.stop()
