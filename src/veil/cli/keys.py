"""`veil keys create|list|revoke|rotate-master`: API keys and the master key, as the machine's operator."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from veil.cli.server import DataDirOption, console, err_console, one_line_errors, open_context
from veil.security.auth import OPERATOR, Role, is_active
from veil.services import keys as key_service

keys_app = typer.Typer(help="API keys (shown once, stored hashed) and master-key rotation.", no_args_is_help=True)


@keys_app.command("create")
def create(
    role: Annotated[str, typer.Option(help=f"What the key may do: {', '.join(Role)}.")],
    project: Annotated[str | None, typer.Option(help="Limit the key to this project id (default: all).")] = None,
    expires_in_days: Annotated[int | None, typer.Option(help="Expire after N days (default: never).")] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
    data_dir: DataDirOption = None,
) -> None:
    """Create a key; the last line printed is the key itself (shown once)."""
    with one_line_errors():
        ctx = open_context(data_dir)
        with ctx.db.session() as session:
            row, secret = key_service.create_api_key(session, OPERATOR, role, project, expires_in_days, name)
            key_id = row.id
    scope = f"project {project}" if project else "all projects"
    err_console.print(f"created {role} key {key_id} for {scope}; it is shown once:", highlight=False, soft_wrap=True)
    print(secret)


@keys_app.command("list")
def list_(data_dir: DataDirOption = None) -> None:
    """List keys (never the secrets: only their first characters)."""
    with one_line_errors():
        ctx = open_context(data_dir)
        with ctx.db.session() as session:
            rows = key_service.all_api_keys(session)
    table = Table("prefix", "role", "project", "name", "created", "expires", "state")
    table.columns.insert(0, Column("id", no_wrap=True, min_width=36))
    for row in rows:
        state = "active" if is_active(row) else ("revoked" if row.revoked_at else "expired")
        expires = row.expires_at.strftime("%Y-%m-%d %H:%M") if row.expires_at else "never"
        table.add_row(row.id, row.prefix + "…", row.role, row.project_id or "all", row.name,
                      row.created.strftime("%Y-%m-%d %H:%M"), expires, state)  # fmt: skip
    # Piped output (no terminal width) must still show whole ids: they are what `revoke` takes.
    (console if console.is_terminal else Console(width=200)).print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="Id of the key (see `veil keys list`).")],
           data_dir: DataDirOption = None) -> None:  # fmt: skip
    """Revoke a key at once (kept in the list for the audit trail)."""
    with one_line_errors():
        ctx = open_context(data_dir)
        with ctx.db.session() as session:
            key_service.revoke_api_key(session, OPERATOR, key_id)
    console.print(f"revoked key {key_id}", highlight=False)


@keys_app.command("rotate-master")
def rotate_master(
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Migrate to another key store instead (a VEIL_KEY_PROVIDER URL, e.g. "
            "pkcs11:///usr/lib/softhsm/libsofthsm2.so?token=veil); then run every Veil with that setting.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Re-wrap every project's data key under a new master key (safe while `veil serve` runs), or move them all
    to another key store with --to (file → HSM): restart every Veil process with the new VEIL_KEY_PROVIDER."""
    with one_line_errors():
        ctx = open_context(data_dir)
        report = key_service.rotate_master_key(ctx, OPERATOR, to=to)
    if to is None:
        console.print(
            f"master key rotated: {report.old_key_id} → {report.new_key_id}; "
            f"{report.rewrapped} project key(s) re-wrapped; the old master key opens nothing now",
            highlight=False,
            soft_wrap=True,
        )
        return
    console.print(
        f"key store migrated: {report.old_key_id} → {report.new_key_id}; {report.rewrapped} project key(s) "
        f"re-wrapped, {report.destroyed_old} left in the old key store destroyed. Run every Veil process with "
        f"VEIL_KEY_PROVIDER={to}",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
