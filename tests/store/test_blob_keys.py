"""Per-blob keys: deleting the record that owns a blob deletes the blob's key in the same transaction, on every
path (a row delete, a project's cascade), so an old copy of the blob and the project's key decrypt nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from veil.security.crypto import KeyShredded, new_key, open_blob, seal_blob
from veil.store.db import Database
from veil.store.models import BlobKey, Image, Iteration, Prediction, Project


def _project(session: Session) -> Project:
    project = Project(name="p", domain_id="d")
    session.add(project)
    session.flush()
    return project


def _sealed_image(session: Session, project: Project, dek: bytes) -> tuple[Image, bytes, bytes]:
    image = Image(project_id=project.id, content_type="image/png", size_bytes=1, width=16, height=16)
    session.add(image)
    session.flush()
    sealed = seal_blob(dek, project.id, image.blob_id, b"pixels of one face " + os.urandom(64))
    session.add(
        BlobKey(blob_id=image.blob_id, project_id=project.id, owner_id=image.id, wrapped_key=sealed.wrapped_key)
    )
    return image, sealed.data, sealed.wrapped_key


def _database_bytes(url: str) -> bytes:
    path = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))  # the file, its WAL and journal


def test_deleting_an_image_row_shreds_its_blob(database_url: str) -> None:
    db = Database.open(database_url)
    dek = new_key()
    with db.session() as session:
        project = _project(session)
        image, blob_copy, wrapped = _sealed_image(session, project, dek)
        keep, keep_blob, keep_wrapped = _sealed_image(session, project, dek)
        project_id, image_id, blob_id = project.id, image.id, image.blob_id
    with db.read_session() as session:  # what an attacker copies before the delete: the blob and the project key
        stored = session.get(BlobKey, blob_id)
        assert stored is not None and open_blob(dek, project_id, blob_id, blob_copy, stored.wrapped_key)
    with db.session() as session:
        session.execute(delete(Image).where(Image.id == image_id))
    db.checkpoint()

    with db.read_session() as session:
        assert session.get(BlobKey, blob_id) is None
        assert session.get(BlobKey, keep.blob_id) is not None  # the other image is untouched
    with pytest.raises(KeyShredded):
        open_blob(dek, project_id, blob_id, blob_copy, None)
    assert open_blob(dek, project_id, keep.blob_id, keep_blob, keep_wrapped)
    if database_url.startswith("sqlite"):  # secure_delete + checkpoint: the wrapped key left no bytes behind
        content = _database_bytes(database_url)
        assert wrapped not in content and keep_wrapped in content
    db.dispose()


def test_project_cascade_and_other_owners_shred_their_keys(database_url: str) -> None:
    db = Database.open(database_url)
    dek = new_key()
    with db.session() as session:
        project = _project(session)
        _sealed_image(session, project, dek)
        iteration = Iteration(project_id=project.id, name="Iteration 1")
        prediction = Prediction(project_id=project.id)
        session.add_all([iteration, prediction])
        session.flush()
        for owner in (iteration.id, iteration.id, prediction.id):
            session.add(BlobKey(blob_id=os.urandom(8).hex(), project_id=project.id, owner_id=owner, wrapped_key=b"k"))
        project_id, iteration_id, prediction_id = project.id, iteration.id, prediction.id
    with db.session() as session:
        assert len(session.scalars(select(BlobKey)).all()) == 4
        session.execute(delete(Iteration).where(Iteration.id == iteration_id))  # the model and its curves
        assert len(session.scalars(select(BlobKey)).all()) == 2
        session.execute(delete(Prediction).where(Prediction.id == prediction_id))
        assert len(session.scalars(select(BlobKey)).all()) == 1
        session.execute(delete(Project).where(Project.id == project_id))  # cascades to images, then their keys
        assert session.scalars(select(BlobKey)).all() == []
    db.dispose()
