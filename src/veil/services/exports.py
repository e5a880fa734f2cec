"""Exports of a trained iteration (Custom Vision's `export` / `getExports`) and their download.

ONNX is the one platform Veil exports: the iteration's model already is ONNX with its preprocessing in the
metadata, so an export is the Veil bundle (`model.onnx`, `labels.txt`, `model_card.json/md`) sealed with the
project's key and served by Veil itself behind the training key. Flavors `ONNX10`/`ONNX12` are accepted (the
graph is opset 17, which every onnxruntime since 1.12 runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from veil.security import audit
from veil.security.auth import Principal
from veil.services.context import AppContext
from veil.services.errors import InvalidInput, NotFound
from veil.services.iterations import get_iteration
from veil.services.projects import get_project
from veil.services.vault import Vault
from veil.store.models import Export, Iteration, new_id
from veil.store.records import COMPLETED, IterationRecord

if TYPE_CHECKING:  # vision is imported where used: the API starts even while a model library is missing
    from veil.vision.export import ModelCard

PLATFORMS = ("ONNX",)
ONNX_FLAVORS = ("", "ONNX10", "ONNX12")


@dataclass(frozen=True)
class ExportView:
    id: str
    iteration_id: str
    platform: str
    flavor: str
    status: str
    error: str | None


def _view(export: Export) -> ExportView:
    return ExportView(
        export.id, export.iteration_id, export.platform, export.flavor, export.status, export.error_reason
    )


def _trained(iteration: Iteration) -> None:
    if iteration.status != COMPLETED or not iteration.model_blob_id:
        raise InvalidInput(
            f"iteration {iteration.id} is not trained (status {iteration.status})",
            code="BadRequestIterationIsNotTrained",
        )


def _model_card(iteration: Iteration, labels: list[str]) -> ModelCard:
    from veil.vision.export import ModelCard

    record = IterationRecord.of(iteration)
    stored = dict(record.model_card)
    try:
        return ModelCard(**stored)
    except TypeError:  # an iteration trained before model cards: describe what is known
        return ModelCard(
            name=iteration.name,
            task="",
            labels=labels,
            created_at=(iteration.trained_at or iteration.created).isoformat(),
            veil_version="",
            image_counts={},
            total_images=record.images,
            evaluation_method=record.evaluation_method,
            metrics={},
        )


def export_iteration(
    ctx: AppContext, actor: Principal, project_id: str, iteration_id: str, platform: str, flavor: str | None
) -> ExportView:
    """Build (or rebuild) the export of an iteration for `platform`/`flavor`."""
    flavor = flavor or ""
    if platform not in PLATFORMS:
        raise InvalidInput(
            f"Veil exports platform ONNX only (asked for {platform!r}); the ONNX model runs wherever onnxruntime does",
            code="BadRequestNotSupported",
        )
    if flavor not in ONNX_FLAVORS:
        raise InvalidInput(f"unknown ONNX flavor {flavor!r}; use ONNX10 or ONNX12", code="BadRequestNotSupported")
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
        _trained(iteration)
        model_blob = iteration.model_blob_id
        labels = [label.name for label in IterationRecord.of(iteration).labels]
        card = _model_card(iteration, labels)
    assert model_blob is not None
    from veil.vision.export import make_bundle

    vault = Vault(ctx)
    bundle_blob = new_id()
    # Owned by the iteration: deleting it (or the project) shreds every export bundle of it.
    vault.put(project, bundle_blob, make_bundle(vault.get(project, model_blob), card), owner_id=iteration_id)
    with ctx.db.session() as session:
        existing = session.scalars(
            select(Export).where(
                Export.iteration_id == iteration_id, Export.platform == platform, Export.flavor == flavor
            )
        ).first()
        old_blob = existing.blob_id if existing else None
        export = existing or Export(
            id=new_id(), project_id=project_id, iteration_id=iteration_id, platform=platform, flavor=flavor
        )
        export.status, export.blob_id, export.error_reason = "Done", bundle_blob, None
        session.add(export)
        audit.record(session, actor, "iteration.export", [project_id, iteration_id, export.id])
        session.flush()
        view = _view(export)
    if old_blob:
        vault.delete(project, old_blob)
    return view


def list_exports(ctx: AppContext, project_id: str, iteration_id: str) -> list[ExportView]:
    with ctx.db.session() as session:
        get_project(session, project_id)
        get_iteration(session, project_id, iteration_id)
        rows = session.scalars(select(Export).where(Export.iteration_id == iteration_id).order_by(Export.created))
        return [_view(row) for row in rows]


def download_export(ctx: AppContext, actor: Principal, project_id: str, export_id: str) -> tuple[bytes, str]:
    """The export's bundle bytes (decrypted in memory) and a file name; the read is audited."""
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        export = session.get(Export, export_id)
        if export is None or export.project_id != project_id or export.status != "Done" or not export.blob_id:
            raise NotFound(f"export {export_id} not found in project {project_id}", code="NotFound")
        iteration = get_iteration(session, project_id, export.iteration_id)
        audit.record(session, actor, "model.download", [project_id, export.iteration_id, export_id])
        blob_id, name = export.blob_id, f"{project.name}-{iteration.name}".replace(" ", "_")
    safe = "".join(c for c in name if c.isalnum() or c in "-_.")[:100] or "model"
    return Vault(ctx).get(project, blob_id), f"{safe}.onnx.zip"


def find_iteration(ctx: AppContext, project_id: str, reference: str | None) -> str:
    """The id of a project's iteration named by id, name or publish name; without a reference, the newest
    trained one. NotFound says what exists when nothing matches."""
    with ctx.db.session() as session:
        get_project(session, project_id)
        iterations = list(
            session.scalars(
                select(Iteration).where(Iteration.project_id == project_id).order_by(Iteration.created.desc())
            )
        )
        if reference is None:
            trained = [i for i in iterations if i.status == COMPLETED]
            if not trained:
                raise NotFound(f"project {project_id} has no trained iteration yet", code="NotFoundIteration")
            return trained[0].id
        for iteration in iterations:
            if reference in (iteration.id, iteration.name, iteration.publish_name):
                return iteration.id
        names = ", ".join(f"{i.name!r}" for i in iterations) or "none"
        raise NotFound(f"no iteration {reference!r} in project {project_id} (iterations: {names})")


def export_bundle(
    ctx: AppContext, actor: Principal, project_id: str, iteration_reference: str | None
) -> tuple[bytes, str]:
    """Export an iteration as ONNX and return the bundle's bytes and file name (what `veil export` writes)."""
    iteration_id = find_iteration(ctx, project_id, iteration_reference)
    view = export_iteration(ctx, actor, project_id, iteration_id, "ONNX", None)
    return download_export(ctx, actor, project_id, view.id)
