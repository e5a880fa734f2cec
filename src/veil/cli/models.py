"""`veil models list|add`: the people detectors an edge config can name (`detector: {model: NAME}`).

    veil models list                                   shipped and added models, with sha256 and licence
    veil models add yolox_s.onnx --name yolox-s        checked (loads, has a person class), copied, sha256 printed

Added models are copied into `<data dir>/models/`, so an air-gapped site installs a bigger model by copying one
file, and configs never carry paths to it. Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from veil.cli.server import DataDirOption, console, err_console

models_app = typer.Typer(
    help="People detectors for `veil edge`: the shipped ones and those you add.", no_args_is_help=True
)


def _data_dir(data_dir: Path | None) -> Path:
    from veil.config import get_settings

    return get_settings(data_dir=data_dir).data_dir


def _refuse(message: str) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


@models_app.command("list")
def list_(data_dir: DataDirOption = None) -> None:
    """The models a config can name, with their sha256 and licence."""
    from veil.edge.registry import all_models

    table = Table(
        "name", "kind", "origin", "licence", Column("sha256", overflow="fold"), Column("file", overflow="fold")
    )
    for model in all_models(_data_dir(data_dir)):
        origin = "shipped" if model.shipped else f"added {model.added}"
        table.add_row(model.name, model.kind, origin, model.licence, model.sha256, str(model.path))
    console.print(table)


@models_app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="A YOLOX, YOLO v5/v8/v11 or Veil detector (.onnx, or a Veil .zip).")],
    name: Annotated[str, typer.Option("--name", help="The name configs will use (detector: {model: NAME}).")],
    licence: Annotated[
        str, typer.Option("--licence", help="The model's licence, kept with it (e.g. Apache-2.0).")
    ] = "",
    person_class: Annotated[
        int | None, typer.Option("--person-class", help="Class index of person when the file names no classes.")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Check that FILE loads and detects people, copy it into the data directory, print its sha256."""
    from veil.edge.detect import DetectorError, identify_model
    from veil.edge.registry import RegistryError, add_model, check_name

    root = _data_dir(data_dir)
    try:
        check_name(name, root)
        kind = identify_model(file, person_class=person_class)
        model = add_model(file, name, kind, root, licence=licence, person_class=person_class)
    except (DetectorError, RegistryError) as exc:
        raise _refuse(str(exc).splitlines()[0]) from None
    except OSError as exc:
        raise _refuse(f"cannot copy {file} into {root}: {exc.strerror or exc}") from None
    err_console.print(
        f"added {model.name} ({model.kind}) as {model.path}; use it with detector: {{model: {model.name}}}"
    )
    print(model.sha256)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
