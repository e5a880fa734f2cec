"""Private training benchmark: accuracy and membership-inference leakage at ε = ∞, 8, 3, 1.

ants/bees (PyTorch's transfer-learning tutorial data), Regular classification (frozen EfficientNet-Lite2
embeddings, image + mirror; linear head: L-BFGS when ε = ∞, Opacus DP-SGD otherwise), trained on the full train
split (245 images) and on 30 images per class; accuracy on the 153 validation images. The audit attacks that
model with the training images as members and the validation images as non-members (loss threshold, and LiRA
with 8 reference models of the same procedure), exactly as `veil train` does with a fixed test set. The DP
hyperparameters were chosen by 5-fold cross-validation on the train split only; everything reported here is on
the validation split. Embeddings are computed once per set; the wall time per ε is the head's training plus the
audit (the shared embedding time is reported separately). The plot goes to docs/privacy_training.png
(docs/privacy_training_advanced.png when the Regular rows are skipped).

Two extra loss-attack columns separate membership from the split: "i.i.d." redraws the members at random from
train + val pooled (same count per class; non-members = the rest), 10 draws, mean ± sd — the membership game as
defined, where members and non-members come from one distribution; "null" is the same procedure trained on other
train images (never on the members), so its AUC is what the train/val difference alone gives the attack.
Advanced rows (30 per class, ε = ∞, 8, 3, 1): ε = ∞ is non-private Advanced (`classify.fine_tune`, AdamW with
augmentation, early-stopped on a 20 % split of the 60, `ADVANCED_SECONDS` budget); the private rows are
`veil.vision.dp_train.fine_tune_dp` as `veil train --advanced --dp-epsilon` runs it (its convolutions frozen, the DP
head on the network's embeddings; see DPFineTuneSettings). All are audited with the loss attack and linear-head
proxies ("offline" calibration), as `veil train --advanced` does.

Detection rows (Penn-Fudan pedestrians, 60 training and 50 held-out images from a seeded shuffle, Lite0 FCOS at
256 px; `_detection_rows`): the non-private product detector, the DP procedure without noise (ε = ∞), and DP at
ε = 8, 3, 1 (`veil.vision.dp_detect`); mAP@0.5 on the held-out images and the detection audit (loss-threshold
attack on the per-image fit, `membership.detection_fit`; no calibrated attack for detectors yet), with wall and CPU
seconds of training. The DP settings were chosen on plates-det, not on Penn-Fudan.
YOLOX-Nano rows (`_yolox_rows`, the same split and audit at 256 px): the COCO network with the closest-COCO class
rows and no training (non-private: the rows are chosen from the training images exactly), the class rows alone at
ε = 8 (the previous recipe), then `veil.vision.dp_yolox`'s default (class + objectness rows) at ε = ∞ (same
procedure, no noise, exact row choice), 8, 3, 1. Faces rows (`_faces_rows`): the same on WIDER faces (bench/
training.py's faces set), plus DP Lite0 FCOS at ε = 8. Both are report sets: the YOLOX settings were chosen on
plates-det and raccoon photos 1-50 (`_yolox_tuning_rows`, group "yolox-tune", never part of the record).
Every report row is merged into docs/privacy_training.json (a group measured again replaces its rows), and the
plot is drawn from that record, so a partial run keeps the other groups' rows in the plot.

    make bench BENCH=privacy-training        # or: python -m bench privacy-training
    PRIVACY_BENCH_ROWS=advanced,detection python -m bench privacy-training   # only those row groups (or: detection)
    PRIVACY_BENCH_ROWS=yolox,faces python -m bench privacy-training          # the YOLOX-Nano DP rows only
    PRIVACY_BENCH_ROWS=yolox-tune PRIVACY_BENCH_TUNE=objectness:1e-3:1e-1 python -m bench privacy-training
    PRIVACY_BENCH_ROWS=plot python -m bench privacy-training                 # redraw the plot from the record
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from veil.vision import classify, membership
from veil.vision.backbone import MEAN, STD, FrozenRunner, pretrained_backbone
from veil.vision.data import Sample
from veil.vision.datasets import load_dataset
from veil.vision.dp import PrivacyBudget
from veil.vision.dp_train import LinearHead
from veil.vision.runtime import ModelInfo
from veil.vision.variants import variant_named

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
PLOT = REPO / "docs" / "privacy_training.png"
RECORD = REPO / "docs" / "privacy_training.json"  # every report row the plot draws, as last measured (_save_record)
MEASURED: list[tuple[str, dict[str, object]]] = []  # this run's rows, in order (filled by _add)
EPSILONS = (math.inf, 8.0, 3.0, 1.0)
TRAIN_IMAGES = 245  # the full ants/bees train split (the null model trains on train images outside the members)
_TRAIN_EMBEDDINGS: list[np.ndarray] = []  # filled by main(): the full train split's embeddings, in split order
_TRAIN_TARGETS: list[int] = []
BACKBONE = "efficientnet-lite2"
SEED = 0
ADVANCED_SECONDS = 180.0
DETECTION_STEPS = 300  # the non-private detector's (batch 4: 20 epochs of 60 images)
DETECTION_TRAIN = 60
DETECTION_TEST = 50
ROWS = set(os.environ.get("PRIVACY_BENCH_ROWS", "regular,advanced,detection,yolox,faces").split(","))
console = Console(width=200)  # the table is wide; keep it whole in logs and pipes


def _ants_bees(split: str, per_class: int | None = None) -> list[Sample]:
    samples = list(load_dataset(DATASETS / "ants-bees" / split, "folders"))
    if per_class is None:
        return samples
    return [s for tag in ("ants", "bees") for s in [x for x in samples if x.labels == [tag]][:per_class]]


def _embeddings(samples: list[Sample]) -> np.ndarray:
    size = variant_named(BACKBONE).native_size
    info = ModelInfo("classify", ["ants", "bees"], size, size, "stretch", MEAN, STD)
    runner = FrozenRunner(pretrained_backbone(BACKBONE), size, size)
    return classify.embed(runner, [s.rgb for s in samples], info)


def _row(embeddings: np.ndarray, targets: np.ndarray, members: list[int], epsilon: float) -> dict[str, object]:
    non_members = list(range(len(members), len(targets)))
    budget = None if math.isinf(epsilon) else PrivacyBudget(epsilon)
    started = time.monotonic()
    head = LinearHead(embeddings, targets, False, 2, budget, SEED)
    layer = head.fit(members)
    trained = time.monotonic() - started
    accuracy = float((head.probabilities(layer, non_members).argmax(1) == targets[non_members]).mean())
    target = membership.AuditTarget(head.logits(layer), members, non_members)
    report = membership.audit([target], targets, False, head.reference_logits, seed=SEED)
    attacks = {a.name: a for a in report.attacks}
    return {
        "iid": _iid_loss_auc(embeddings, targets, len(members), budget),
        "null": _null_loss_auc(embeddings, targets, members, budget),
        "epsilon": epsilon,
        "spent": head.spent,
        "accuracy": accuracy,
        "loss": attacks["loss threshold"],
        "lira": attacks["LiRA"],
        "train_seconds": trained,
        "audit_seconds": report.seconds,
        "verdict": report.verdict,
    }


def _iid_loss_auc(embeddings: np.ndarray, targets: np.ndarray, count: int, budget: PrivacyBudget | None) -> str:
    """Loss-attack AUC with members drawn at random from all images (stratified), mean ± sd over 10 draws."""
    per_class = [int(np.sum(targets[:count] == c)) for c in (0, 1)]
    aucs = []
    for draw in range(10):
        rng = np.random.default_rng(1000 + draw)
        members = [int(i) for c in (0, 1) for i in rng.permutation(np.flatnonzero(targets == c))[: per_class[c]]]
        chosen = set(members)
        non_members = [i for i in range(len(targets)) if i not in chosen]
        head = LinearHead(embeddings, targets, False, 2, budget, SEED + draw)
        loss = membership.true_tag_loss(head.logits(head.fit(members)), targets, False)
        aucs.append(membership.auc(-loss[members], -loss[non_members]))
    return f"{np.mean(aucs):.3f} ± {np.std(aucs):.3f}"


def _null_loss_auc(
    embeddings: np.ndarray, targets: np.ndarray, members: list[int], budget: PrivacyBudget | None
) -> str:
    """The loss attack on a model of the same procedure that never saw the members (trained on other train
    images, as many per class where the split has them): its AUC is the split's difference, not membership."""
    others = [i for i in range(TRAIN_IMAGES) if i not in set(members)]
    if not others:
        return "—"
    extra = np.asarray(_TRAIN_EMBEDDINGS)[others]
    pooled = np.concatenate([embeddings, extra])
    labels = np.concatenate([targets, np.asarray(_TRAIN_TARGETS)[others]])
    head = LinearHead(pooled, labels, False, 2, budget, SEED)
    fitted = list(range(len(targets), len(labels)))
    per_class = [int(np.sum(targets[members] == c)) for c in (0, 1)]
    fitted = [i for c in (0, 1) for i in [j for j in fitted if labels[j] == c][: per_class[c]]]
    loss = membership.true_tag_loss(head.logits(head.fit(fitted)), labels, False)
    non_members = list(range(len(members), len(targets)))
    return f"{membership.auc(-loss[members], -loss[non_members]):.3f}"


