"""Detection on real raccoon photos: trains end to end, the ONNX graph equals eager PyTorch, boxes come back
in original pixels through the one runtime path, and the held-out evaluation never saw its images."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
import torch

from veil.vision import detect
from veil.vision.backbone import pretrained_backbone
from veil.vision.data import NotEnoughData, Sample
from veil.vision.runtime import load_model, preprocess
from veil.vision.train import TrainRequest, TrainResult, train

INPUT = 128


@pytest.fixture(scope="module")
def trained(raccoons: list[Sample]) -> TrainResult:
    return train(TrainRequest("detect", raccoons, max_steps=20, seed=1, input_size=INPUT))


def test_detector_trains_and_evaluates_on_held_out_images(trained: TrainResult, raccoons: list[Sample]) -> None:
    evaluation = trained.evaluation
    assert evaluation.method == "holdout" and len(evaluation.images) == 8  # 20 % of 40
    assert trained.info.task == "detect" and trained.info.labels == ["raccoon"]
    assert trained.info.resize_mode == "letterbox" and trained.info.input_width == INPUT
    assert trained.settings["iterations"] == 20  # the step cap (tests train by steps, not by the clock)
    held_out = {image.key for image in evaluation.images}
    assert held_out <= {s.key for s in raccoons}
    assert sum(len(image.true_boxes) for image in evaluation.images) >= 8
    assert "raccoon" in trained.pr_curves


def test_onnx_graph_matches_eager_detector_within_1e_4(raccoons: list[Sample]) -> None:
    torch.manual_seed(0)
    detector = detect.build_detector(pretrained_backbone(), 1, INPUT).eval()
    export = detect.DetectorExport(detector, INPUT).eval()
    from veil.vision.export import export_onnx
    from veil.vision.runtime import ModelInfo

    info = ModelInfo("detect", ["raccoon"], INPUT, INPUT, resize_mode="letterbox")
    model = load_model(export_onnx(export, info, ["boxes", "scores"]))
    batch = np.stack([preprocess(sample.rgb(), info)[0] for sample in raccoons[:2]])
    with torch.no_grad():
        eager_boxes, eager_scores = (t.numpy() for t in export(torch.from_numpy(batch)))
    boxes, scores = model.run(batch)
    assert np.abs(scores - eager_scores).max() <= 1e-4
    assert np.abs(boxes - eager_boxes).max() <= 1e-4 * max(1.0, float(np.abs(eager_boxes).max()))


def test_detect_returns_supervision_detections_in_original_pixels(trained: TrainResult, raccoons: list[Sample]) -> None:
    model = load_model(trained.bundle)
    image = raccoons[0].rgb()
    detections = model.detect(image, threshold=0.0)
    assert isinstance(detections, sv.Detections) and len(detections) <= trained.info.max_detections
    assert len(detections) > 0, "at threshold 0 the trained detector returned no box at all"
    assert detections.xyxy.min() >= 0
    assert detections.xyxy[:, [0, 2]].max() <= image.shape[1] and detections.xyxy[:, [1, 3]].max() <= image.shape[0]
    assert set(detections.data["class_name"]) == {"raccoon"}
    assert np.all(np.diff(detections.confidence) <= 0)  # type: ignore[arg-type]
    strict = model.detect(image, threshold=0.99)
    assert len(strict) <= len(detections)


def test_detection_needs_fifteen_images_per_tag(raccoons: list[Sample]) -> None:
    with pytest.raises(NotEnoughData) as refused:
        train(TrainRequest("detect", raccoons[:14], input_size=INPUT))
    assert refused.value.tag == "raccoon" and refused.value.count == 14 and refused.value.required == 15


def test_few_images_are_cross_validated_and_the_delivered_model_sees_them_all(raccoons: list[Sample]) -> None:
    few = raccoons[:18]
    result = train(TrainRequest("detect", few, max_steps=30, seed=2, input_size=INPUT))
    evaluation = result.evaluation
    assert evaluation.method == "kfold:3"
    # every image scored exactly once, by the model of the fold that held it out
    assert sorted(image.key for image in evaluation.images) == sorted(s.key for s in few)
    by_fold: dict[int, int] = {}
    for image in evaluation.images:
        by_fold[image.fold] = by_fold.get(image.fold, 0) + 1
    assert sorted(by_fold) == [0, 1, 2] and all(count >= 5 for count in by_fold.values())
    assert "3-fold cross-validation" in str(result.settings["evaluation"])
    # the step cap is split like the time budget: a sixth per fold model, half for the delivered one
    assert "5 steps" in str(result.settings["evaluation"]) and result.settings["iterations"] == 15
    assert result.model_card.evaluation_method == "kfold:3" and result.model_card.total_images == 18
    # the audit attacks the fold models: each image is a member of two of them and a non-member of one
    assert result.privacy is not None and result.privacy.audit is not None
    assert (result.privacy.audit.members, result.privacy.audit.non_members) == (36, 18)


def test_detection_iteration_is_audited_for_membership(trained: TrainResult) -> None:
    # holdout: the delivered model trained on 32 raccoon images and never saw the 8 held out
    assert trained.privacy is not None and trained.privacy.differential_privacy is None
    audit = trained.privacy.audit
    assert audit is not None and (audit.members, audit.non_members) == (32, 8)
    attack, calibrated = audit.attacks
    assert attack.name == "loss threshold" and 0.0 <= attack.auc.low <= attack.auc.value <= attack.auc.high <= 1.0
    # the calibrated attack reads 4 proxy reference detectors; the report says what they cost
    assert calibrated.name == "calibrated loss" and calibrated.auc.low <= calibrated.auc.value <= calibrated.auc.high
    assert audit.reference_models == 4 and audit.verdict and "4 proxies" in audit.notes[0]
    assert trained.model_card.privacy["audit"]["attacks"][0]["auc"]["value"] == attack.auc.value
    import json

    import onnx

    metadata = {e.key: e.value for e in onnx.load_from_string(trained.onnx).metadata_props}
    assert json.loads(metadata["veil.privacy"])["membership_audit"]["loss threshold"]["auc"] == attack.auc.value
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(trained.bundle)) as bundle:
        card = bundle.read("model_card.md").decode()
    assert "Membership-inference audit (32 member / 8 non-member pairs" in card and "Note: object detection" in card


def test_detection_fit_is_iou_times_confidence_of_the_best_same_tag_detection() -> None:
    from veil.vision.membership import detection_fit

    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=float)
    found = np.array([[0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=float)
    # box 1: the exact box is the wrong tag, the half box (IoU 0.5) at 0.8 → 0.4; box 2: exact at 0.6 → 0.6
    fit = detection_fit(truth, ["a", "a"], found, np.array([0.8, 0.6, 0.9]), ["a", "a", "b"])
    assert fit == pytest.approx((0.4 + 0.6) / 2)
    assert detection_fit(truth, ["a", "a"], np.zeros((0, 4)), np.zeros(0), []) == 0.0
    assert detection_fit(np.zeros((0, 4)), [], found[:1], np.array([0.3]), ["a"]) == pytest.approx(0.7)
