"""The orphan sweep on both blob stores: unreferenced ciphertext past the grace period goes; whatever a row names,
and whatever is younger than the grace period (a write whose row is about to commit), stays."""

from __future__ import annotations

import time
from pathlib import Path

from veil.store.blobs import BlobStore
from veil.store.db import Database
from veil.store.models import Export, Image, Iteration, Prediction, Project, new_id
from veil.store.sweep import PeriodicTask, referenced_blob_ids, sweep_orphans

GRACE_S = 600.0


def _project(db: Database) -> str:
    project_id = new_id()
    with db.session() as session:
        session.add(Project(id=project_id, name="sweep", domain_id=new_id(), wrapped_dek=b"k" * 40, kek_id="kek"))
    return project_id


def _database(tmp_path: Path) -> Database:
    return Database.open(f"sqlite:///{tmp_path / 'veil.db'}")


def test_sweep_removes_only_old_unreferenced_blobs(blobs: BlobStore, tmp_path: Path) -> None:
    db = _database(tmp_path)
    project_id = _project(db)
    kept = {name: new_id() for name in ("image", "prediction", "model", "evaluation", "curve", "loss", "export")}
    for blob_id in kept.values():
        blobs.put(project_id, blob_id, b"ciphertext")
    orphans = {new_id() for _ in range(3)}  # written, then the batch failed before its rows committed
    for blob_id in orphans:
        blobs.put(project_id, blob_id, b"orphan ciphertext")
    with db.session() as session:
        session.add(Image(project_id=project_id, blob_id=kept["image"], content_type="image/jpeg",
                          size_bytes=10, width=1, height=1))  # fmt: skip
        session.add(Prediction(project_id=project_id, image_blob_id=kept["prediction"]))
        iteration = Iteration(project_id=project_id, name="It 1", model_blob_id=kept["model"], status="Completed")
        iteration.metrics = {
            "evaluation_blob_id": kept["evaluation"],
            "pr_curve_blob_ids": {"ant": kept["curve"]},
            "training_curve_blob_id": kept["loss"],
            "precision": 0.9,
        }
        session.add(iteration)
        session.flush()
        session.add(Export(project_id=project_id, iteration_id=iteration.id, platform="ONNX", blob_id=kept["export"]))
    with db.read_session() as session:
        assert referenced_blob_ids(session, project_id) == set(kept.values())

    fresh = sweep_orphans(db, blobs, grace_s=GRACE_S)  # everything is younger than the grace period
    assert (fresh.blobs, blobs.blob_ids(project_id)) == (0, set(kept.values()) | orphans)

    later = sweep_orphans(db, blobs, grace_s=GRACE_S, now=time.time() + 2 * GRACE_S)
    assert later.blobs == len(orphans) and later.bytes == len(orphans) * len(b"orphan ciphertext")
    assert blobs.blob_ids(project_id) == set(kept.values())
    again = sweep_orphans(db, blobs, grace_s=GRACE_S, now=time.time() + 2 * GRACE_S)
    assert again.blobs == 0  # idempotent: several nodes may sweep


def test_sweep_empties_what_a_deleted_project_left(blobs: BlobStore, tmp_path: Path) -> None:
    db = _database(tmp_path)
    live = _project(db)
    gone = new_id()  # a crash between the project's row deletion and its blobs' removal
    for _ in range(3):
        blobs.put(gone, new_id(), b"unreadable: its key was destroyed with the row")
    blobs.put(live, new_id(), b"fresh, row not yet committed")

    report = sweep_orphans(db, blobs, grace_s=GRACE_S, now=time.time() + 2 * GRACE_S)
    assert report.blobs == 4
    assert gone not in blobs.project_ids() and blobs.blob_ids(gone) == set()
    assert blobs.blob_ids(live) == set()


def test_sweep_runs_at_start_and_periodically(blobs: BlobStore, tmp_path: Path) -> None:
    db = _database(tmp_path)
    project_id = _project(db)
    loop = PeriodicTask("sweep", lambda: sweep_orphans(db, blobs, grace_s=0.0), interval_s=0.2)
    loop.start()
    try:
        blobs.put(project_id, new_id(), b"orphan")
        deadline = time.monotonic() + 10
        while blobs.blob_ids(project_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert blobs.blob_ids(project_id) == set()
    finally:
        loop.stop()
