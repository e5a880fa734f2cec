"""Operator commands on a data directory: `veil audit verify`, `veil purge` (retention now) and `veil export`
(a trained model out of the encrypted store: Veil's ONNX bundle, or any format the API's export gives)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from veil.cli.server import DataDirOption, console, err_console, fail, one_line_errors, open_context
from veil.security import audit

audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    data_dir: DataDirOption = None,
    anchor: Annotated[
        list[str] | None,
        typer.Option(help="SEQ:HASH printed by an earlier verify and kept outside Veil (repeatable)."),
    ] = None,
) -> None:
    """Check every link of the audit chain (and any anchors); exit 1 naming the first broken one."""
    with one_line_errors():
        anchors = [audit.Anchor.parse(text) for text in anchor or []]
        ctx = open_context(data_dir)
        with ctx.db.session() as session:
            report = audit.verify(session, anchors)
    if not report.ok:
        fail(f"audit chain broken at event #{report.broken_at}: {report.reason}")
    checked = f", {len(anchors)} anchor(s) matched" if anchors else ""
    console.print(f"audit chain intact: {report.events} events{checked}", highlight=False)
    if report.head:
        console.print(f"head: {report.head}  (keep it outside Veil; later: --anchor {report.head})", highlight=False,
                      soft_wrap=True)  # fmt: skip


def purge(data_dir: DataDirOption = None) -> None:
    """Apply retention now: expired images and stored predictions, unfinished project deletions, and the orphan
    sweep (blobs no row refers to, older than VEIL_ORPHAN_GRACE_MINUTES)."""
    from veil.jobs.retention import purge_expired
    from veil.services.projects import finish_deletions
    from veil.store.sweep import sweep_orphans

    with one_line_errors():
        ctx = open_context(data_dir)
        finished = finish_deletions(ctx)
        report = purge_expired(ctx.db, ctx.blobs)
        swept = sweep_orphans(ctx.db, ctx.blobs, grace_s=ctx.settings.orphan_grace_minutes * 60)
    console.print(
        f"purged {report.images} expired image(s), {report.predictions} stored prediction(s); "
        f"finished {len(finished)} project deletion(s); removed {swept.blobs} orphaned blob(s), "
        f"{swept.partial_writes} partial write(s), {swept.projects} deleted project folder(s)",
        highlight=False,
        soft_wrap=True,
    )


def export(
    project: Annotated[str, typer.Argument(help="Project id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the zip.")] = Path("model.zip"),
    iteration: Annotated[
        str | None, typer.Option(help="Iteration id, name or publish name (default: the newest trained).")
    ] = None,
    platform: Annotated[
        str | None,
        typer.Option(
            help="Azure's export platform: ONNX, OpenVino, TensorFlow, CoreML, DockerFile (default: "
            "Veil's own ONNX bundle, for veil predict and the edge)."
        ),
    ] = None,
    flavor: Annotated[
        str | None,
        typer.Option(
            help="The platform's flavor: OnnxFloat16, Veil (ONNX); TensorFlowLite, TensorFlowLiteInt8 "
            "(TensorFlow); Linux (DockerFile). Default: the platform's own."
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Write a trained iteration's export: by default Veil's bundle (ONNX + labels + model card) for `veil predict`
    or any onnxruntime; with --platform, Azure's layout of that format (docs/EXPORTS.md). The read is audited and
    the export is listed by the API's getExports."""
    from veil.jobs.handlers import JobCancelled
    from veil.security.auth import OPERATOR
    from veil.services.exports import VEIL_FLAVOR, export_now

    if platform is None and flavor is not None:
        fail("--flavor needs --platform", 2)
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with one_line_errors():
        ctx = open_context(data_dir)
        with Progress(*columns, console=err_console, transient=True) as bar:
            task = bar.add_task("exporting", total=100)

            def show(stage: str, percent: float) -> None:
                bar.update(task, completed=percent, description=stage)

            try:
                bundle, _name = export_now(
                    ctx, OPERATOR, project, iteration, platform or "ONNX", flavor if platform else VEIL_FLAVOR, show
                )
            except (JobCancelled, KeyboardInterrupt):
                fail("export cancelled", 1)
            except (ImportError, RuntimeError, MemoryError) as exc:  # a converter's own failure
                fail(f"export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        partial.write_bytes(bundle)
        partial.replace(out)  # never a half-written zip under the final name
    console.print(f"wrote {out} ({len(bundle) / 1e6:.1f} MB)", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
    app.command("purge")(purge)
    app.command("export")(export)
