"""`veil backup -o FILE` and `veil restore FILE`: a consistent, still-encrypted copy of a Veil, and its way back.

A backup holds the database rows and the ciphertext blobs, never key material: restoring needs the live key store
(the master key and the project keys, or the HSM). Projects deleted after the backup stay unrecoverable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from veil.cli.server import DataDirOption, console, err_console, fail, one_line_errors, open_context
from veil.config import get_settings
from veil.security import recovery
from veil.security.crypto import CryptoError
from veil.security.providers import open_keyring
from veil.store.backup import BackupError, read_manifest
from veil.store.blob_url import open_blob_store
from veil.store.db import Database


def _bar(label: str) -> Progress:
    return Progress(
        f"[bold]{label}[/]", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err_console,
        transient=True,
    )  # fmt: skip


def backup(
    output: Annotated[Path, typer.Option("--output", "-o", help="Backup file to write (mode 0600).")],
    data_dir: DataDirOption = None,
) -> None:
    """Write a consistent backup of the database and the encrypted blobs (safe while `veil serve` runs)."""
    if output.exists():
        fail(f"{output} exists; choose a new file name", 2)
    with one_line_errors():
        ctx = open_context(data_dir)
        try:
            with _bar("backup") as bar:
                task = bar.add_task("blobs", total=None)
                manifest = recovery.backup(
                    ctx.db, ctx.blobs, output, lambda done, total: bar.update(task, completed=done, total=total)
                )
        except BackupError as exc:
            fail(str(exc))
    projects = manifest.tables.get("projects", 0)
    console.print(
        f"backup {output}: {projects} project(s), {len(manifest.blobs)} encrypted blob(s), master key "
        f"{manifest.kek_id}; it holds no key: keep the key store (master key, project keys) apart",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    if manifest.missing:
        err_console.print(f"note: {len(manifest.missing)} blob(s) named by rows were already gone from the store")


def restore(
    backup_file: Annotated[Path, typer.Argument(help="A file written by `veil backup`.", exists=True, dir_okay=False)],
    data_dir: DataDirOption = None,
) -> None:
    """Restore a backup into an empty data directory (and empty database), with the live key store."""
    settings = get_settings(data_dir=data_dir)
    try:
        manifest = read_manifest(backup_file)
        keyring = open_keyring(settings, create=False)
        recovery.check_backup_key(manifest, keyring)
    except (BackupError, CryptoError) as exc:
        fail(str(exc).splitlines()[0], 2)
    with one_line_errors():
        blobs = open_blob_store(settings)
        if any(blobs.blob_ids(project_id) for project_id in blobs.project_ids()):
            fail(f"{blobs.describe()} is not empty: restore into an empty data directory", 2)
        db = Database.open(settings.sqlalchemy_url)
        try:
            with _bar("restore") as bar:
                task = bar.add_task("blobs", total=None)
                report = recovery.restore(
                    backup_file, db, blobs, keyring,
                    lambda done, total: bar.update(task, completed=done, total=total),
                )  # fmt: skip
        except BackupError as exc:
            fail(str(exc), 2)
        finally:
            db.dispose()
    console.print(
        f"restored {report.projects} project(s) and {len(report.manifest.blobs)} blob(s) from {backup_file} "
        f"(taken {report.manifest.created})",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    if report.shredded:
        console.print(
            f"{len(report.shredded)} project(s) deleted after the backup stay unrecoverable (their keys are "
            f"destroyed) and were removed: {', '.join(report.shredded)}",
            highlight=False, soft_wrap=True,
        )  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)
