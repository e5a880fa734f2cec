"""What the membership audit of a detection iteration costs and finds: Regular detection (the 3-minute budget) on
Penn-Fudan, Lite0 FCOS and YOLOX-Nano, audited by both attacks (loss threshold; calibrated by proxy reference
detectors, `veil.vision.detection_audit`). Rows: DETECTION_AUDIT_ROWS=fcos-30,yolox-30,fcos-60 (default: the
first two). 30 images: 3-fold cross-validation (the fold models are audited); 60: a 20 % holdout."""

from __future__ import annotations

import os
import re
import time

from bench.training import DATASETS
from veil.vision import membership
from veil.vision.datasets import load_dataset
from veil.vision.train import TrainRequest, train

ROWS = {"fcos-30": ("efficientnet-lite0", 30), "yolox-30": ("yolox-nano", 30), "fcos-60": ("efficientnet-lite0", 60)}


def _row(name: str) -> str:
    backbone, count = ROWS[name]
    people = load_dataset(DATASETS / "pedestrians-det" / "PennFudanPed")[:count]
    started, cpu_started = time.monotonic(), time.process_time()
    result = train(TrainRequest("detect", people, seed=0, input_size=256, backbone=backbone))
    total, cpu = time.monotonic() - started, time.process_time() - cpu_started
    assert result.privacy is not None and result.privacy.audit is not None
    audit: membership.AuditReport = result.privacy.audit
    attacks = {a.name: a for a in audit.attacks}
    cost = re.search(r"they cost ([\d.]+) s \(([\d.]+) CPU s\)", " ".join(audit.notes))
    reference, reference_cpu = (float(cost[1]), float(cost[2])) if cost else (0.0, 0.0)
    return (
        f"| {name} | {backbone} | {count} | {result.evaluation.method} | {total:.0f} ({cpu:.0f}) | "
        f"{audit.seconds:.0f} | {reference:.0f} ({reference_cpu:.0f}) | "
        f"{audit.seconds / (total - audit.seconds):.0%} | "
        f"{attacks['loss threshold'].auc} | "
        f"{attacks['calibrated loss'].auc if 'calibrated loss' in attacks else '—'} |"
    )


def main() -> None:
    names = os.environ.get("DETECTION_AUDIT_ROWS", "fcos-30,yolox-30").split(",")
    print(f"load: {os.getloadavg()[0]:.2f}")
    print(
        "| row | network | images | evaluation | job s (CPU s) | audit s | reference detectors s (CPU s) | "
        "audit / rest of the job | "
        "loss-threshold AUC | calibrated AUC |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        print(_row(name), flush=True)
    print(f"load: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
