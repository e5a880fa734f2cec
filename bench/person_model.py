"""`make person-model`: train a person detector on Penn-Fudan with Veil's own trainer → `artifacts/person.onnx`.

The edge benchmark and the privacy "people" detector load it with `veil.vision.runtime.load_model`. The model is
trained on the research-only Penn-Fudan images, so it is gitignored and never committed. Budget: `PERSON_MINUTES`
(default 10) of Advanced detection training on the 2-core CPU.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "datasets" / "pedestrians-det" / "PennFudanPed"
OUTPUT = REPO / "artifacts" / "person.onnx"


def main() -> None:
    from veil.vision.datasets import load_dataset
    from veil.vision.train import TrainProgress, TrainRequest, train

    if not DATASET.is_dir():
        print(f"Penn-Fudan not found at {DATASET}", file=sys.stderr)
        raise SystemExit(1)
    minutes = float(os.environ.get("PERSON_MINUTES", "10"))
    samples = load_dataset(DATASET, "pascal-v1")
    shown = [-10.0]

    def report(progress: TrainProgress) -> None:
        if progress.percent - shown[0] >= 5:
            shown[0] = progress.percent
            print(f"  {progress.stage:<10} {progress.percent:5.1f} %  eta {progress.eta_seconds} s", flush=True)

    started = time.monotonic()
    request = TrainRequest("detect", samples, advanced=True, budget_minutes=minutes, seed=0, name="person")
    result = train(request, progress=report)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_bytes(result.onnx)
    OUTPUT.with_suffix(".zip").write_bytes(result.bundle)
    print(
        f"wrote {OUTPUT} in {time.monotonic() - started:.0f} s; held-out mAP@0.5 "
        f"{result.performance.mean_average_precision:.3f} on {result.performance.held_out_images} images"
    )


if __name__ == "__main__":
    main()
