"""YOLOX-Nano in PyTorch: weights read from the shipped ONNX file reproduce its outputs on real Penn-Fudan photos,
the fine-tuning export equals the eager module through the one runtime path; yolox-nano is a detection-only choice;
new classes start from the closest COCO class and pretrained weights learn at 0.03 × the head's rate, which finds
raccoons of the tuning split better than the earlier recipes (pretrained weights at 0.3 × and 0.1 ×) did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import dataset_path
from tests.vision.conftest import rgb

from veil.vision.data import Sample
from veil.vision.datasets import load_dataset
from veil.vision.detect import DetectionItem, TrainingBudget
from veil.vision.export import export_onnx
from veil.vision.runtime import ModelInfo, load_model, preprocess
from veil.vision.train import TrainRequest, _detection_item, train
from veil.vision.yolox import (
    PRETRAINED_LR_FACTOR,
    YOLOX_NANO_ONNX,
    YoloxExport,
    YoloxNet,
    closest_coco_classes,
    pretrained_yolox_nano,
    rows,
    train_yolox,
)
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


def _yolox_info(labels: list[str]) -> ModelInfo:
    return ModelInfo("detect", labels, INPUT, INPUT, "letterbox", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), channel_order="BGR")


def _items(samples: list[Sample], labels: list[str]) -> list[DetectionItem]:
    return [_detection_item(s, labels, INPUT)[0] for s in samples]


def _tuning_raccoons(raccoons: list[Sample]) -> list[Sample]:
    """The first 30 raccoon photos by name: the split the recipe was tuned on (the last 10 are the bench's report
    set, which these new tests never use)."""
    return sorted(raccoons, key=lambda s: s.key)[:30]


def test_new_classes_start_from_the_closest_coco_class(coco_net: YoloxNet, raccoons: list[Sample]) -> None:
    names = YOLOX_NANO_ONNX.with_name("coco_classes.txt").read_text().split("\n")
    raccoon = ["raccoon"]
    found = closest_coco_classes(coco_net, _items(_tuning_raccoons(raccoons)[:10], raccoon), _yolox_info(raccoon), 1)
    assert found[0] is not None and names[found[0]] in {"cat", "dog", "bear"}, found
    person = ["person"]
    photos = load_dataset(dataset_path("pedestrians-det") / "PennFudanPed", "pascal-v1")
    people = _items(sorted(photos, key=lambda s: s.key)[:5], person)
    found = closest_coco_classes(coco_net, people, _yolox_info(person), 1)
    assert found[0] is not None and names[found[0]] == "person", found
    # the new head's row is that COCO row: untrained, it scores people as the COCO model does
    net = pretrained_yolox_nano(1, people, _yolox_info(person)).eval()
    image = torch.from_numpy(preprocess(rgb(_penn_fudan(1)[0]), _yolox_info(person))[0][None])
    with torch.no_grad():
        tuned, coco = rows(net(image))[0], rows(coco_net(image))[0]
    assert torch.allclose(tuned[:, 5], coco[:, 5], atol=1e-6)


def test_pretrained_weights_move_at_their_fraction_of_the_class_heads_rate(
    coco_net: YoloxNet, raccoons: list[Sample]
) -> None:
    """AdamW moves a weight by about its learning rate a step: after 3 steps the pretrained weights have moved about
    `PRETRAINED_LR_FACTOR` (0.03) as far as the class convolutions (earlier recipes: 0.3, then 0.1; both let the
    COCO boxes drift)."""
    items = _items(_tuning_raccoons(raccoons)[:8], ["raccoon"])
    info = _yolox_info(["raccoon"])
    net = pretrained_yolox_nano(1, items, info)
    start = {name: p.detach().clone() for name, p in net.body.named_parameters()}
    train_yolox(net, items, info, TrainingBudget(600.0, steps=3), seed=0)
    moved: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    for name, parameter in net.body.named_parameters():
        moved[name.rsplit(".", 1)[0] in net.class_convs].append((parameter.detach() - start[name]).abs().flatten())
    head, pretrained = (float(torch.cat(moved[key]).median()) for key in (True, False))
    assert head > 0 and pretrained > 0
    assert 0.5 * PRETRAINED_LR_FACTOR <= pretrained / head <= 1.5 * PRETRAINED_LR_FACTOR, (pretrained, head)


TUNING_STEPS = 200


def test_fine_tuned_yolox_finds_raccoons_of_the_tuning_split_better_than_the_earlier_recipes(
    raccoons: list[Sample],
) -> None:
    """A class COCO has no box for: trained on raccoon photos 11-30 by name for 200 optimizer steps (step-capped:
    load-independent), AP@0.5 on photos 1-10 through the exported model — all within the split the recipe was
    tuned on, never the bench's report photos."""
    tuning = _tuning_raccoons(raccoons)
    result = train(
        TrainRequest(
            "detect",
            tuning,
            seed=0,
            backbone="yolox-nano",
            input_size=INPUT,
            test_keys=[s.key for s in tuning[:10]],
            max_steps=TUNING_STEPS,
            audit=False,
        )
    )
    assert result.settings["iterations"] == TUNING_STEPS
    # Measured (2026-11-26, seed 0, step-capped so deterministic): 0.973 with pretrained weights at 0.03 × the
    # head's rate; 0.762 at 0.1 × (the previous recipe, whose boxes drifted off raccoons the COCO model had boxed
    # well: 0.839 here after 400 steps, 1.000 at 0.03 ×) and 0.633 for the first one (fresh class head, 0.3 ×).
    # 10 photos, 10 boxes: one box is worth about 0.1, so 0.87 sits a box from either side.
    assert result.performance.mean_average_precision >= 0.87, result.performance


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


