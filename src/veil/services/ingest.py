"""The one ingest path: every route or job that keeps pixels hands the bytes to `keep_image`.

    >>> ingest = ingest_policy(ctx, session, project)       # the project's policy, checked, detector loaded
    >>> kept = keep_image(ctx, project, ingest, data, image_id)  # decode → strip (→ anonymize → re-encode) → seal

`keep_image` composes the layers in the order the privacy promise needs: `images.ingest` decodes untrusted bytes
within the limits (the gate), then either keeps the upload's own pixels without its metadata (a JPEG's compressed
data untouched, EXIF/GPS, XMP, IPTC, comments and thumbnails dropped, the ICC profile kept unless the policy's
`keep_icc_profile` is off), or, when the policy anonymizes, `privacy` hides the policy's targets and
`images.ingest` re-encodes the pixels once (a JPEG with its own quantization tables); only then is anything
sealed with the project's key: with anonymization on, the original pixels never reach the blob store. `images`
may not import `privacy`, so the composition lives here.

Its callers, which the ingest test (tests/services/test_ingest.py) proves route by route: training uploads of
every kind (`images.add_images`: data/multipart, base64 files, URLs, stored predictions promoted to training
images), stored predictions and quick tests (`prediction.predict` with `store`), project import
(`portability.import_project`); `veil import` and the portal use those same routes.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image as PILImage
from sqlalchemy.orm import Session

from veil.images.ingest import CleanImage, encode_image, keep_pixels, read_image
from veil.privacy.policy import PrivacyPolicy
from veil.services.context import AppContext
from veil.services.errors import InvalidInput
from veil.services.privacy import (
    PolicyDetector,
    anonymize_with_policy,
    load_detector,
    privacy_policy,
    privacy_policy_problem,
)
from veil.services.vault import Vault
from veil.store.models import Project, new_id

# Custom Vision's per-image status for an image refused because the project's privacy policy cannot be applied.
POLICY_REFUSED = "ErrorUnknown"


class PolicyNotApplicable(InvalidInput):
    """The project's privacy policy cannot be applied to an image (it is refused, never kept raw)."""

    code = "BadRequestPrivacyPolicy"


@dataclass(frozen=True)
class IngestPolicy:
    """A project's policy as ingest applies it: why it cannot (if so) and its loaded detector (if any)."""

    policy: PrivacyPolicy
    problem: str | None = None
    detector: PolicyDetector | None = None


@dataclass(frozen=True)
class KeptImage:
    """An image as Veil keeps it: the upload's pixels without metadata, or anonymized and re-encoded once, sealed
    under `blob_id`."""

    blob_id: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    anonymized: bool


def ingest_policy(ctx: AppContext, session: Session, project: Project) -> IngestPolicy:
    """The project's policy, checked once per batch (a policy saved before a check existed, or whose detector
    was deleted since, refuses images instead of storing them raw or failing the server)."""
    policy = privacy_policy(project)
    if not policy.anonymize_on_ingest:
        return IngestPolicy(policy)
    problem = privacy_policy_problem(session, policy)
    if problem or policy.detector is None:
        return IngestPolicy(policy, problem)
    try:
        return IngestPolicy(policy, detector=load_detector(ctx, session, policy))
    except Exception as exc:  # onnxruntime raises several unrelated types for a model it cannot load
        return IngestPolicy(policy, f"the policy's detector cannot be loaded: {str(exc).splitlines()[0]}")


def keep_image(ctx: AppContext, project: Project, ingest: IngestPolicy, data: bytes, owner_id: str) -> KeptImage:
    """Seal `data` under the project's key after the safe decode, the metadata strip and the project's anonymization;
    `owner_id` is the row (image, prediction) whose deletion shreds the blob (see `Vault.put`).

    Raises `images.ingest.ImageRejected` (not an image, too big, ...) or `PolicyNotApplicable`; nothing is
    written then."""
    clean, anonymized = _clean(ctx, ingest, data)
    blob_id = new_id()
    Vault(ctx).put(project, blob_id, clean.data, owner_id=owner_id)
    return KeptImage(blob_id, clean.content_type, clean.width, clean.height, len(clean.data), anonymized)


def _clean(ctx: AppContext, ingest: IngestPolicy, data: bytes) -> tuple[CleanImage, bool]:
    keep_icc_profile = ingest.policy.keep_icc_profile
    if not ingest.policy.anonymize_on_ingest:
        return keep_pixels(data, ctx.limits, keep_icc_profile=keep_icc_profile), False
    source = read_image(data, ctx.limits)
    image, anonymized = _apply_policy(source.pixels, ingest)
    icc_profile = source.icc_profile if keep_icc_profile else None
    return encode_image(image, source.source_format, icc_profile=icc_profile, jpeg=source.jpeg), anonymized


def anonymization_facts(policy: PrivacyPolicy) -> dict[str, str]:
    """What a kept image's metadata records about how it was anonymized (`veil.*` keys)."""
    facts = {"veil.anonymized": str(policy.method)}
    if policy.method == "dp-pixelate":
        facts["veil.epsilon"] = str(policy.epsilon)
    return facts


def _apply_policy(image: PILImage.Image, ingest: IngestPolicy) -> tuple[PILImage.Image, bool]:
    policy = ingest.policy
    if not policy.anonymize_on_ingest:
        return image, False
    if ingest.problem:
        raise PolicyNotApplicable(f"{ingest.problem} (PUT /veil/v1/projects/{{projectId}}/privacy)")
    # Lazy: privacy (supervision, ONNX detectors) takes seconds to import; only projects that ask need it.
    from veil.privacy.detectors import DetectorError
    from veil.privacy.settings import SettingsError

    try:
        return anonymize_with_policy(image, policy, ingest.detector), True
    except (SettingsError, DetectorError) as exc:
        raise PolicyNotApplicable(f"the project's privacy policy cannot be applied: {exc}") from None
