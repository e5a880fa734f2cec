"""The domain table: Azure's ids and flags as the SDK names them, each mapped to a network Veil can train."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from azure.cognitiveservices.vision.customvision.training.models import DomainType, ExportPlatform

from veil.vision.domains import (
    DEFAULT_CLASSIFICATION_DOMAIN_ID,
    DEFAULT_DETECTION_DOMAIN_ID,
    DOMAINS,
    can_export,
    export_platforms,
    find_domain,
)
from veil.vision.export_formats import FORMATS, UnsupportedExport, exportable_platforms, find_format
from veil.vision.variants import VARIANTS

REPO = Path(__file__).resolve().parents[2]
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# The ids Azure documents (learn.microsoft.com "Select a domain"); code written for Azure hard-codes them.
AZURE_DOCUMENTED = {
    ("Classification", "General"): "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31",
    ("Classification", "General [A1]"): "a8e3c40f-fb4a-466f-832a-5e457ae4a344",
    ("Classification", "General [A2]"): "2e37d7fb-3a54-486a-b4d6-cfc369af0018",
    ("Classification", "Food"): "c151d5b5-dd07-472a-acc8-15d29dea8518",
    ("Classification", "Landmarks"): "ca455789-012d-4b50-9fec-5bb63841c793",
    ("Classification", "Retail"): "b30a91ae-e3c1-4f73-a81e-c270bff27c39",
    ("Classification", "General (compact)"): "0732100f-1a38-4e49-a514-c9b44c697ab5",
    ("Classification", "General (compact) [S1]"): "a1db07ca-a19a-4830-bae8-e004a42dc863",
    ("ObjectDetection", "General"): "da2e3a8a-40a5-4171-82f4-58522f70fbc1",
    ("ObjectDetection", "General [A1]"): "9c616dff-2e7d-ea11-af59-1866da359ce6",
    ("ObjectDetection", "Logo"): "1d8ffafe-ec40-4fb2-8f90-72b3b6cecea4",
    ("ObjectDetection", "Products on shelves"): "3780a898-81c3-4516-81ae-3a139614e1f3",
    ("ObjectDetection", "General (compact)"): "a27d5ca5-bb19-49d8-a70a-fec086c47f5b",
    ("ObjectDetection", "General (compact) [S1]"): "7ec2ac80-887b-48a6-8df9-8b1357765430",
}


def test_every_documented_azure_domain_is_listed_under_its_azure_id() -> None:
    listed = {(d.type, d.name): d.id for d in DOMAINS}
    for key, domain_id in AZURE_DOCUMENTED.items():
        assert listed.get(key) == domain_id, key


def test_ids_are_unique_lowercase_guids_and_types_are_the_sdks() -> None:
    assert len({d.id for d in DOMAINS}) == len(DOMAINS)
    sdk_types = {t.value for t in DomainType}
    for domain in DOMAINS:
        assert GUID.fullmatch(domain.id), domain.id
        assert domain.type in sdk_types
        assert find_domain(domain.id.upper()) is domain


def test_only_compact_domains_are_exportable_and_only_to_sdk_platforms() -> None:
    sdk_platforms = {p.value for p in ExportPlatform}
    assert {fmt.platform for fmt in FORMATS} <= sdk_platforms
    for domain in DOMAINS:
        assert domain.exportable == ("(compact)" in domain.name), domain.name
        platforms = export_platforms(domain)
        assert bool(platforms) == domain.exportable
        assert all(can_export(domain.id, p) == domain.exportable for p in exportable_platforms(domain.task))
    assert not can_export("00000000-0000-0000-0000-000000000000", "ONNX")


def test_a_domain_lists_a_platform_only_when_its_converter_takes_the_domains_task() -> None:
    """What `exportableTo` lists is what `find_format` accepts for the task, and nothing it refuses."""
    for domain in DOMAINS:
        if not domain.exportable:
            continue
        for fmt in FORMATS:
            listed = fmt.platform in export_platforms(domain)
            try:
                find_format(fmt.platform, fmt.flavor, domain.task)
            except UnsupportedExport:
                assert not listed or any(other.platform == fmt.platform and other is not fmt for other in FORMATS), (
                    domain.name,
                    fmt.key,
                )
            else:
                assert listed, (domain.name, fmt.key)
    detector = next(d for d in DOMAINS if d.is_detection and d.exportable)
    assert "TensorFlow" not in export_platforms(detector)  # TensorFlow Lite converts classifiers only
    with pytest.raises(UnsupportedExport, match="classification models only"):
        find_format("TensorFlow", "TensorFlowLite", "detect")


def test_every_domain_maps_to_a_trainable_network() -> None:
    for domain in DOMAINS:
        # non-compact detection domains train the COCO-pretrained YOLOX-Nano (issue 15), the rest an EfficientNet-Lite
        yolox = domain.is_detection and not domain.exportable
        assert domain.backbone in (("yolox-nano",) if yolox else VARIANTS), domain.name
        assert domain.input_size % 32 == 0 and 192 <= domain.input_size <= 384, domain.name


def test_defaults_are_the_general_domains() -> None:
    classification, detection = find_domain(DEFAULT_CLASSIFICATION_DOMAIN_ID), find_domain(DEFAULT_DETECTION_DOMAIN_ID)
    assert classification is not None and classification.name == "General" and not classification.is_detection
    assert detection is not None and detection.name == "General" and detection.is_detection


@pytest.mark.parametrize("doc", ["docs/CUSTOM_VISION_COMPAT.md"])
def test_the_documented_table_lists_every_domain_and_its_network(doc: str) -> None:
    text = (REPO / doc).read_text()
    for domain in DOMAINS:
        row = next((line for line in text.splitlines() if domain.id in line), None)
        assert row is not None, f"{doc} does not list {domain.type} {domain.name} ({domain.id})"
        assert domain.backbone.removeprefix("efficientnet-") in row and str(domain.input_size) in row, row


def test_every_classification_domains_network_trains_and_serves_at_its_side() -> None:
    """A project created with any classification domain trains: each distinct (network, side) once, on real photos."""
    from tests.vision.conftest import ants_bees

    from veil.vision.runtime import load_model
    from veil.vision.train import TrainRequest, train

    samples, validation = ants_bees("train", 6), ants_bees("val", 5)
    networks = sorted({(d.backbone, d.input_size) for d in DOMAINS if not d.is_detection})
    for backbone, side in networks:
        result = train(TrainRequest("classify", samples, backbone=backbone, input_size=side, seed=1))
        model = load_model(result.onnx)
        assert (model.info.input_width, model.info.input_height) == (side, side), (backbone, side)
        right = sum(model.classify(s.rgb())[0].tag == s.labels[0] for s in validation)
        assert right >= 7, f"{backbone} at {side} px: {right}/10 unseen photos right"
