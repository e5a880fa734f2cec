"""Veil's own routes under `/veil/v1`, one module per resource: keys (and whoami), audit, privacy (a project's
policy), images (decrypted bytes), iterations (training job, cancel, curves), exports (bundle download),
predictions (a stored prediction's image), anonymize. (`/healthz` is `veil.api.health`, outside the prefix.)

Authorized with either `Training-Key` or `Prediction-Key`; the key's role decides.
"""

from __future__ import annotations

from fastapi import APIRouter

from veil.api.veil import anonymize, audit, exports, images, iterations, keys, predictions, privacy

router = APIRouter(prefix="/veil/v1", tags=["veil"])
for _module in (keys, audit, privacy, images, iterations, exports, predictions, anonymize):
    router.include_router(_module.router)
