"""A project's privacy policy: read, checked and saved, and its own detector (a Completed object-detection
iteration that finds targets other than faces).

The policy is checked when saved and again at every ingest (a detector iteration may have been deleted since).
A policy detector's model comes from the shared model cache (`services.models`), faces from privacy's own
detector cache (`privacy.detectors.detector_for`); `services.ingest.keep_image` applies the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from veil.privacy.policy import DetectorRef, PrivacyPolicy
from veil.security import audit
from veil.security.auth import Principal
from veil.services.context import AppContext
from veil.services.errors import InvalidInput
from veil.services.models import MODELS
from veil.services.projects import get_project
from veil.store.models import Iteration, Project, utcnow
from veil.store.records import COMPLETED, IterationRecord

if TYPE_CHECKING:
    import supervision as sv

    from veil.vision.runtime import ExportedModel

FACES = "faces"
# What a policy can hide with Veil's built-in detectors; other targets need a custom detector.
BUILT_IN_TARGETS = (FACES,)
POLICY_ERROR_CODE = "BadRequestPrivacyPolicy"


def privacy_policy(project: Project) -> PrivacyPolicy:
    return PrivacyPolicy.model_validate(project.privacy or {})


def privacy_policy_problem(session: Session, policy: PrivacyPolicy, actor: Principal | None = None) -> str | None:
    """Why ingest could not apply `policy` (None when it can): checked at save time and again at ingest,
    where a policy stored before this check existed, or whose detector was deleted since, must not turn
    every upload into a server error. `actor` (at save time) must be allowed to use the detector's project."""
    if not policy.targets:
        return 'the privacy policy names no targets; use targets ["faces"]'
    if policy.detector is not None:
        return detector_problem(session, policy.detector, policy.targets, actor)
    unknown = [t for t in dict.fromkeys(policy.targets) if t not in BUILT_IN_TARGETS]
    if unknown:
        names = ", ".join(repr(t) for t in unknown)
        return (
            f"the privacy policy cannot hide {names}: Veil's built-in detector finds only faces; name a detector "
            '(`"detector": {"project_id": ..., "iteration_id": ...}`, a Completed object-detection iteration '
            f'whose tags include {names}) or use targets ["faces"]'
        )
    return None


def set_privacy_policy(session: Session, actor: Principal, project_id: str, policy: PrivacyPolicy) -> Project:
    """Store a project's policy after checking ingest can apply it (`InvalidInput` names what is wrong)."""
    project = get_project(session, project_id)
    problem = privacy_policy_problem(session, policy, actor)
    if problem:
        raise InvalidInput(problem, code=POLICY_ERROR_CODE)
    project.privacy = policy.model_dump()
    project.modified = utcnow()
    audit.record(session, actor, "project.privacy.update", [project.id])
    return project


# --- a policy's own detector ---------------------------------------------------------------------------------


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
    if iteration.status != COMPLETED or not iteration.model_blob_id:
        return f"{where} is {iteration.status}; only a Completed iteration can be a policy's detector"
    labels = {label.name.lower() for label in IterationRecord.of(iteration).labels}
    missing = [t for t in targets if t != FACES and t.lower() not in labels]
    if missing:
        return f"{where} has no tag {', '.join(repr(t) for t in missing)}; its tags are: {', '.join(sorted(labels))}"
    return None


def load_detector(ctx: AppContext, session: Session, policy: PrivacyPolicy) -> PolicyDetector:
    """The policy's detector model (checked first by `detector_problem`), from the shared model cache."""
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


def anonymize_with_policy(
    image: PILImage.Image, policy: PrivacyPolicy, detector: PolicyDetector | None
) -> PILImage.Image:
    """`image` with the policy's targets hidden: privacy's `anonymize_for_ingest`, given the policy's own
    detector (next to faces) when it names one."""
    # Lazy: privacy (supervision, ONNX detectors) takes seconds to import; only projects that ask need it.
    from veil.privacy.detectors import detector_for
    from veil.privacy.ingest import anonymize_for_ingest
    from veil.privacy.settings import AnonymizeSettings

    if detector is None:
        return anonymize_for_ingest(image, policy)
    faces = detector_for(AnonymizeSettings(targets=(FACES,))) if FACES in policy.targets else None
    # The name appears in privacy's messages; the detector object is what runs.
    return anonymize_for_ingest(image, policy, _Targets(detector, faces), f"iteration-{detector.ref.iteration_id}")