def _advanced_row(
    training: list[Sample], validation: list[Sample], embeddings: np.ndarray, targets: np.ndarray, epsilon: float
) -> dict[str, object]:
    """Advanced classification with DP: the last stage fine-tuned by DP-SGD, scored on val, audited."""
    import torch

    from veil.vision.backbone import fuse_batch_norm
    from veil.vision.dp_train import fine_tune_dp
    from veil.vision.export import export_onnx
    from veil.vision.runtime import load_model

    size = variant_named(BACKBONE).native_size
    info = ModelInfo("classify", ["ants", "bees"], size, size, "stretch", MEAN, STD)
    started = time.monotonic()
    members = list(range(len(training)))
    spent = None
    if math.isinf(epsilon):  # non-private Advanced, as veil train --advanced (early stopping on 20 % of the 60)
        network = classify.ClassifierNetwork(pretrained_backbone(BACKBONE), 2, False)
        rng = np.random.default_rng(SEED)
        stop = set(
            int(i) for c in (0, 1) for i in rng.permutation(np.flatnonzero(targets[members] == c))[: len(members) // 10]
        )
        fit = [i for i in members if i not in stop]
        classify.fine_tune(
            network,
            [training[i].rgb() for i in fit],
            targets[fit],
            [training[i].rgb() for i in sorted(stop)],
            targets[sorted(stop)],
            info,
            ADVANCED_SECONDS,
            SEED,
        )
        members = fit  # the early-stopping images are neither members nor non-members
    else:
        budget = PrivacyBudget(epsilon)
        network = classify.ClassifierNetwork(
            fuse_batch_norm(pretrained_backbone(BACKBONE).eval()), 2, False, normalize=True
        )
        with torch.no_grad():
            network.head.weight.zero_()
            network.head.bias.zero_()
        spent = fine_tune_dp(
            network, [s.rgb() for s in training], targets[members], info, budget, budget.delta_for(len(targets)), SEED
        )
    model = load_model(export_onnx(network, info, ["probabilities"]))
    trained = time.monotonic() - started
    every = [s.rgb() for s in training + validation]
    probabilities = np.concatenate([model.probabilities(every[i : i + 16]) for i in range(0, len(every), 16)])
    non_members = list(range(len(training), len(targets)))
    accuracy = float((probabilities[non_members].argmax(1) == targets[non_members]).mean())
    logits = np.log(np.clip(probabilities.astype(np.float64), 1e-12, 1.0))
    proxies = LinearHead(embeddings, targets, False, 2, None, SEED)
    report = membership.audit(
        [membership.AuditTarget(logits, members, non_members)],
        targets,
        False,
        proxies.reference_logits,
        calibration="offline",
        seed=SEED,
    )
    attacks = {a.name: a for a in report.attacks}
    return {
        "epsilon": epsilon,
        "spent": spent,
        "accuracy": accuracy,
        "loss": attacks["loss threshold"],
        "lira": attacks["calibrated loss"],
        "iid": "—",
        "null": "—",
        "train_seconds": trained,
        "audit_seconds": report.seconds,
        "verdict": report.verdict,
    }


def _detection_rows() -> list[tuple[str, dict[str, object]]]:
    """Penn-Fudan: `DETECTION_TRAIN` training images and `DETECTION_TEST` held-out ones (a seeded shuffle of all 170,
    so Fudan and Penn photos fall on both sides), Lite0 FCOS at 256 px. Rows: the product's non-private detector
    (trunk suffix fine-tuned, `DETECTION_STEPS` steps), the same FPN + head procedure as DP without noise or
    clipping (ε = ∞, frozen trunk), and DP at ε = 8, 3, 1 (`veil.vision.dp_detect`, default settings). mAP@0.5 on
    the held-out images; audit: the loss-threshold attack on `membership.detection_fit`, members = the training
    images, non-members = the held-out ones (every image scored as served)."""
    import torch

    from veil.vision import detect
    from veil.vision.dp_detect import train_detector_dp
    from veil.vision.export import export_onnx
    from veil.vision.runtime import load_model
    from veil.vision.train import _detection_item, _training_threads

    people = sorted(load_dataset(DATASETS / "pedestrians-det" / "PennFudanPed", "pascal-v1"), key=lambda s: s.key)
    order = np.random.default_rng(SEED).permutation(len(people))
    training = [people[i] for i in order[:DETECTION_TRAIN]]
    test = [people[i] for i in order[-DETECTION_TEST:]]
    info = ModelInfo("detect", ["person"], 256, 256, "letterbox", MEAN, STD, default_threshold=0.3, nms_iou=0.5)
    items = [_detection_item(s, ["person"], 256)[0] for s in training]
    torch.set_num_threads(_training_threads())
    rows = []
    for name, epsilon in (
        (f"Penn-Fudan {DETECTION_TRAIN}, non-private FCOS (mAP)", math.inf),
        (f"Penn-Fudan {DETECTION_TRAIN}, FPN+head, frozen trunk (mAP)", math.inf),
        (f"Penn-Fudan {DETECTION_TRAIN}, FPN+head, frozen trunk (mAP)", 8.0),
        (f"Penn-Fudan {DETECTION_TRAIN}, FPN+head, frozen trunk (mAP)", 3.0),
        (f"Penn-Fudan {DETECTION_TRAIN}, FPN+head, frozen trunk (mAP)", 1.0),
    ):
        started, cpu = time.monotonic(), time.process_time()
        torch.manual_seed(SEED)
        detector = detect.build_detector(pretrained_backbone("efficientnet-lite0"), 1, 256)
        spent = None
        if "non-private" in name:
            detect.train_detector(detector, items, info, detect.TrainingBudget(math.inf, DETECTION_STEPS), SEED)
        else:
            budget = None if math.isinf(epsilon) else PrivacyBudget(epsilon)
            delta = budget.delta_for(len(items)) if budget else 0.0
            _, spent = train_detector_dp(detector, items, info, budget, delta, SEED)
        model = load_model(export_onnx(detect.DetectorExport(detector, 256), info, ["boxes", "scores"]))
        trained, trained_cpu = time.monotonic() - started, time.process_time() - cpu
        rows.append((name, _detection_row(model, training, test, epsilon, spent, trained, trained_cpu)))
    return rows


def _penn_fudan_split() -> tuple[list[Sample], list[Sample]]:
    """`_detection_rows`' split: a seeded shuffle of all 170 Penn-Fudan images, `DETECTION_TRAIN` / `DETECTION_TEST`."""
    people = sorted(load_dataset(DATASETS / "pedestrians-det" / "PennFudanPed", "pascal-v1"), key=lambda s: s.key)
    order = np.random.default_rng(SEED).permutation(len(people))
    return [people[i] for i in order[:DETECTION_TRAIN]], [people[i] for i in order[-DETECTION_TEST:]]


def _yolox_info(tag: str) -> ModelInfo:
    zero = (0.0, 0.0, 0.0)
    return ModelInfo("detect", [tag], 256, 256, "letterbox", zero, (1.0, 1.0, 1.0), channel_order="BGR", nms_iou=0.5)


def _yolox_rows() -> Iterator[tuple[str, dict[str, object]]]:
    """Penn-Fudan as `_detection_rows`, YOLOX-Nano at 256 px: the untrained closest-COCO-row start, the class rows
    alone at ε = 8 (the previous DP recipe), then `veil.vision.dp_yolox`'s defaults (class, objectness and box
    1×1 convolutions) at ε = ∞, 8, 3, 1; held-out mAP@0.5 and the loss-threshold audit on
    `membership.detection_fit`, every model scored as exported."""
    training, test = _penn_fudan_split()
    return _yolox_set_rows(f"Penn-Fudan {DETECTION_TRAIN}", "person", training, test)


def _faces_split() -> tuple[list[Sample], list[Sample]]:
    """WIDER FACE 20--Family_Group as bench/training.py's faces set: the first 30 by name trained, the rest held out."""
    from bench.training import _detection_sets

    faces, test_count = _detection_sets()["faces"]
    return faces[: len(faces) - test_count], faces[len(faces) - test_count :]


def _faces_rows() -> Iterator[tuple[str, dict[str, object]]]:
    """WIDER faces (a class COCO lacks; never tuned on): the YOLOX-Nano rows of `_yolox_rows`, and DP Lite0 FCOS at
    ε = 8 (`veil.vision.dp_detect`, default settings) for comparison."""
    training, test = _faces_split()
    name = f"WIDER faces {len(training)}"
    yield from _yolox_set_rows(name, "face", training, test)
    yield f"{name}, FCOS FPN+head (mAP)", _fcos_dp_row("face", training, test, 8.0)


def _tuning_splits() -> dict[str, tuple[str, list[Sample], list[Sample]]]:
    """The tuning sets: plates-det (a seeded shuffle of its 108 photos: 86 trained, 22 held out, as DP FCOS was
    tuned) and raccoon photos 1-50 by name (train 1-30, score 31-50)."""
    from bench.training import _plates

    plates = sorted(_plates(), key=lambda s: s.key)
    order = np.random.default_rng(SEED).permutation(len(plates))
    raccoons = sorted(load_dataset(DATASETS / "raccoon", "voc"), key=lambda s: s.key)[:50]
    return {
        "plates-det 86": ("plate", [plates[i] for i in order[:86]], [plates[i] for i in order[86:]]),
        "raccoons 30": ("raccoon", raccoons[:30], raccoons[30:50]),
    }


def _yolox_tuning_rows() -> Iterator[tuple[str, dict[str, object]]]:
    """The YOLOX DP settings' choice at ε = 8 (`PRIVACY_BENCH_ROWS=yolox-tune`): which 1×1 convolutions train,
    the class rows' Adam rate and the objectness/box rows' rate, on `_tuning_splits` only. `PRIVACY_BENCH_TUNE`
    ("part:class rate:head rate[:epochs]", comma-separated) picks the settings."""
    from veil.vision.dp_yolox import DPYoloxSettings

    parts = {
        "class": {"objectness": False, "boxes": False},
        "objectness": {"objectness": True, "boxes": False},
        "all": {"objectness": True, "boxes": True},
    }
    default = "class:1e-3:1e-3,objectness:1e-3:3e-2,objectness:1e-3:1e-1,objectness:1e-3:3e-1,all:1e-3:3e-2"
    for name, (tag, training, test) in _tuning_splits().items():
        for choice in os.environ.get("PRIVACY_BENCH_TUNE", default).split(","):
            part, rate, head_rate, *epochs = choice.split(":")
            settings = DPYoloxSettings(
                learning_rate=float(rate),
                head_learning_rate=float(head_rate),
                epochs=int(epochs[0]) if epochs else DPYoloxSettings.epochs,
                **parts[part],
            )
            label = f"{name}, YOLOX-Nano {choice} (mAP)"
            yield label, _yolox_row(tag, training, test, 8.0, settings)


def _yolox_set_rows(
    name: str, tag: str, training: list[Sample], test: list[Sample]
) -> Iterator[tuple[str, dict[str, object]]]:
    from veil.vision.dp_yolox import DPYoloxSettings

    class_only = DPYoloxSettings(objectness=False, boxes=False)
    yield f"{name}, YOLOX-Nano COCO rows, no training (mAP)", _yolox_row(tag, training, test, math.inf, None)
    yield f"{name}, YOLOX-Nano class rows only (mAP)", _yolox_row(tag, training, test, 8.0, class_only)
    for epsilon in EPSILONS:
        settings = DPYoloxSettings()
        yield f"{name}, YOLOX-Nano class+objectness rows (mAP)", _yolox_row(tag, training, test, epsilon, settings)


def _yolox_row(tag: str, training: list[Sample], test: list[Sample], epsilon: float, settings: Any) -> dict[str, Any]:
    """One YOLOX-Nano row: `settings` None = the untrained closest-COCO start, else `train_yolox_dp` with them."""
    import torch

    from veil.vision import yolox
    from veil.vision.dp_yolox import train_yolox_dp
    from veil.vision.export import export_onnx
    from veil.vision.runtime import load_model
    from veil.vision.train import _detection_item, _training_threads

    info = _yolox_info(tag)
    items = [_detection_item(s, [tag], 256)[0] for s in training]
    torch.set_num_threads(_training_threads())
    started, cpu = time.monotonic(), time.process_time()
    torch.manual_seed(SEED)
    spent = None
    if settings is None:
        net = yolox.pretrained_yolox_nano(1, items, info)
    else:
        budget = None if math.isinf(epsilon) else PrivacyBudget(epsilon)
        delta = budget.delta_for(len(items)) if budget else 0.0
        net, _, spent = train_yolox_dp(items, info, budget, delta, SEED, settings=settings)
    model = load_model(export_onnx(yolox.YoloxExport(net, 256, 256), info, ["boxes", "scores"]))
    trained, trained_cpu = time.monotonic() - started, time.process_time() - cpu
    return _detection_row(model, training, test, epsilon, spent, trained, trained_cpu, tag)


def _fcos_dp_row(tag: str, training: list[Sample], test: list[Sample], epsilon: float) -> dict[str, Any]:
    """DP Lite0 FCOS (FPN + head, trunk frozen; `veil.vision.dp_detect` defaults) on one set, as `_detection_rows`."""
    import torch

    from veil.vision import detect
    from veil.vision.dp_detect import train_detector_dp
    from veil.vision.export import export_onnx
    from veil.vision.runtime import load_model
    from veil.vision.train import _detection_item, _training_threads

    info = ModelInfo("detect", [tag], 256, 256, "letterbox", MEAN, STD, default_threshold=0.3, nms_iou=0.5)
    items = [_detection_item(s, [tag], 256)[0] for s in training]
    torch.set_num_threads(_training_threads())
    started, cpu = time.monotonic(), time.process_time()
    torch.manual_seed(SEED)
    detector = detect.build_detector(pretrained_backbone("efficientnet-lite0"), 1, 256)
    budget = PrivacyBudget(epsilon)
    _, spent = train_detector_dp(detector, items, info, budget, budget.delta_for(len(items)), SEED)
    model = load_model(export_onnx(detect.DetectorExport(detector, 256), info, ["boxes", "scores"]))
    trained, trained_cpu = time.monotonic() - started, time.process_time() - cpu
    return _detection_row(model, training, test, epsilon, spent, trained, trained_cpu, tag)


def _recorded(name: str, row: dict[str, object]) -> dict[str, object]:
    """One row as the plot's record keeps it: ε, accuracy or mAP, loss and calibrated attack AUC with their CIs."""
    loss, lira = row["loss"], row["lira"]
    return {
        "epsilon": "inf" if math.isinf(float(row["epsilon"])) else float(row["epsilon"]),  # type: ignore[arg-type]
        "accuracy": round(float(row["accuracy"]), 4),  # type: ignore[arg-type]
        "loss": [round(x, 4) for x in (loss.auc.value, loss.auc.low, loss.auc.high)],  # type: ignore[attr-defined]
        "calibrated": [round(x, 4) for x in (lira.auc.value, lira.auc.low, lira.auc.high)],  # type: ignore[attr-defined]
    }


def _save_record(rows: list[tuple[str, dict[str, object]]], path: Path = RECORD) -> dict[str, Any]:
    """Merge this run's rows into the record (a group measured again replaces its old rows) and return it."""
    record: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"groups": {}}
    measured = f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, PRIVACY_BENCH_ROWS={','.join(sorted(ROWS))}"
    fresh: dict[str, list[dict[str, object]]] = {}
    for name, row in rows:
        fresh.setdefault(name, []).append(_recorded(name, row))
    for name, group_rows in fresh.items():
        record["groups"][name] = {"measured": measured, "rows": group_rows}
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return record


