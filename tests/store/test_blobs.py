"""Blob stores, local directory and S3 (a real SeaweedFS): the same behaviour from both, and the local one's
lifecycle defects fixed — a CLI beside a running writer never removes its temporary file, a full disk leaves
nothing behind."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from veil.config import get_settings
from veil.store.blob_url import open_blob_store
from veil.store.blobs import (
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    BlobStoreFull,
    LocalBlobStore,
)
from veil.store.models import new_id
from veil.store.s3 import S3BlobStore

VEIL_BIN = str(Path(sys.executable).with_name("veil"))


def test_put_get_list_delete(blobs: BlobStore) -> None:
    project, other = new_id(), new_id()
    payloads = {new_id(): secrets.token_bytes(n) for n in (1, 1000, 300_000)}
    for blob_id, data in payloads.items():
        blobs.put(project, blob_id, data)
    blobs.put(other, new_id(), b"other project")

    assert {blob_id: blobs.get(project, blob_id) for blob_id in payloads} == payloads
    assert blobs.blob_ids(project) == set(payloads)
    assert {info.size for info in blobs.list_blobs(project)} == {1, 1000, 300_000}
    assert {project, other} <= blobs.project_ids()

    first = next(iter(payloads))
    blobs.put(project, first, b"replaced")  # same id: replaced whole
    assert blobs.get(project, first) == b"replaced"
    blobs.delete(project, first)
    blobs.delete(project, first)  # deleting a missing blob is not an error
    assert not blobs.exists(project, first)
    with pytest.raises(BlobNotFound):
        blobs.get(project, first)

    blobs.delete_project(project)
    assert blobs.blob_ids(project) == set() and project not in blobs.project_ids()
    assert blobs.blob_ids(other) != set()  # only that project's blobs went


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "x.y", "..", "ü"])
def test_ids_that_could_escape_are_refused(blobs: BlobStore, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid blob path component"):
        blobs.put(new_id(), bad, b"x")
    with pytest.raises(ValueError, match="invalid blob path component"):
        blobs.get(bad, new_id())


def test_writable_probe(blobs: BlobStore) -> None:
    blobs.check_writable()
    assert blobs.project_ids() == set() or all(not p.startswith(".") for p in blobs.project_ids())


def test_blob_url_selects_the_backend(tmp_path: Path, s3_env: object) -> None:
    assert isinstance(open_blob_store(get_settings(data_dir=tmp_path)), LocalBlobStore)
    local = open_blob_store(get_settings(data_dir=tmp_path, blob_url=f"file://{tmp_path / 'elsewhere'}"))
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path / "elsewhere"
    s3 = open_blob_store(get_settings(data_dir=tmp_path, blob_url="s3://veil/site-a/"))
    assert isinstance(s3, S3BlobStore) and (s3.bucket, s3.prefix) == ("veil", "site-a")
    assert s3.client.meta.config.s3["addressing_style"] == "path"  # not AWS: no per-bucket DNS names
    with pytest.raises(ValueError, match="expected s3://bucket/prefix"):
        open_blob_store(get_settings(data_dir=tmp_path, blob_url="ftp://host/x"))


def _errors(backend: str, operation: str) -> float:
    value = REGISTRY.get_sample_value("veil_blob_store_errors_total", {"backend": backend, "operation": operation})
    return value or 0.0


def test_wrong_s3_credentials_are_a_blob_store_error(
    tmp_path: Path, s3_env: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    blobs = open_blob_store(get_settings(data_dir=tmp_path, blob_url="s3://veil/wrong-key"))
    before = _errors("s3", "put")
    with pytest.raises(BlobStoreError, match=r"SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied"):
        blobs.put(new_id(), new_id(), b"x")
    assert _errors("s3", "put") == before + 1
    with pytest.raises(BlobStoreError):
        blobs.check_writable()


def test_unreachable_s3_endpoint_is_a_blob_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.store.seaweedfs import free_ports

    [port] = free_ports(1)  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    blobs = open_blob_store(get_settings(data_dir=tmp_path, blob_url="s3://veil/down"))
    with pytest.raises(BlobStoreError, match="Could not connect"):
        blobs.get(new_id(), new_id())


# --- the local directory's temporary files --------------------------------------------------------------

_SLOW_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from veil.store.blobs import LocalBlobStore
    store = LocalBlobStore(Path(sys.argv[1]))
    store.put(sys.argv[2], sys.argv[3], b"v" * int(sys.argv[4]))
    print("written", flush=True)
    """
)


