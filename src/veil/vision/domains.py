"""Azure Custom Vision's domains, with Azure's ids, names, types and export flags, and what Veil trains for each.

A Custom Vision project names a domain by id; code written for Azure hard-codes those ids (or picks one from
`get_domains()` by name), and a migrated project keeps its domain. So every domain Azure lists is here, under
Azure's id and name (learn.microsoft.com, "Select a domain for a Custom Vision project", and Azure's GetDomains
answer), each mapped to the EfficientNet-Lite size and input side Veil trains it with.

Veil has no domain-specific pretrained weights: every domain starts from the same ImageNet backbones, so Food,
Landmarks and Retail train like General (ImageNet's classes already cover dishes, buildings and clothing). What a
domain changes is the network size and input side, chosen to honour what Azure promises for it:

- General: the measured best classifier (Lite2 at 256 px, docs/BENCHMARKS.md); detection's measured best start,
  COCO-pretrained YOLOX-Nano, at 256 (every non-compact detection domain trains YOLOX-Nano at its side; private
  training and the compact detection domains: Lite0 FCOS, which converts to every export format).
- General [A1] ("better accuracy, more training time"): the largest network at a larger side.
- General [A2] ("better accuracy, faster inference than General"): Lite0 at 288 px (measured 0.954 on ants/bees,
  near Lite2's 0.967, with Lite0's speed).
- Compact (edge devices): Lite0 at 224 px (8 ms a prediction measured); compact [S1] (Azure's larger compact) Lite1.
- Logo and Products on shelves (small objects in a large frame): detection at 320 px.

Exportability follows Azure: only compact domains export ("Custom Vision Service only exports projects with
compact domains"). `export_platforms()` is the one answer to "which formats can an iteration of this domain be
exported to" — `get_domains`, an iteration's `exportableTo` and the export route all ask it; it lists what the
converters installed here really build for the domain's task (`veil.vision.export_formats`: TensorFlow Lite is
for classifiers only, so detection domains do not list `TensorFlow`). Veil's native ONNX (flavor `Veil`, for
`veil predict` and the edge) is an extension every trained iteration exports, compact or not.

Torch-free, so the API validates a domain without loading the training stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from veil.vision.export_formats import exportable_platforms
from veil.vision.variants import DEFAULT_DETECTION_BACKBONE

DomainType = Literal["Classification", "ObjectDetection"]
CLASSIFICATION: DomainType = "Classification"
OBJECT_DETECTION: DomainType = "ObjectDetection"


@dataclass(frozen=True)
class Domain:
    """One Custom Vision domain as Azure lists it, and the network Veil trains for it."""

    id: str
    name: str
    type: DomainType
    exportable: bool  # Azure's flag: True only for compact domains
    backbone: str  # a key of veil.vision.variants.VARIANTS, or yolox-nano (detection)
    input_size: int  # the side Veil trains and serves at (a multiple of 32)
    description: str
    enabled: bool = True

    @property
    def is_detection(self) -> bool:
        return self.type == OBJECT_DETECTION

    @property
    def task(self) -> str:
        """The model task the export formats are listed by (multilabel exports as multiclass does)."""
        return "detect" if self.is_detection else "classify"


def _classifier(domain_id: str, name: str, backbone: str, size: int, description: str) -> Domain:
    return Domain(domain_id, name, CLASSIFICATION, "(compact)" in name, backbone, size, description)


def _detector(domain_id: str, name: str, backbone: str, size: int, description: str) -> Domain:
    return Domain(domain_id, name, OBJECT_DETECTION, "(compact)" in name, backbone, size, description)


_LITE0, _LITE1, _LITE2 = "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"
# COCO-pretrained YOLOX-Nano (issue 15); DP detection: Lite0 FCOS. Compact (exportable) detection domains stay on
# Lite0 FCOS: a YOLOX graph does not convert to Core ML yet (onnx2torch has no SpaceToDepth), and Azure's formats
# are what compact domains are for.
_DETECTOR = DEFAULT_DETECTION_BACKBONE

# Azure's order (GetDomains lists classification first, then detection).
DOMAINS: tuple[Domain, ...] = (
    _classifier(
        "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31", "General", _LITE2, 256, "A broad range of image classification tasks."
    ),
    _classifier(
        "c151d5b5-dd07-472a-acc8-15d29dea8518", "Food", _LITE2, 256, "Photographs of dishes, fruit and vegetables."
    ),
    _classifier(
        "ca455789-012d-4b50-9fec-5bb63841c793", "Landmarks", _LITE2, 256, "Recognizable natural and built landmarks."
    ),
    _classifier(
        "b30a91ae-e3c1-4f73-a81e-c270bff27c39", "Retail", _LITE2, 256, "Images from shopping catalogs and websites."
    ),
    _classifier(
        "0732100f-1a38-4e49-a514-c9b44c697ab5",
        "General (compact)",
        _LITE0,
        224,
        "General classification for edge devices; exportable.",
    ),
    _classifier(
        "8882951b-82cd-4c32-970b-d5f8cb8bf6d7", "Food (compact)", _LITE0, 224, "Food for edge devices; exportable."
    ),
    _classifier(
        "b5cfd229-2ac7-4b2b-8d0a-2b0661344894",
        "Landmarks (compact)",
        _LITE0,
        224,
        "Landmarks for edge devices; exportable.",
    ),
    _classifier(
        "6b4faeda-8396-481b-9f8b-177b9fa3097f", "Retail (compact)", _LITE0, 224, "Retail for edge devices; exportable."
    ),
    _classifier(
        "a8e3c40f-fb4a-466f-832a-5e457ae4a344",
        "General [A1]",
        _LITE2,
        288,
        "Better accuracy for larger datasets; longer training.",
    ),
    _classifier(
        "2e37d7fb-3a54-486a-b4d6-cfc369af0018",
        "General [A2]",
        _LITE0,
        288,
        "Better accuracy with faster inference than General.",
    ),
    _classifier(
        "a1db07ca-a19a-4830-bae8-e004a42dc863",
        "General (compact) [S1]",
        _LITE1,
        256,
        "A larger, more accurate compact classifier; exportable.",
    ),
    _detector(
        "da2e3a8a-40a5-4171-82f4-58522f70fbc1", "General", _DETECTOR, 256, "A broad range of object detection tasks."
    ),
    _detector("1d8ffafe-ec40-4fb2-8f90-72b3b6cecea4", "Logo", _DETECTOR, 320, "Brand logos in images."),
    _detector(
        "3780a898-81c3-4516-81ae-3a139614e1f3",
        "Products on shelves",
        _DETECTOR,
        320,
        "Detecting and classifying products on shelves.",
    ),
    _detector(
        "a27d5ca5-bb19-49d8-a70a-fec086c47f5b",
        "General (compact)",
        _LITE0,
        256,
        "General detection for edge devices; exportable.",
    ),
    _detector(
        "7ec2ac80-887b-48a6-8df9-8b1357765430",
        "General (compact) [S1]",
        _LITE0,
        224,
        "A smaller, faster compact detector; exportable.",
    ),
    _detector(
        "9c616dff-2e7d-ea11-af59-1866da359ce6",
        "General [A1]",
        _DETECTOR,
        320,
        "More accurate region locations; longer training.",
    ),
)
DEFAULT_CLASSIFICATION_DOMAIN_ID = DOMAINS[0].id
DEFAULT_DETECTION_DOMAIN_ID = "da2e3a8a-40a5-4171-82f4-58522f70fbc1"
_BY_ID = {domain.id: domain for domain in DOMAINS}


def find_domain(domain_id: str) -> Domain | None:
    """The domain with this id (any letter case, as Azure's GUIDs are), or None."""
    return _BY_ID.get(domain_id.strip().lower())


def export_platforms(domain: Domain) -> tuple[str, ...]:
    """The platforms (Custom Vision `ExportPlatform` names) an iteration trained on `domain` exports to: none
    unless it is compact (as on Azure), else every platform whose converter is installed and takes the domain's
    task."""
    return tuple(exportable_platforms(domain.task)) if domain.exportable else ()


def can_export(domain_id: str, platform: str) -> bool:
    """True when an iteration of this domain can be exported to `platform` (a Custom Vision ExportPlatform)."""
    domain = find_domain(domain_id)
    return domain is not None and platform in export_platforms(domain)
