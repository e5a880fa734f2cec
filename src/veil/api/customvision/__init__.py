"""Azure Custom Vision's REST surface, one module per resource.

Training (mounted under `/customvision/v3.3/training` and `/v3.4-preview/training`, `Training-Key`):
domains, projects, tags, images, labels (image tags and regions), iterations (train, performance, publish),
exports, predictions (stored predictions and quick test), suggestions (smart labeler, region proposals),
unsupported (501s). Prediction (mounted under
`/customvision/v3.0/prediction` and `/v3.1/prediction`, `Prediction-Key`): prediction.
"""

from __future__ import annotations

from fastapi import APIRouter

from veil.api.customvision import (
    domains,
    exports,
    images,
    iterations,
    labels,
    prediction,
    predictions,
    projects,
    suggestions,
    tags,
    unsupported,
)

TRAINING_PREFIXES = ("/customvision/v3.3/training", "/customvision/v3.4-preview/training")
PREDICTION_PREFIXES = ("/customvision/v3.0/prediction", "/customvision/v3.1/prediction")

training_router = APIRouter()
for _module in (domains, projects, tags, images, labels, suggestions, iterations, exports, predictions, unsupported):
    training_router.include_router(_module.router)

prediction_router = prediction.router
