"""Reference detectors for the calibrated membership attack on detection iterations (imports torch: training only).

    images = calibration_images(members, non_members, seed=0)
    references = reference_fits(items, info, "efficientnet-lite0", images, steps=20, seed=0)
    membership.audit_detection(targets, references=references)

A calibrated attack compares the audited detector's fit on an image with the fit of detectors that did not train
on it. Reference detectors trained exactly as the iteration (minutes each) would cost several times the iteration,
so they are cheap proxies of it, trained on random halves of the audited images (each image is in half of them):

- the frozen-network procedure of the iteration's network, non-private: FPN + FCOS head over the frozen ImageNet
  trunk (`dp_detect.train_detector_dp` without a budget) for the Lite backbones; YOLOX-Nano's 1×1 head rows over
  the frozen COCO network (`dp_yolox.train_yolox_dp` without a budget, its default rows) for `yolox-nano`;
- one fixed view per image (the served letterbox: the network runs once per training image), a small batch, and at
  most `REFERENCE_STEPS` steps — never more than the audited detectors took;
- scored in torch (no ONNX export) on the in-memory training copies of the images they did not train on only: the
  "offline" calibration reads nothing else. The decoding is the served one (`runtime.decode_detections`).

Proxies weaker than the audited detector are what "offline" calibration tolerates (Watson et al., ICLR 2022): the
score is the target's fit minus the proxies' mean, so the proxies only need to find the same images hard.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from veil.vision import membership
from veil.vision.classify import TrainingCancelled
from veil.vision.detect import DetectionItem
from veil.vision.runtime import ModelInfo, decode_detections, preprocess

# 4 = two complementary pairs: every image is scored by 2 detectors that did not train on it. Cost per detector on
# 30 Penn-Fudan images at 256 px (docs/BENCHMARKS.md, privacy-training): FCOS several seconds, YOLOX about two.
REFERENCE_DETECTORS = 4
REFERENCE_STEPS = 20
REFERENCE_BATCH = 4  # 20 steps of 4: about 5 epochs over a half of 15 images; batch 8 cost twice as much
# Above this many audited images the calibrated attack reads a random subset (half non-members where there are
# enough): the proxies' cost then no longer grows with the project; the loss-threshold attack still reads every image.
CALIBRATED_IMAGES = 48
SCORE_FLOOR = 0.05  # as the audited detectors are scored (train.DETECTION_SCORE_FLOOR)


def calibration_images(
    members: Sequence[int], non_members: Sequence[int], seed: int, cap: int = CALIBRATED_IMAGES
) -> list[int]:
    """The images the calibrated attack reads (sorted): all audited ones up to `cap`, else up to `cap` / 2
    non-members and members for the rest, drawn at random."""
    outside = sorted(set(non_members))
    audited = sorted(set(members) | set(outside))
    if len(audited) <= cap:
        return audited
    rng = np.random.default_rng(seed)
    chosen = set(rng.permutation(outside)[: cap // 2].tolist())
    rest = [i for i in audited if i not in chosen]
    chosen |= set(rng.permutation(rest)[: cap - len(chosen)].tolist())
    return sorted(int(i) for i in chosen)


def reference_fits(
    items: Sequence[DetectionItem],
    info: ModelInfo,
    backbone: str,
    images: Sequence[int],
    steps: int,
    seed: int,
    models: int = REFERENCE_DETECTORS,
    on_progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> membership.ReferenceFits:
    """Train `models` proxy detectors, each on a random half of `images` (`membership.balanced_halves`), and score
    each on the other half: `membership.ReferenceFits` over all of `items` (NaN where not scored)."""
    started, cpu_started = time.monotonic(), time.process_time()
    inside = membership.balanced_halves(len(images), models, seed)
    fit = np.full((models, len(items)), np.nan)
    for model, row in enumerate(inside):
        if should_cancel and should_cancel():
            raise TrainingCancelled("training cancelled")
        chosen = [images[int(i)] for i in np.flatnonzero(row)]
        unseen = [images[int(i)] for i in np.flatnonzero(~row)]

        def on_fraction(fraction: float, model: int = model) -> None:
            if on_progress:
                on_progress((model + 0.7 * fraction) / models)

        network = _train_proxy(
            [items[i] for i in chosen], info, backbone, steps, seed + model, on_fraction, should_cancel
        )
        fit[model, unseen] = _fits(network, [items[i] for i in unseen], info)
        if on_progress:
            on_progress((model + 1) / models)
    name = (
        "YOLOX-Nano's 1×1 head rows over the frozen COCO network, veil.vision.dp_yolox's loop"
        if backbone == "yolox-nano"
        else f"FPN + FCOS head over the frozen ImageNet {backbone}, veil.vision.dp_detect's loop"
    )
    description = (
        f"{models} proxies ({name}, non-private, {steps} steps of {REFERENCE_BATCH} images, one view per image), "
        f"each trained on a random half of the {len(images)} attacked images and scored on the other half"
    )
    return membership.ReferenceFits(
        fit, round(time.monotonic() - started, 2), description, round(time.process_time() - cpu_started, 2)
    )


def _train_proxy(
    items: list[DetectionItem],
    info: ModelInfo,
    backbone: str,
    steps: int,
    seed: int,
    on_progress: Callable[[float], None],
    should_cancel: Callable[[], bool] | None,
) -> nn.Module:
    """One reference detector, as its served graph's module ((N, 3, H, W) → boxes, scores)."""
    # δ only matters with a budget; these run without one
    delta = 1e-5
    if backbone == "yolox-nano":
        from veil.vision import yolox
        from veil.vision.dp_yolox import DPYoloxSettings, train_yolox_dp

        yolox_settings = dataclasses.replace(DPYoloxSettings(), views=1, batch_size=REFERENCE_BATCH)
        net, _, _ = train_yolox_dp(
            items,
            info,
            None,
            delta,
            seed,
            steps=steps,
            settings=yolox_settings,
            on_progress=on_progress,
            should_cancel=should_cancel,
        )
        return yolox.YoloxExport(net, info.input_height, info.input_width).eval()
    from veil.vision import detect
    from veil.vision.backbone import pretrained_backbone
    from veil.vision.dp_detect import DPDetectionSettings, train_detector_dp

    torch.manual_seed(seed)
    detector = detect.build_detector(pretrained_backbone(backbone), len(info.labels), info.input_width)
    fcos_settings = dataclasses.replace(DPDetectionSettings(), views=1, batch_size=REFERENCE_BATCH)
    train_detector_dp(
        detector,
        items,
        info,
        None,
        delta,
        seed,
        steps=steps,
        settings=fcos_settings,
        on_progress=on_progress,
        should_cancel=should_cancel,
    )
    return detect.DetectorExport(detector, info.input_width).eval()


def _fits(network: nn.Module, items: list[DetectionItem], info: ModelInfo, batch: int = 8) -> np.ndarray:
    """`membership.detection_fit` of `network` on each item, decoded as the served model decodes."""
    fits = []
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        prepared = [preprocess(item.rgb, info) for item in chunk]
        with torch.no_grad():
            boxes, scores = network(torch.from_numpy(np.stack([tensor for tensor, _ in prepared])))
        for index, (item, (_, letterbox)) in enumerate(zip(chunk, prepared, strict=True)):
            height, width = item.rgb.shape[:2]
            found = decode_detections(
                boxes[index].numpy(), scores[index].numpy(), info, SCORE_FLOOR, letterbox, (width, height)
            )
            fits.append(
                membership.detection_fit(
                    item.boxes,
                    [info.labels[c] for c in item.classes],
                    np.asarray(found.xyxy),
                    np.asarray(found.confidence),
                    [str(name) for name in found.data.get("class_name", [])],
                )
            )
    return np.array(fits)
