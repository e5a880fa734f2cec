"""Trained models in memory: decrypted from the vault only into memory, loaded with onnxruntime, and cached per
iteration (prediction, quick test and privacy policies' own detectors share one cache).

    >>> model = MODELS.get(ctx, project, iteration)      # an ExportedModel: .classify(rgb) / .detect(rgb)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from sqlalchemy import select

from veil.services.context import AppContext
from veil.services.errors import ServiceError
from veil.services.vault import Vault
from veil.store.models import Iteration, Project
from veil.store.records import COMPLETED

if TYPE_CHECKING:  # onnxruntime models are loaded where used
    from veil.vision.runtime import ExportedModel

MODEL_CACHE_SIZE = 8


class ModelCache:
    """Loaded onnxruntime models by (iteration, model blob); least recently used ones are dropped."""

    def __init__(self, size: int = MODEL_CACHE_SIZE) -> None:
        self.size = size
        self._models: OrderedDict[tuple[str, str], ExportedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ctx: AppContext, project: Project, iteration: Iteration) -> ExportedModel:
        assert iteration.model_blob_id
        key = (iteration.id, iteration.model_blob_id)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        from veil.vision.runtime import load_model  # onnxruntime: loaded by the first prediction, not at import

        model = load_model(
            Vault(ctx).get(project, iteration.model_blob_id), threads=ctx.settings.prediction_threads, spinning=False
        )
        with self._lock:
            self._models[key] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model

    def warm(self, ctx: AppContext) -> int:
        """Load the newest published iterations' models (up to the cache size) from the blob store, so a fresh
        API replica answers its first predictions without the download; returns how many were loaded."""
        with ctx.db.read_session() as session:
            rows = session.execute(
                select(Project, Iteration)
                .join(Iteration, Iteration.project_id == Project.id)
                .where(Iteration.publish_name.is_not(None), Iteration.status == COMPLETED, Project.deleting.is_(False))
                .order_by(Iteration.published_at.desc())
                .limit(self.size)
            ).all()
            session.expunge_all()
        loaded = 0
        for project, iteration in rows:
            try:
                self.get(ctx, project, iteration)
                loaded += 1
            except ServiceError:
                continue  # a project being deleted: nothing to serve
        return loaded


MODELS = ModelCache()