def _plot(record: dict[str, Any], path: Path = PLOT) -> None:
    """Classification (top: accuracy; attack AUC, calibrated with its CI and loss) and detection (bottom: held-out
    mAP; loss-attack AUC with its CI) against ε, from the record's groups (detection groups end in "(mAP)";
    Advanced groups have their own plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    order = ["inf", 8.0, 3.0, 1.0]
    labels = ["∞", "8", "3", "1"]
    groups = {n: g["rows"] for n, g in record["groups"].items() if "Advanced" not in n}
    for name, rows in groups.items():
        detection = name.endswith("(mAP)")
        rows = sorted(rows, key=lambda r: order.index(r["epsilon"]))
        x = [order.index(r["epsilon"]) for r in rows]
        quality, attack = axes[1] if detection else axes[0]
        label = name.removesuffix(" (mAP)")
        style = {"marker": "o"} if len(rows) > 1 else {"marker": "s", "linestyle": "none"}
        quality.plot(x, [r["accuracy"] for r in rows], label=label, **style)
        shown = "loss" if detection else "calibrated"
        attack.errorbar(
            x,
            [r[shown][0] for r in rows],
            yerr=[[r[shown][0] - r[shown][1] for r in rows], [r[shown][2] - r[shown][0] for r in rows]],
            capsize=3,
            label=label if detection else f"{label} (LiRA)",
            **style,
        )
        if not detection:
            attack.plot(x, [r["loss"][0] for r in rows], linestyle=":", marker="x", label=f"{label} (loss)")
    titles = (
        ("validation accuracy", "Accuracy (ants/bees val, 153 images)", "Membership inference: train vs val"),
        ("held-out mAP@0.5", "Detection: held-out mAP@0.5", "Detection: loss-threshold attack, train vs held-out"),
    )
    for (quality, attack), (ylabel, left_title, right_title) in zip(axes, titles, strict=True):
        for axis in (quality, attack):
            axis.set_xticks(range(4), labels)
            axis.set_xlabel("ε")
        quality.set_ylabel(ylabel)
        quality.set_title(left_title)
        attack.axhline(0.5, color="grey", linewidth=0.8)
        attack.axhline(0.55, color="red", linewidth=0.8, linestyle="--", label="goal at ε = 8")
        attack.set_ylabel("attack AUC (95 % bootstrap CI)")
        attack.set_title(right_title)
        quality.legend(fontsize=7)
        attack.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _plot_advanced(results: dict[str, list[dict[str, object]]], path: Path) -> None:
    """The Advanced-only plot (accuracy and calibrated/loss attack AUC against ε), from this run's rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["∞", "8", "3", "1"]
    for name, rows in results.items():
        left.plot(labels, [r["accuracy"] for r in rows], marker="o", label=name)
        lira = [r["lira"] for r in rows]
        right.errorbar(
            labels,
            [a.auc.value for a in lira],  # type: ignore[attr-defined]
            yerr=[
                [a.auc.value - a.auc.low for a in lira],  # type: ignore[attr-defined]
                [a.auc.high - a.auc.value for a in lira],  # type: ignore[attr-defined]
            ],
            marker="o",
            capsize=3,
            label=f"{name} (LiRA)",
        )
        right.plot(labels, [r["loss"].auc.value for r in rows], linestyle=":", marker="x", label=f"{name} (loss)")  # type: ignore[attr-defined]
    left.set_xlabel("ε")
    left.set_ylabel("validation accuracy")
    left.set_title("Accuracy (ants/bees val, 153 images)")
    left.legend()
    right.axhline(0.5, color="grey", linewidth=0.8)
    right.axhline(0.55, color="red", linewidth=0.8, linestyle="--", label="goal at ε = 8")
    right.set_xlabel("ε")
    right.set_ylabel("attack AUC (95 % bootstrap CI)")
    right.set_title("Membership inference: train vs val")
    right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _add(table: Table, name: str, row: dict[str, object]) -> None:
    MEASURED.append((name, row))
    spent, lira, loss, epsilon = row["spent"], row["lira"], row["loss"], float(row["epsilon"])  # type: ignore[arg-type]
    table.add_row(
        name,
        "∞" if math.isinf(epsilon) else f"{epsilon:g}",
        f"{spent.epsilon:.2f} ({spent.delta:.0e})" if spent else "—",  # type: ignore[attr-defined]
        f"{spent.noise_multiplier:.2f} · {spent.sample_rate:.2f} · {spent.steps}" if spent else "—",  # type: ignore[attr-defined]
        f"{row['accuracy']:.3f}",
        str(loss.auc),  # type: ignore[attr-defined]
        str(row["iid"]),
        str(row["null"]),
        str(lira.auc),  # type: ignore[attr-defined]
        f"{lira.tpr_at_0_1_fpr.value:.3f}",  # type: ignore[attr-defined]
        f"{lira.tpr_at_1_fpr.value:.3f}",  # type: ignore[attr-defined]
        f"{row['train_seconds']:.1f}",
        f"{row['audit_seconds']:.1f}",
    )
    console.print(f"  {name} ε = {epsilon:g}: {row['verdict']}", highlight=False)
    # the row as it is measured, so a long run that is stopped still leaves every finished row in the log
    console.print(
        f"  row | {name} | ε {epsilon:g} | spent {spent.epsilon if spent else '—'} | "  # type: ignore[attr-defined]
        f"acc {row['accuracy']:.3f} | loss {loss.auc} | iid {row['iid']} | null {row['null']} | "  # type: ignore[attr-defined]
        f"calibrated {lira.auc} | tpr0.1 {lira.tpr_at_0_1_fpr.value:.3f} | tpr1 {lira.tpr_at_1_fpr.value:.3f} | "  # type: ignore[attr-defined]
        f"train {row['train_seconds']:.1f} s (cpu {row.get('cpu_seconds', float('nan')):.1f} s) | "
        f"audit {row['audit_seconds']:.1f} s",
        highlight=False,
    )


