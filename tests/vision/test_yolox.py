"""YOLOX-Nano in PyTorch: weights read from the shipped ONNX file reproduce its outputs on real Penn-Fudan photos,
the fine-tuning export equals the eager module through the one runtime path, and a short fine-tune on raccoons
finds held-out raccoons (a measured fraction at IoU ≥ 0.5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import dataset_path
from tests.vision.conftest import rgb
from torchvision.ops import box_iou

from veil.vision.data import Sample, to_pixel_xyxy
from veil.vision.export import export_onnx
from veil.vision.runtime import ModelInfo, load_model, preprocess
from veil.vision.train import TrainRequest, TrainResult, train
from veil.vision.yolox import YOLOX_NANO_ONNX, YoloxExport, YoloxNet, rows
from veil.vision.yolox_runtime import YoloxModel

INPUT = 256


def _penn_fudan(count: int) -> list[Path]:
    return sorted((dataset_path("pedestrians-det") / "PennFudanPed" / "PNGImages").iterdir())[:count]


@pytest.fixture(scope="module")
def coco_net() -> YoloxNet:
    return YoloxNet().eval()


def test_torch_yolox_nano_reproduces_the_shipped_onnx_outputs_within_1e_4(coco_net: YoloxNet) -> None:
    reference = YoloxModel.load(YOLOX_NANO_ONNX)
    for path in _penn_fudan(3):
        image = rgb(path)
        tensor, _ = reference.tensor(image)
        expected, _ = reference.raw(image)
        with torch.no_grad():
            got = rows(coco_net(torch.from_numpy(tensor)))[0].numpy()
        assert got.shape == expected.shape == (3549, 85)
        # objectness and class probabilities: absolute; raw box regression (log sizes up to ~4): relative to its
        # scale, as float32 sums in onnxruntime's fused kernels and PyTorch's differ in order (measured ≤ 1.7e-4).
        assert np.abs(got[:, 4:] - expected[:, 4:]).max() <= 1e-4
        scale = max(1.0, float(np.abs(expected[:, :4]).max()))
        assert np.abs(got[:, :4] - expected[:, :4]).max() <= 1e-4 * scale
        # and the people it finds are the file's (person = COCO class 0)
        assert (expected[:, 4] * expected[:, 5] > 0.5).sum() > 0
        np.testing.assert_array_equal(got[:, 4] * got[:, 5] > 0.5, expected[:, 4] * expected[:, 5] > 0.5)


def test_new_class_head_keeps_every_other_pretrained_weight(coco_net: YoloxNet) -> None:
    tuned = YoloxNet(num_classes=2)
    assert tuned.num_classes == 2
    class_names = set(tuned.class_convs)
    original = dict(coco_net.body.named_parameters())
    for name, parameter in tuned.body.named_parameters():
        if name.split(".")[0] in class_names:
            assert parameter.shape[0] == 2
        else:
            assert torch.equal(parameter, original[name]), name


def test_exported_yolox_graph_matches_eager_within_1e_4() -> None:
    torch.manual_seed(0)
    net = YoloxNet(num_classes=1).eval()
    export = YoloxExport(net, INPUT, INPUT).eval()
    info = ModelInfo(
        "detect", ["person"], INPUT, INPUT, "letterbox", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), channel_order="BGR"
    )
    model = load_model(export_onnx(export, info, ["boxes", "scores"]))
    batch = np.stack([preprocess(rgb(path), info)[0] for path in _penn_fudan(2)])
    with torch.no_grad():
        eager_boxes, eager_scores = (t.numpy() for t in export(torch.from_numpy(batch)))
    boxes, scores = model.run(batch)
    assert np.abs(scores - eager_scores).max() <= 1e-4
    assert np.abs(boxes - eager_boxes).max() <= 1e-4 * max(1.0, float(np.abs(eager_boxes).max()))


@pytest.fixture(scope="module")
def fine_tuned(raccoons: list[Sample]) -> TrainResult:
    # 40 raccoon photos: 32 to train, 8 held out (the holdout split), 40 seconds of fine-tuning
    return train(TrainRequest("detect", raccoons, budget_minutes=0.67, seed=0, backbone="yolox-nano", input_size=INPUT))


def test_short_yolox_fine_tune_finds_held_out_raccoons(fine_tuned: TrainResult, raccoons: list[Sample]) -> None:
    assert fine_tuned.model_card.training["backbone"] == "yolox-nano"
    assert fine_tuned.info.channel_order == "BGR"
    model = load_model(fine_tuned.bundle)
    by_key = {sample.key: sample for sample in raccoons}
    held_out = [by_key[image.key] for image in fine_tuned.evaluation.images]
    found = total = 0
    for sample in held_out:
        image = sample.rgb()
        height, width = image.shape[:2]
        truth = torch.tensor([to_pixel_xyxy(box, width, height) for box in sample.boxes], dtype=torch.float32)
        detections = model.detect(image, threshold=0.3)
        total += len(truth)
        if len(detections):
            ious = box_iou(truth, torch.from_numpy(detections.xyxy).float())
            found += int((ious.max(dim=1).values >= 0.5).sum())
    assert total >= 8
    assert found / total >= 0.6, f"found {found} of {total} held-out raccoons at IoU ≥ 0.5"
    assert fine_tuned.performance.mean_average_precision >= 0.5


def test_yolox_nano_is_a_detection_backbone_only(raccoons: list[Sample]) -> None:
    from veil.vision.data import InvalidDataset
    from veil.vision.variants import backbone_named

    assert backbone_named("YOLOX_nano", "detect") == "yolox-nano"
    assert backbone_named("lite0", "detect") == "efficientnet-lite0"
    with pytest.raises(ValueError, match="detector"):
        backbone_named("yolox-nano", "classify")
    with pytest.raises(ValueError, match="yolox-nano"):
        backbone_named("yolov8", "detect")
    tagged = [Sample(s.key, s.image, ["raccoon"]) for s in raccoons[:10]]
    with pytest.raises(InvalidDataset, match="detector"):
        train(TrainRequest("multilabel", tagged, backbone="yolox-nano"))
