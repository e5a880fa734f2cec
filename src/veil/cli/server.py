"""`veil serve`: open (or create) the data directory and serve the API; first start prints an admin key.
`veil worker`: run queued jobs (training, exports) in a process of their own, beside a `veil serve --no-worker`.

Also holds what every foundation command shares: `--data-dir`, opening Veil, and one-line errors.
"""

from __future__ import annotations

import functools
import os
import ssl
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from veil.config import get_settings
from veil.security.audit import AuditTampered
from veil.security.crypto import CryptoError
from veil.services.context import AppContext
from veil.services.errors import Conflict, InvalidInput, NotFound, ServiceError
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
    """Turn the errors a user can act on into one line on stderr: exit code 2 when the input was wrong (an
    unknown role, id or name), 1 when the work failed."""
    try:
        yield
    except (CryptoError, DatabaseError, ServiceError, AuditTampered, ValueError, OSError) as exc:
        message = exc.message if isinstance(exc, ServiceError) else str(exc)
        bad_input = isinstance(exc, (InvalidInput, NotFound, Conflict))
        fail(message.splitlines()[0] if message else exc.__class__.__name__, code=2 if bad_input else 1)


def open_context(data_dir: Path | None) -> AppContext:
    if data_dir is not None:
        # Child processes (job workers) read settings from the environment too.
        os.environ["VEIL_DATA_DIR"] = str(data_dir)
    return AppContext.open(get_settings(data_dir=data_dir))


HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    data_dir: DataDirOption = None,
    worker: Annotated[bool, typer.Option(help="Run the job worker and retention purge in this process.")] = True,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            envvar="VEIL_WORKERS",
            help="API processes sharing the port (prediction uses one core each); 1 serves in this process.",
        ),
    ] = 1,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            envvar="VEIL_TLS_CERT", help="PEM certificate (chain) file: serve HTTPS (with HSTS).", show_default=False
        ),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(envvar="VEIL_TLS_KEY", help="PEM private key of --tls-cert.", show_default=False)
    ] = None,
    tls_min_version: Annotated[
        str, typer.Option(envvar="VEIL_TLS_MIN_VERSION", help="Oldest TLS version accepted: 1.2 or 1.3.")
    ] = "1.2",
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(
            envvar="VEIL_FORWARDED_ALLOW_IPS",
            help="Reverse proxies (comma-separated IPs, or *) whose X-Forwarded-For/-Proto are trusted.",
        ),
    ] = "127.0.0.1",
) -> None:
    """Serve the API (Custom Vision compatible) and the portal."""
    import uvicorn

    from veil.jobs.background import Background
    from veil.services.keys import bootstrap_admin_key
    from veil.services.projects import finish_deletions

    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together (both PEM files)", code=2)
    if tls_min_version not in ("1.2", "1.3"):
        fail(f"--tls-min-version {tls_min_version!r}: expected 1.2 or 1.3", code=2)
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            fail(f"TLS file {path} not found", code=2)
    with one_line_errors():
        ctx = open_context(data_dir)
        finish_deletions(ctx)
        admin_key = bootstrap_admin_key(ctx)
    scheme = "https" if tls_cert else "http"
    processes = f", {workers} API processes" if workers > 1 else ""
    console.print(
        f"Veil {scheme}://{host}:{port}  (data: {ctx.settings.data_dir.resolve()}; blobs: {ctx.blobs.describe()}"
        f"{processes})",
        highlight=False,
        soft_wrap=True,
    )
    if admin_key:
        console.print("First start: an admin key was created. It is shown once; keep it safe:", highlight=False)
        console.print(admin_key, highlight=False, soft_wrap=True)
    sys.stdout.flush()

    tls: dict[str, Any] = {}
    if tls_cert is not None and tls_key is not None:
        tls = {
            "ssl_certfile": str(tls_cert),
            "ssl_keyfile": str(tls_key),
            "ssl_context_factory": functools.partial(_tls_context, tls_min_version),
            "headers": [HSTS],
        }
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "access_log": False,
        "forwarded_allow_ips": forwarded_allow_ips,
        **tls,
    }
    if workers == 1:
        from veil.api.app import create_app

        _warm_models(ctx)
        uvicorn.run(create_app(ctx, background=worker), **common)  # the app's lifespan runs the background
        return
    # Several API processes share the port; queued jobs, retention and the sweep run once, in this parent.
    # Their metrics meet in one directory, so a scrape of any process reports all of them.
    metrics_dir = tempfile.TemporaryDirectory(prefix="veil-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir.name
    os.environ.setdefault("VEIL_PREDICTION_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    background = Background.start(ctx.settings, ctx.db, ctx.blobs) if worker else None
    try:
        # A child answers uvicorn's health pings only once Python and the app's imports are up: on a busy host that
        # takes well over uvicorn's default 5 s, and children killed as "hung" would be restarted forever.
        uvicorn.run("veil.cli.server:api_app", factory=True, workers=workers, timeout_worker_healthcheck=60, **common)
    finally:
        if background is not None:
            background.stop()
        metrics_dir.cleanup()


def api_app() -> Any:
    """The app of one API process of `veil serve --workers N` (settings from the environment the parent set)."""
    from veil.api.app import create_app

    ctx = AppContext.open(get_settings(), migrate=False)  # the parent migrated before starting us
    _warm_models(ctx)
    return create_app(ctx, background=False)


def _warm_models(ctx: AppContext) -> None:
    """Load published models from the blob store in the background (a new replica's first answers are fast)."""
    import logging
    import threading

    from veil.services.models import MODELS

    def warm() -> None:
        try:
            loaded = MODELS.warm(ctx)
        except Exception:  # the first prediction loads its model anyway; say why warming failed
            logging.getLogger("veil.serve").exception("warming the model cache failed")
            return
        console.print(f"model cache: {loaded} published model(s) loaded from the blob store", highlight=False)

    threading.Thread(target=warm, name="veil-warm-models", daemon=True).start()


def _tls_context(min_version: str, _config: Any, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    context = default_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    return context


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

    from veil.jobs.background import orphan_sweeper
    from veil.jobs.worker import Worker

    with one_line_errors():
        ctx = open_context(data_dir)
        runner = Worker(ctx.settings, poll_interval_s=poll_seconds, kinds=tuple(kind) if kind else None)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    runner.start()
    sweeper = orphan_sweeper(ctx.settings, ctx.db, ctx.blobs)
    console.print(f"Veil worker {runner.identity} (jobs: {', '.join(kind) if kind else 'all'})", highlight=False)
    sys.stdout.flush()
    stopping.wait()
    console.print("stopping: a job still running is marked failed", highlight=False)
    sweeper.stop()
    runner.stop()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
