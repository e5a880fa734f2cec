"""A privacy policy's own detector: a Completed object-detection iteration that finds targets other than faces.

Checked when the policy is saved and again at every ingest (the iteration may have been deleted since); its
model is decrypted in memory only and cached like prediction's models. Privacy's `anonymize_image` runs it
next to the face detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from veil.security.auth import Principal
from veil.services.context import AppContext
from veil.services.models import MODELS
from veil.store.models import Iteration, Project
from veil.store.policy import DetectorRef, PrivacyPolicy

if TYPE_CHECKING:
    import supervision as sv

    from veil.vision.runtime import ExportedModel

FACES = "faces"


@dataclass(frozen=True)
class PolicyDetector:
    """The loaded detector of a policy and the class names of it the policy hides."""

    ref: DetectorRef
    model: ExportedModel
    targets: tuple[str, ...]


def detector_problem(session: Session, ref: DetectorRef, targets: list[str], actor: Principal | None) -> str | None:
    """Why `ref` cannot find `targets` (None when it can); `actor` (at save time) must cover its project."""
    where = f"detector iteration {ref.iteration_id} of project {ref.project_id}"
    if actor is not None and not actor.covers(ref.project_id):
        return f"{where}: this key is limited to another project"
    project = session.get(Project, ref.project_id)
    iteration = session.get(Iteration, ref.iteration_id)
    if project is None or project.deleting or iteration is None or iteration.project_id != ref.project_id:
        return f"{where} does not exist"
    if project.project_type != "ObjectDetection":
        return f"{where} is a classification model; a policy's detector must be an object-detection iteration"
    if iteration.status != "Completed" or not iteration.model_blob_id:
        return f"{where} is {iteration.status}; only a Completed iteration can be a policy's detector"
    labels = {str(label.get("name", "")).lower() for label in (iteration.metrics or {}).get("labels") or []}
    missing = [t for t in targets if t != FACES and t.lower() not in labels]
    if missing:
        return f"{where} has no tag {', '.join(repr(t) for t in missing)}; its tags are: {', '.join(sorted(labels))}"
    return None


def load_detector(ctx: AppContext, session: Session, policy: PrivacyPolicy) -> PolicyDetector:
    """The policy's detector model (checked first by `detector_problem`), from prediction's model cache."""
    assert policy.detector is not None
    ref = policy.detector
    project, iteration = session.get(Project, ref.project_id), session.get(Iteration, ref.iteration_id)
    assert project is not None and iteration is not None
    model = MODELS.get(ctx, project, iteration)
    by_lower = {label.lower(): label for label in model.info.labels}
    targets = tuple(by_lower[t.lower()] for t in policy.targets if t != FACES and t.lower() in by_lower)
    return PolicyDetector(ref, model, targets)


class _Targets:
    """Faces (privacy's CenterFace, when the policy names them) plus the policy detector's classes."""

    def __init__(self, detector: PolicyDetector, faces: object | None) -> None:
        self.detector, self.faces = detector, faces

    def detect(self, rgb: np.ndarray) -> sv.Detections:
        import supervision as sv

        found = [self.faces.detect(rgb)] if self.faces is not None else []  # type: ignore[attr-defined]
        objects = self.detector.model.detect(rgb)
        if len(objects):
            keep = np.isin(np.asarray(objects.data["class_name"], dtype=str), self.detector.targets)
            objects = cast("sv.Detections", objects[keep])
        return sv.Detections.merge([*found, objects])


def anonymize_with_detector(image: PILImage.Image, policy: PrivacyPolicy, detector: PolicyDetector) -> PILImage.Image:
    """`image` with the policy's targets hidden, like privacy's `anonymize_for_ingest` (same size and mode)."""
    from veil.privacy.detectors import detector_for
    from veil.privacy.image import anonymize_image
    from veil.privacy.settings import AnonymizeSettings

    settings = AnonymizeSettings(
        targets=tuple(policy.targets), method=policy.method, epsilon=policy.epsilon, cell=policy.cell, m=policy.m,
        # Names the model in privacy's messages; the detector object passed below is what runs.
        detector=Path(f"iteration-{detector.ref.iteration_id}"),
    )  # fmt: skip
    faces = detector_for(AnonymizeSettings(targets=(FACES,))) if FACES in policy.targets else None
    alpha = image.getchannel("A") if "A" in image.getbands() else None
    result = anonymize_image(np.asarray(image.convert("RGB")), settings, _Targets(detector, faces))
    clean = PILImage.fromarray(result.image, "RGB")
    if image.mode in ("L", "LA"):
        clean = clean.convert("L")
    if alpha is not None:
        clean = clean.convert("RGBA" if clean.mode == "RGB" else "LA")
        clean.putalpha(alpha)
    if result.dp is not None:
        clean.info["veil_dp"] = result.dp.describe()
    return clean
