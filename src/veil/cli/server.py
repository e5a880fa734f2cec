"""`veil serve`: open (or create) the data directory and serve the API; first start prints an admin key.

Also holds what every foundation command shares: `--data-dir`, opening Veil, and one-line errors.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from veil.config import get_settings
from veil.security.audit import AuditTampered
from veil.security.crypto import CryptoError
from veil.services.context import AppContext
from veil.services.errors import ServiceError
from veil.store.db import DatabaseError

err_console = Console(stderr=True)
console = Console()

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: $VEIL_DATA_DIR or ./.veil-data).", show_default=False),
]


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn the errors a user can act on into one line on stderr and exit code 1."""
    try:
        yield
    except (CryptoError, DatabaseError, ServiceError, AuditTampered, ValueError, OSError) as exc:
        message = exc.message if isinstance(exc, ServiceError) else str(exc)
        fail(message.splitlines()[0] if message else exc.__class__.__name__)


def open_context(data_dir: Path | None) -> AppContext:
    if data_dir is not None:
        # Child processes (job workers) read settings from the environment too.
        os.environ["VEIL_DATA_DIR"] = str(data_dir)
    return AppContext.open(get_settings(data_dir=data_dir))


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    data_dir: DataDirOption = None,
    worker: Annotated[bool, typer.Option(help="Run the job worker and retention purge in this process.")] = True,
) -> None:
    """Serve the API (Custom Vision compatible) and the portal."""
    import uvicorn

    from veil.api.app import create_app
    from veil.services.keys import bootstrap_admin_key
    from veil.services.projects import finish_deletions

    with one_line_errors():
        ctx = open_context(data_dir)
        finish_deletions(ctx)
        admin_key = bootstrap_admin_key(ctx)
    url = f"http://{host}:{port}"
    console.print(f"Veil {url}  (data: {ctx.settings.data_dir.resolve()})", highlight=False)
    if admin_key:
        console.print("First start: an admin key was created. It is shown once; keep it safe:", highlight=False)
        console.print(admin_key, highlight=False, soft_wrap=True)
    sys.stdout.flush()
    uvicorn.run(create_app(ctx, background=worker), host=host, port=port, log_level="info", access_log=False)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
