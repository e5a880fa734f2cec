"""`veil serve`: open (or create) the data directory and serve the API; first start prints an admin key.
`veil worker`: run queued jobs (training, exports) in a process of their own, beside a `veil serve --no-worker`.

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


def worker(
    data_dir: DataDirOption = None,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help="Only claim jobs of this kind (repeatable; default: all).")
    ] = None,
    poll_seconds: Annotated[float, typer.Option(help="How often an idle worker looks for jobs.")] = 1.0,
) -> None:
    """Run queued jobs (training, exports) until stopped with Ctrl-C or SIGTERM.

    Beside a `veil serve --no-worker`; several workers may share one PostgreSQL database. Each needs the same data
    directory (blobs) and master key as the server.
    """
    import signal
    import threading

    from veil.jobs.worker import Worker

    with one_line_errors():
        ctx = open_context(data_dir)
        runner = Worker(ctx.settings, poll_interval_s=poll_seconds, kinds=tuple(kind) if kind else None)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    runner.start()
    console.print(f"Veil worker {runner.identity} (jobs: {', '.join(kind) if kind else 'all'})", highlight=False)
    sys.stdout.flush()
    stopping.wait()
    console.print("stopping: a job still running is marked failed", highlight=False)
    runner.stop()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
