"""Which blob store a Veil uses: `VEIL_BLOB_URL` unset or `file://` → a local directory, `s3://bucket/prefix` → S3.

A module of its own so `blobs` (the interface and the local store) and `s3` (which builds on it) import one way.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from veil.config import Settings
from veil.store.blobs import BlobStore, LocalBlobStore


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store `settings.blob_url` names: unset or `file://` → a directory, `s3://bucket/prefix` → S3."""
    url = settings.blob_url
    if not url:
        return LocalBlobStore(settings.blobs_dir)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(parsed.path))
    if parsed.scheme == "s3":
        from veil.store.s3 import S3BlobStore  # boto3 is imported only by an S3 installation

        return S3BlobStore.from_url(url, settings)
    raise ValueError(f"VEIL_BLOB_URL {url!r}: expected s3://bucket/prefix or file:///path")