def _classification_rows(validation: list[Sample], table: Table, results: dict[str, list[dict[str, object]]]) -> None:
    """The ants/bees rows (Regular, and Advanced at 30 per class) into `table` and `results`."""
    train_all = _ants_bees("train")
    started = time.monotonic()
    pooled = _embeddings(train_all + validation)
    console.print(f"embedded {len(train_all)} + {len(validation)} images in {time.monotonic() - started:.0f} s")
    _TRAIN_EMBEDDINGS[:] = list(pooled[: len(train_all)])
    _TRAIN_TARGETS[:] = [0 if s.labels == ["ants"] else 1 for s in train_all]
    position = {s.key: i for i, s in enumerate(train_all)}
    for name, per_class in (("full (245)", None), ("30 per class", 30)):
        training = _ants_bees("train", per_class)
        rows_of = [position[s.key] for s in training] + list(range(len(train_all), len(pooled)))
        embeddings = pooled[rows_of]
        targets = np.array([0 if s.labels == ["ants"] else 1 for s in training + validation])
        members = list(range(len(training)))
        if "regular" in ROWS:
            rows = []
            for epsilon in EPSILONS:
                row = _row(embeddings, targets, members, epsilon)
                rows.append(row)
                _add(table, name, row)
            results[name] = rows
        if per_class is not None and "advanced" in ROWS:
            advanced = {}
            for epsilon in (8.0, math.inf, 3.0, 1.0):  # the goal's ε and its reference first
                advanced[epsilon] = _advanced_row(training, validation, embeddings, targets, epsilon)
                _add(table, f"{name}, Advanced", advanced[epsilon])
            results[f"{name}, Advanced"] = [advanced[e] for e in EPSILONS]


