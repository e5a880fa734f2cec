"""`veil migrate azure`: bring Custom Vision projects into this Veil's data directory in one command.

    veil migrate azure --endpoint https://<resource>.cognitiveservices.azure.com/ --training-key KEY --all

Reads the source through its Training API and writes through the same ingest path as an upload (policy applied,
encrypted), as the operator (audited). Run it again to resume: what arrived is skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from veil.cli.server import DataDirOption, console, fail, one_line_errors, open_context

if TYPE_CHECKING:  # the services load when the command runs, so `veil --help` stays fast
    from veil.services.migration import ProjectReport

migrate_app = typer.Typer(help="Bring projects over from another service.", no_args_is_help=True)


@migrate_app.command("azure")
def azure(
    endpoint: Annotated[
        str, typer.Option(help="The Custom Vision resource, e.g. https://<resource>.cognitiveservices.azure.com/.")
    ],
    training_key: Annotated[
        str,
        typer.Option(
            envvar="CUSTOM_VISION_TRAINING_KEY",
            help="The resource's training key (or $CUSTOM_VISION_TRAINING_KEY, which keeps it out of shell history).",
        ),
    ],
    project: Annotated[
        list[str] | None, typer.Option("--project", help="A source project id to bring over (repeatable).")
    ] = None,
    all_projects: Annotated[bool, typer.Option("--all", help="Bring over every project of the resource.")] = False,
    with_iterations_metadata: Annotated[
        bool,
        typer.Option(
            help="Also list the source's trained iterations with their precision, recall and mAP, to compare "
            "after training here (models themselves cannot be copied)."
        ),
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Copy Custom Vision projects (tags, tagged and untagged images, regions, metadata) into this Veil."""
    from veil.security.auth import OPERATOR
    from veil.services.azure_source import CustomVisionSource, SourceError
    from veil.services.migration import migrate_project

    if bool(project) == all_projects:
        fail("name the projects to bring over with --project ID (repeatable), or pass --all", code=2)
    reports: list[ProjectReport] = []
    try:
        with CustomVisionSource(endpoint, training_key) as source, one_line_errors():
            ids = [p.id for p in source.projects()] if all_projects else list(dict.fromkeys(project or []))
            ctx = open_context(data_dir)
            with _progress() as progress:
                for project_id in ids:
                    bar = _Bar(progress)
                    reports.append(
                        migrate_project(
                            ctx, OPERATOR, source, project_id, with_iterations=with_iterations_metadata, progress=bar
                        )
                    )
    except SourceError as exc:
        fail(str(exc), code=2)
    _print_summary(reports)
    if with_iterations_metadata:
        _print_iterations(reports)
    missing = sum(r.source_counts.images - r.arrived.images for r in reports)
    if missing:
        fail(f"{missing} image(s) did not arrive (reasons above); run the same command again to retry them")


class _Bar:
    """One project's line in the rich progress display."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("reading the source", total=None)

    def start(self, name: str, total: int) -> None:
        self.progress.update(self.task, description=name, total=total)

    def advance(self, count: int) -> None:
        self.progress.advance(self.task, count)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _print_summary(reports: list[ProjectReport]) -> None:
    table = Table(title="Migrated from Custom Vision (source → arrived)")
    for column in ("project", "Veil project id", "tags", "images", "regions", "this run"):
        table.add_column(column)
    for report in reports:
        src, got = report.source_counts, report.arrived
        table.add_row(
            report.source.name,
            report.target_id,
            f"{src.tags} → {got.tags}",
            f"{src.images} → {got.images}",
            f"{src.regions} → {got.regions}",
            f"{report.created} new, {report.skipped} already here, {len(report.refused)} refused",
        )
    console.print(table)
    for report in reports:
        for image_id, reason in report.refused:
            console.print(f"refused source image {image_id} of {report.source.name}: {reason}", highlight=False)


def _print_iterations(reports: list[ProjectReport]) -> None:
    table = Table(title="Source iterations (train here, then compare)")
    for column in ("project", "iteration", "status", "trained", "precision", "recall", "mAP"):
        table.add_column(column)
    for report in reports:
        for it in report.iterations:
            table.add_row(
                report.source.name,
                it.name,
                it.status,
                it.trained_at or "",
                *(f"{v:.3f}" if v is not None else "" for v in (it.precision, it.recall, it.average_precision)),
            )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(migrate_app, name="migrate")
