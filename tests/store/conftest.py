"""Store fixtures: a real SeaweedFS (S3) server for the session, and a blob store of either backend per test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.store.seaweedfs import SeaweedFS, unavailable_reason

from veil.config import Settings, get_settings
from veil.store.blobs import BlobStore, open_blob_store


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = SeaweedFS.start(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    """The AWS variables of the test server in this process's environment (boto3 reads them, as Veil's users)."""
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    return seaweedfs


@pytest.fixture(params=["file", "s3"])
def blob_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings whose blob store is a local directory or a fresh prefix of the SeaweedFS bucket."""
    if request.param == "file":
        return get_settings(data_dir=tmp_path / "data")
    server: SeaweedFS = request.getfixturevalue("s3_env")
    return get_settings(data_dir=tmp_path / "data", blob_url=f"s3://{server.bucket}/t-{secrets.token_hex(4)}")


@pytest.fixture
def blobs(blob_settings: Settings) -> BlobStore:
    return open_blob_store(blob_settings)