@pytest.fixture
def stopped_writer(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, str, str]]:
    """A process caught (SIGSTOP) in the middle of writing a large blob: its temporary file exists."""
    data_dir = tmp_path / "data"
    root = data_dir / "blobs"
    project, blob_id = new_id(), new_id()
    LocalBlobStore(root).put(project, new_id(), b"the project folder exists")
    for size in (256, 512, 1024, 2048):  # MB-sized writes until one is caught in flight
        writer = subprocess.Popen(
            [sys.executable, "-c", _SLOW_WRITER, str(root), project, blob_id, str(size * 1024 * 1024)],
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while writer.poll() is None and time.monotonic() < deadline:
            if list((root / project).glob(".tmp-*")):
                writer.send_signal(signal.SIGSTOP)
                break
            time.sleep(0.0005)
        if writer.poll() is None and list((root / project).glob(".tmp-*")):
            try:
                yield writer, data_dir, project, blob_id
            finally:
                writer.send_signal(signal.SIGCONT)
                if writer.poll() is None:
                    writer.wait(60)
            return
        writer.wait(60)
    pytest.skip("could not catch a writer mid-write on this filesystem (writes too fast)")


def test_cli_beside_a_writing_process_keeps_its_temporary_file(
    stopped_writer: tuple[subprocess.Popen[str], Path, str, str],
) -> None:
    """Regression (issue 13): `veil keys list` on the data directory deleted a running server's in-flight
    `.tmp-*` file, and that upload failed with FileNotFoundError."""
    writer, data_dir, project, blob_id = stopped_writer
    in_flight = set((data_dir / "blobs" / project).glob(".tmp-*"))
    result = subprocess.run(
        [VEIL_BIN, "keys", "list", "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert in_flight <= set((data_dir / "blobs" / project).glob(".tmp-*")), "the CLI removed a live writer's file"

    writer.send_signal(signal.SIGCONT)
    out, _ = writer.communicate(timeout=120)
    assert writer.returncode == 0 and "written" in out
    blobs = LocalBlobStore(data_dir / "blobs")
    assert blobs.get(project, blob_id)[:4] == b"vvvv"
    assert not list((data_dir / "blobs").rglob(".tmp-*"))


def test_a_killed_writers_temporary_file_is_removed(
    stopped_writer: tuple[subprocess.Popen[str], Path, str, str],
) -> None:
    writer, data_dir, project, blob_id = stopped_writer
    writer.kill()  # kill -9 mid-write: the lock goes with the process
    writer.wait(10)
    blobs = LocalBlobStore(data_dir / "blobs")
    assert list((data_dir / "blobs" / project).glob(".tmp-*"))
    assert blobs.remove_partial_writes() == 1
    assert not list((data_dir / "blobs").rglob(".tmp-*"))
    assert not blobs.exists(project, blob_id)


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted by the test (root only): a disk that fills up."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount_point)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_is_blob_store_full_and_leaves_no_temporary_file(tiny_filesystem: Path) -> None:
    """Regression (issue 13): after ENOSPC, empty `.tmp-*` files stayed behind (6 after one run)."""
    blobs = LocalBlobStore(tiny_filesystem / "blobs")
    project = new_id()
    stored = []
    before = _errors("file", "put")
    with pytest.raises(BlobStoreFull, match="full"):
        for _ in range(100):
            blob_id = new_id()
            blobs.put(project, blob_id, os.urandom(150_000))
            stored.append(blob_id)
    assert 3 <= len(stored) < 100
    assert _errors("file", "put") == before + 1
    assert not list(tiny_filesystem.rglob(".tmp-*")), "a failed write left its temporary file"
    assert blobs.blob_ids(project) == set(stored)  # every acknowledged write is whole
    with pytest.raises(BlobStoreFull):
        blobs.put(project, new_id(), os.urandom(400_000))
    blobs.delete(project, stored[0])
    blobs.put(project, new_id(), b"room again")  # space freed: writes work again
