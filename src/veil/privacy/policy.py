"""A project's privacy policy (what is hidden on ingest and how, what is kept and how long) and the one list of
obfuscation methods, which `privacy.settings`, the API and the portal all read from here."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints

ObfuscationMethod = Literal["solid", "pixelate", "blur", "dp-pixelate"]
METHODS: tuple[str, ...] = get_args(ObfuscationMethod)


class DetectorRef(BaseModel):
    """A Completed object-detection iteration of a project in this Veil whose tags name the policy's targets
    other than faces (its model is decrypted in memory only when images are ingested)."""

    model_config = ConfigDict(extra="forbid")

    project_id: str = Field(validation_alias=AliasChoices("project_id", "projectId"))
    iteration_id: str = Field(validation_alias=AliasChoices("iteration_id", "iterationId"))


class PrivacyPolicy(BaseModel):
    """Stored per project (JSON column); read by the image-ingest service and the retention purge."""

    model_config = ConfigDict(extra="forbid")

    anonymize_on_ingest: bool = False
    # Bounded: the policy is read on every ingest and returned with the project.
    targets: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=lambda: ["faces"],
        max_length=64,
        description="What to hide: faces, and tags of `detector` (e.g. plates, people) when one is named.",
    )
    detector: DetectorRef | None = None
    method: ObfuscationMethod = "solid"
    # Kept images carry the upload's ICC colour profile (a phone's Display P3 stays Display P3); off drops it with
    # the rest of the metadata (a rare profile can help tell devices apart).
    keep_icc_profile: bool = True
    retention_days: int = Field(default=30, ge=0, description="How long stored prediction images are kept.")
    # Predictions forget by default: the storing prediction routes keep an image only when an admin or trainer
    # turns this on (projects created before this default keep the value they were created with).
    store_predictions: bool = False
    # Training images: shredded once an iteration has trained on them (the iteration keeps its model and metrics),
    # and/or kept at most this many days after upload (None: until deleted).
    forget_images_after_training: bool = False
    training_image_retention_days: int | None = Field(default=None, ge=1)
    # DP-Pix (Fan 2018): average cell×cell blocks, add Laplace noise of scale 255·m/(cell²·ε).
    epsilon: float = Field(default=1.0, gt=0)
    cell: int = Field(default=16, ge=1)
    m: int = Field(default=16, ge=1)