def main() -> None:
    if {"plot"} == ROWS:  # redraw the plot from the recorded rows only
        _plot(json.loads(RECORD.read_text()))
        console.print(f"plot: {PLOT.relative_to(REPO)} from {RECORD.relative_to(REPO)}")
        return
    validation = _ants_bees("val")
    results: dict[str, list[dict[str, object]]] = {}
    table = Table(title="Private training · ants/bees (Lite2, val accuracy) · Penn-Fudan (Lite0 FCOS, held-out mAP)")
    for column in (
        "train set",
        "ε target",
        "ε spent (δ)",
        "σ · q · steps",
        "val accuracy / mAP",
        "loss AUC [95 % CI]",
        "loss AUC i.i.d.",
        "loss AUC null",
        "LiRA AUC [95 % CI] (Advanced: calibrated loss)",
        "TPR@0.1%FPR",
        "TPR@1%FPR",
        "train s",
        "audit s",
    ):
        table.add_column(column, justify="left" if column == "train set" else "right")
    if ROWS & {"regular", "advanced"}:
        _classification_rows(validation, table, results)
    if "detection" in ROWS:
        for name, row in _detection_rows():
            _add(table, name, row)
    for group, rows_of in (("yolox", _yolox_rows), ("faces", _faces_rows), ("yolox-tune", _yolox_tuning_rows)):
        if group in ROWS:
            for name, row in rows_of():
                _add(table, name, row)
    console.print(table)
    if MEASURED and "yolox-tune" not in ROWS:  # tuning rows are not report rows: they stay out of the record
        _plot(_save_record([(n, r) for n, r in MEASURED if "Advanced" not in n]))
        console.print(f"record: {RECORD.relative_to(REPO)}; plot: {PLOT.relative_to(REPO)}")
    advanced = {n: r for n, r in results.items() if "Advanced" in n}
    if advanced:
        path = PLOT.with_name("privacy_training_advanced.png")
        _plot_advanced(advanced, path)
        console.print(f"plot: {path.relative_to(REPO)}")


def _detection_row(
    model: Any,
    training: list[Any],
    test: list[Any],
    epsilon: float,
    spent: Any,
    trained: float,
    trained_cpu: float,
    tag: str = "person",
) -> dict[str, Any]:
    """One detection row: held-out mAP and the loss-threshold audit (members = `training`, non-members = `test`)."""
    from veil.vision.metrics import Evaluation, performance
    from veil.vision.train import _detection_fit, _detection_result

    evaluation = Evaluation("detect", "holdout", [tag], [_detection_result(model, s, 0) for s in test])
    audit_started = time.monotonic()
    fit = np.array([_detection_fit(model, s) for s in training + test])
    members = list(range(len(training)))
    report = membership.audit_detection(
        [membership.ScoredTarget(fit, members, list(range(len(training), len(fit))))], SEED, audit_started
    )
    (loss,) = report.attacks
    return {
        "epsilon": epsilon,
        "spent": spent,
        "accuracy": float(performance(evaluation).mean_average_precision),
        "loss": loss,
        "lira": loss,
        "iid": "—",
        "null": "—",
        "train_seconds": trained,
        "cpu_seconds": trained_cpu,
        "audit_seconds": report.seconds,
        "verdict": report.verdict,
    }
