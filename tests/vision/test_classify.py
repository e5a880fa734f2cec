"""Regular classification on real ants/bees photos: held-out accuracy, ONNX = eager PyTorch, seeds, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.vision.conftest import ants_bees

from veil.vision import classify
from veil.vision.backbone import pretrained_backbone
from veil.vision.data import NotEnoughData, Sample, plan_evaluation
from veil.vision.metrics import Evaluation, classification_accuracy, performance
from veil.vision.runtime import load_model, preprocess
from veil.vision.train import TrainingCancelled, TrainRequest, TrainResult, train


@pytest.fixture(scope="module")
def trained() -> TrainResult:
    """What a user gets: the default backbone at its native input side."""
    return train(TrainRequest("classify", ants_bees("train", 10), seed=7))


def test_unseen_validation_photos_are_classified_well(trained: TrainResult) -> None:
    model = load_model(trained.bundle)
    validation = ants_bees("val", 15)
    right = sum(model.classify(sample.rgb())[0].tag == sample.labels[0] for sample in validation)
    assert right / len(validation) >= 0.8, f"{right}/{len(validation)} validation photos right"


def test_evaluation_is_cross_validated_on_images_not_trained_on(trained: TrainResult) -> None:
    evaluation = trained.evaluation
    assert evaluation.method == "kfold:5"  # 20 images: too few for a single held-out split
    assert sorted(image.key for image in evaluation.images) == sorted(s.key for s in ants_bees("train", 10))
    assert len({image.fold for image in evaluation.images}) == 5
    assert classification_accuracy(evaluation) >= 0.7
    summary = performance(evaluation, threshold=0.5)
    assert summary.std_method == "folds" and summary.mean_average_precision >= 0.7
    assert set(trained.pr_curves) == {"ants", "bees"} and all(
        png[:4] == b"\x89PNG" for png in trained.pr_curves.values()
    )
    # stored evaluations round-trip, so the API can recompute metrics at any threshold later
    again = performance(Evaluation.from_dict(evaluation.to_dict()), threshold=0.9)
    assert again.recall <= summary.recall


def test_onnx_matches_eager_pytorch_within_1e_4(trained: TrainResult) -> None:
    model = load_model(trained.onnx)
    backbone = pretrained_backbone(str(trained.model_card.training["backbone"]))
    network = classify.ClassifierNetwork(backbone, 2, multilabel=False).eval()
    # Rebuild the eager network from the exported head: both share the backbone weights of the package.
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(trained.onnx).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    network.head.weight.data = torch.from_numpy(weights["head.weight"].copy())
    network.head.bias.data = torch.from_numpy(weights["head.bias"].copy())
    images = [sample.rgb() for sample in ants_bees("val", 3)]
    batch = np.stack([preprocess(image, model.info)[0] for image in images])
    with torch.no_grad():
        eager = network(torch.from_numpy(batch)).numpy()
    served = model.probabilities(images)
    assert np.abs(eager - served).max() <= 1e-4


def test_same_seed_same_metrics_and_different_seed_different_split() -> None:
    samples = ants_bees("train", 6, skip=20)
    first = train(TrainRequest("classify", samples, seed=3, input_size=64))
    second = train(TrainRequest("classify", samples, seed=3, input_size=64))
    assert first.evaluation.to_dict() == second.evaluation.to_dict()
    assert performance(first.evaluation) == performance(second.evaluation)
    assert plan_evaluation(samples, seed=4).folds != plan_evaluation(samples, seed=3).folds


def test_too_few_images_is_refused_naming_tag_and_count() -> None:
    samples = ants_bees("train", 6)
    samples = [s for s in samples if s.labels == ["ants"]] + [s for s in samples if s.labels == ["bees"]][:4]
    with pytest.raises(NotEnoughData) as refused:
        train(TrainRequest("classify", samples))
    assert refused.value.tag == "bees" and refused.value.count == 4 and refused.value.required == 5
    assert "'bees' has 4 image(s)" in str(refused.value)


def test_negative_image_with_another_tag_is_refused() -> None:
    samples = ants_bees("train", 5)
    samples.append(Sample("both.jpg", samples[0].image, ["ants", "Negative"]))
    with pytest.raises(ValueError, match="Negative"):
        train(TrainRequest("classify", samples, negative_tag="Negative"))


def test_cancel_stops_training() -> None:
    calls = []

    def cancel_on_second_poll() -> bool:
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(TrainingCancelled):
        train(TrainRequest("classify", ants_bees("train", 5), input_size=64), should_cancel=cancel_on_second_poll)


def test_a_head_fitted_without_any_image_of_the_last_class_still_scores_every_class() -> None:
    # A fold or an audit reference model may see no Negative image (the last class): its logits must still have a
    # column per class, or the audit indexes past them (it did: "index 2 is out of bounds for axis 1 with size 2").
    from veil.vision.dp_train import LinearHead

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(12, 2, 8)).astype(np.float32)  # 12 images, 2 views each
    targets = np.array([0, 1] * 5 + [2, 2])
    head = LinearHead(embeddings, targets, multilabel=False, classes=3, budget=None, seed=0)
    layer = head.fit(range(10))  # none of the last class
    assert head.logits(layer).shape == (12, 3)
    assert head.reference_logits(list(range(10)), seed=1).shape == (12, 3)
