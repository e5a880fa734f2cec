"""The `veil` command line: one typer app assembled from one module per area.

Each module under `veil.cli` owns its commands and registers them in `register(app)`; this file only assembles.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

app = typer.Typer(
    name="veil",
    help="Veil: self-hosted, privacy-first custom computer vision.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Order is the order of `veil --help`.
_COMMAND_MODULES = ("server", "keys", "admin", "backup", "training", "migrate", "anonymize", "edge", "models")

for _name in _COMMAND_MODULES:
    importlib.import_module(f"veil.cli.{_name}").register(app)


def main() -> None:
    """`veil`: any error a command did not turn into its own one-line message is still one line (exit 1);
    VEIL_DEBUG=1 shows the traceback instead."""
    try:
        app()
    except Exception as exc:
        if os.environ.get("VEIL_DEBUG"):
            raise
        logging.getLogger("veil.cli").debug("unexpected error", exc_info=True)
        first_line = (str(exc).splitlines() or [""])[0]
        print(f"error: {exc.__class__.__name__}: {first_line} (VEIL_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)
