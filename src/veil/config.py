"""Veil's settings: one pydantic-settings object read from `VEIL_*` environment variables.

Every part receives a `Settings` (usually from `get_settings()`); nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024


class Settings(BaseSettings):
    """Where Veil keeps its data, which database it uses, where the master key comes from, and its limits."""

    model_config = SettingsConfigDict(env_prefix="VEIL_", extra="ignore")

    data_dir: Path = Field(default=Path(".veil-data"), description="Blobs, the key file and the SQLite database.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in the data dir.")
    master_key: SecretStr | None = Field(
        default=None,
        description="Base64 of 32 bytes. When unset, <data_dir>/master.key is used (created 0600).",
    )
    key_provider: str = Field(
        default="",
        description=(
            "Where the master key and the per-project keys live: `file` (default: <data_dir>/master.key and "
            "<data_dir>/project-keys/), `file:///DIR` (DIR/master.key, DIR/project-keys/), `env` "
            "(VEIL_MASTER_KEY alone; `env:///DIR`: project keys in DIR/project-keys/, shared by every node), or "
            "`pkcs11:///path/to/module.so?token=LABEL[&pin-file=PATH]` (an HSM; PIN in VEIL_PKCS11_PIN)."
        ),
    )
    pkcs11_pin: SecretStr | None = Field(default=None, description="User PIN of the PKCS#11 token.")

    blob_url: str | None = Field(
        default=None,
        description="Where ciphertext blobs live: unset → <data_dir>/blobs; s3://bucket/prefix (boto3's usual AWS "
        "configuration: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) or file:///path.",
    )
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="auto: virtual-hosted on AWS, path-style on any other endpoint."
    )
    # A blob with no row referencing it is removed once older than this (a write in progress has no row yet).
    orphan_grace_minutes: float = 60.0
    orphan_sweep_interval_minutes: float = 60.0

    # A job's lease: a worker renews it every 2 s; one not renewed for this long is taken over by another worker
    # (the job runs again there), up to `job_max_attempts` claims in all.
    job_lease_seconds: float = 60.0
    job_max_attempts: int = 3

    # onnxruntime threads per loaded prediction model; 0: onnxruntime's default (one per core). `veil serve
    # --workers N` sets cores / N, so N processes do not fight over the same cores.
    prediction_threads: int = 0

    # Safe-ingest limits (Custom Vision's: 6 MB per image; Veil accepts sides 16..10,240 px).
    max_image_bytes: int = 6 * MB
    min_image_side: int = 16
    max_image_side: int = 10_240
    max_image_pixels: int = 60_000_000
    max_image_frames: int = 100
    max_images_per_batch: int = 64
    max_request_bytes: int = 200 * MB
    # Bodies refused (413) before they are read in full, let alone parsed: JSON bodies in general, and the JSON
    # of `images/files` (base64 images; larger batches go as multipart, up to max_request_bytes).
    max_json_bytes: int = 1 * MB
    max_json_image_batch_bytes: int = 32 * MB
    # A metadata `$filter` is tested against the project's images page by page; past this many seconds of
    # scanning it stops and answers 400 (narrow it with tagIds/taggingStatus), so a few filters on a large
    # project cannot starve every other request.
    filter_time_budget_s: float = 2.0
    # `/healthz/ready` answers 503 when the data directory (or a local blob store) has less free space than this.
    ready_min_free_bytes: int = 512 * MB
    # Wrong API keys per client address: this many at once, then this many per minute; past that, 429.
    auth_failure_burst: int = 30
    auth_failures_per_minute: int = 60

    default_retention_days: int = 30

    # Training time budget of Regular detection (minutes); None: the engine's default.
    regular_training_minutes: float | None = None
    # Tests and benchmarks only: every detector trains exactly this many optimizer steps instead of by the clock
    # (VEIL_TRAINING_MAX_STEPS), so a test's result does not depend on machine load. Unset in production.
    training_max_steps: int | None = None
    # URL routes (`.../url`, `images/urls`): off unless hosts are listed (comma-separated, exact names).
    url_fetch_hosts: str = ""
    url_fetch_max_bytes: int = 6 * MB
    url_fetch_timeout_s: float = 10.0

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'veil.db').resolve()}"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def master_key_file(self) -> Path:
        return self.data_dir / "master.key"


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment; explicit overrides (e.g. the CLI's `--data-dir`) take precedence."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