def test_yolox_nano_is_the_detection_default_but_not_the_private_one() -> None:
    """Issue 15's decision: detection starts from YOLOX-Nano unless a backbone is named; DP detection keeps its own
    default (Lite0 FCOS); Custom Vision's detection domains train YOLOX-Nano but the compact ones (Core ML export)."""
    from veil.vision.domains import DOMAINS
    from veil.vision.dp import PrivacyBudget
    from veil.vision.train import _backbone

    assert _backbone(TrainRequest("detect", [])) == "yolox-nano"
    assert _backbone(TrainRequest("detect", [], backbone="lite0")) == "efficientnet-lite0"
    assert _backbone(TrainRequest("detect", [], privacy=PrivacyBudget(8.0))) == "efficientnet-lite0"
    assert _backbone(TrainRequest("detect", [], privacy=PrivacyBudget(8.0), backbone="yolox-nano")) == "yolox-nano"
    assert _backbone(TrainRequest("classify", [])) == "efficientnet-lite2"
    assert {d.backbone for d in DOMAINS if d.is_detection and not d.exportable} == {"yolox-nano"}
    assert {d.backbone for d in DOMAINS if d.is_detection and d.exportable} == {"efficientnet-lite0"}


QUALITY_STEPS = 80


def test_fine_tuned_yolox_finds_the_raccoons_of_unseen_photos(raccoons: list[Sample]) -> None:
    """A class COCO does not have: 30 raccoon photos, 80 optimizer steps (a step cap, not a time budget, so the
    result does not depend on machine load); AP@0.5 on the 10 photos left out, through the exported model."""
    ordered = sorted(raccoons, key=lambda s: s.key)
    held_out = [s.key for s in ordered[30:]]
    result = train(
        TrainRequest(
            "detect",
            ordered,
            seed=0,
            backbone="yolox-nano",
            input_size=INPUT,
            test_keys=held_out,
            max_steps=QUALITY_STEPS,
            audit=False,
        )
    )
    assert result.settings["iterations"] == QUALITY_STEPS and result.settings["max_steps"] == QUALITY_STEPS
    assert sorted(image.key for image in result.evaluation.images) == sorted(held_out)
    # Measured (2026-11-26, seed 0): 0.986 with pretrained weights at 0.03 ×; 0.750 at 0.1 × (0.686-0.782 over
    # seeds 0-2); the first recipe (fresh head, 0.3 ×) 0.867 (0.657-0.867). A head that has not learned raccoons
    # scores about 0.
    assert result.performance.mean_average_precision >= 0.5, result.performance
