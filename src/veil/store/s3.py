"""Ciphertext blobs in an S3-compatible object store (AWS S3, SeaweedFS, MinIO, Ceph RGW, ...), through boto3.

    VEIL_BLOB_URL=s3://veil-blobs/site-a  AWS_ENDPOINT_URL=http://seaweedfs:8333
    AWS_ACCESS_KEY_ID=...  AWS_SECRET_ACCESS_KEY=...

Objects are keyed `<prefix>/<project id>/<blob id>`. Credentials, region and endpoint come from boto3's usual
chain (environment, `~/.aws/config`, instance roles); Veil adds nothing of its own, so an operator configures it
as any other S3 client. A PUT is atomic (an object appears whole or not at all), so no temporary objects exist;
what a crash can leave is an object whose row never committed, which the orphan sweep removes.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from veil.store.blobs import (
    BLOB_STORE_ERRORS,
    PROBE_PREFIX,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    BlobStoreFull,
    check_id,
)

if TYPE_CHECKING:
    from veil.config import Settings

_DELETE_BATCH = 1000  # S3's DeleteObjects limit
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_FULL = {"QuotaExceeded", "EntityTooLarge", "XMinioStorageFull", "InsufficientStorage"}


class S3BlobStore(BlobStore):
    backend = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> S3BlobStore:
        parsed = urlparse(url)
        if not parsed.netloc:
            raise ValueError(f"VEIL_BLOB_URL {url!r}: no bucket (expected s3://bucket/prefix)")
        return cls(make_client(settings), parsed.netloc, parsed.path)

    # -- keys

    def _project_prefix(self, project_id: str) -> str:
        base = f"{self.prefix}/" if self.prefix else ""
        return f"{base}{check_id(project_id)}/"

    def key(self, project_id: str, blob_id: str) -> str:
        return self._project_prefix(project_id) + check_id(blob_id)

    # -- operations

    def put(self, project_id: str, blob_id: str, data: bytes) -> None:
        key = self.key(project_id, blob_id)
        with self._errors("put", key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, project_id: str, blob_id: str) -> bytes:
        key = self.key(project_id, blob_id)
        with self._errors("get", key):
            data: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            return data

    def exists(self, project_id: str, blob_id: str) -> bool:
        key = self.key(project_id, blob_id)
        try:
            with self._errors("head", key):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except BlobNotFound:
            return False
        return True

    def delete(self, project_id: str, blob_id: str) -> None:
        key = self.key(project_id, blob_id)
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_project(self, project_id: str) -> None:
        prefix = self._project_prefix(project_id)
        keys = [item["Key"] for page in self._pages(prefix) for item in page.get("Contents", [])]
        with self._errors("delete", prefix):
            for start in range(0, len(keys), _DELETE_BATCH):
                batch = [{"Key": key} for key in keys[start : start + _DELETE_BATCH]]
                response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                if response.get("Errors"):
                    first = response["Errors"][0]
                    raise BlobStoreError(f"cannot delete {first.get('Key')}: {first.get('Message')}")
        self.prune_project(project_id)

    def prune_project(self, project_id: str) -> bool:
        prefix = self._project_prefix(project_id)
        with self._errors("delete", prefix):
            if self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0):
                return False
            # Some stores (SeaweedFS's filer) keep an emptied "directory" listed as a prefix; remove it too.
            self.client.delete_object(Bucket=self.bucket, Key=prefix)
        return True

    def list_blobs(self, project_id: str) -> Iterator[BlobInfo]:
        prefix = self._project_prefix(project_id)
        for page in self._pages(prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if "/" in name or not name:
                    continue
                modified = item["LastModified"].astimezone(UTC)
                yield BlobInfo(project_id, name, int(item["Size"]), modified)

    def project_ids(self) -> set[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        found: set[str] = set()
        for page in self._pages(base, delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(base) :].rstrip("/")
                if name and not name.startswith("."):
                    found.add(name)
        return found

    def remove_partial_writes(self) -> int:
        return 0  # a PUT is atomic: there is nothing half-written to remove

    def check_writable(self) -> None:
        base = f"{self.prefix}/" if self.prefix else ""
        key = f"{base}{PROBE_PREFIX}{uuid.uuid4().hex}"
        with self._errors("probe", key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"veil")
            self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def describe(self) -> str:
        endpoint = self.client.meta.endpoint_url
        return f"s3://{self.bucket}/{self.prefix} at {endpoint}"

    # -- helpers

    def _pages(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            arguments["Delimiter"] = delimiter
        with self._errors("list", prefix):
            yield from paginator.paginate(**arguments)

    @contextlib.contextmanager
    def _errors(self, operation: str, key: str) -> Iterator[None]:
        """botocore's errors become Veil's: a missing object → BlobNotFound, the rest → BlobStoreError (counted)."""
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{key}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in _NOT_FOUND:
                raise BlobNotFound(f"{where} not found") from None
            BLOB_STORE_ERRORS.labels(self.backend, operation).inc()
            kind = BlobStoreFull if code in _FULL else BlobStoreError
            raise kind(f"object store {operation} of {where} failed: {code}: {error.get('Message') or code}") from exc
        except BotoCoreError as exc:
            BLOB_STORE_ERRORS.labels(self.backend, operation).inc()
            raise BlobStoreError(f"object store {operation} of {where} failed: {exc}") from exc


def make_client(settings: Settings) -> Any:
    """A boto3 S3 client from the usual AWS configuration; path-style addressing unless it is AWS itself."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    style = settings.s3_addressing_style
    probe = session.client("s3")
    if style == "auto":
        endpoint = probe.meta.endpoint_url or ""
        # Virtual-hosted names (bucket.host) need DNS for each bucket: only AWS has that; others take paths.
        style = "virtual" if ".amazonaws.com" in endpoint else "path"
    config = Config(
        s3={"addressing_style": style},
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=32,
    )
    return session.client("s3", config=config)
