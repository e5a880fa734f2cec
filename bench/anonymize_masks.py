"""How Veil's default face masks were chosen: mask shape and growth by face size, on the tuning split only.

Runs Veil's detector (its default passes and thresholds) and deface on WIDER val 0--Parade, then, for each
candidate mask, counts the faces left less than 70 % hidden per size class and the share of non-face pixels
blacked out (the measures of bench/anonymize.py). The rule: the least false change among the masks that miss
no more faces of 20 px and more than deface in any size class. The reporting split is never read here.

    python -m bench anonymize_masks
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.anonymize import SIZES, SPLITS, PhotoTally, _read, deface_boxes, deface_mask, load_wider, veil_photo_boxes

# (shape, growth at 24 / 48 / 96 px): the old default (ellipse 1.5x for every size) and the grid that was searched.
CANDIDATES: list[tuple[str, tuple[float, float, float]]] = [("ellipse", (1.5, 1.5, 1.5))] + [
    ("rounded", (small, middle, large))
    for small in (1.4, 1.5)
    for middle in (1.25, 1.3, 1.35)
    for large in (1.0, 1.05, 1.1)
]


def mask(boxes: np.ndarray, height: int, width: int, shape: str, scales: tuple[float, float, float]) -> np.ndarray:
    from veil.privacy.obfuscate import MASK_SCALE_SIDES, mask_boxes, region_mask

    out = np.zeros((height, width), dtype=bool)
    if len(boxes) == 0:
        return out
    sides = np.sqrt(np.maximum(boxes[:, 2] - boxes[:, 0], 1) * np.maximum(boxes[:, 3] - boxes[:, 1], 1))
    growth = np.interp(np.log2(sides), np.log2(MASK_SCALE_SIDES), scales)
    for box, scale in zip(boxes, growth, strict=True):
        x1, y1, x2, y2 = mask_boxes(box[None], float(scale), width, height)[0]
        if x2 > x1 and y2 > y1:
            out[y1:y2, x1:x2] |= region_mask(y2 - y1, x2 - x1, shape)
    return out


def main() -> None:
    console = Console(width=150)
    truths = load_wider(SPLITS["tune"])
    paths = [t.path for t in truths]
    shapes = [_read(p).shape[:2] for p in paths]
    veil, deface = veil_photo_boxes(paths), deface_boxes(paths)
    table = Table(title=f"masks on the tuning split ({len(truths)} photos of 0--Parade): faces missed, false change")
    for column in ("mask", *(f"missed {name}" for name, *_ in SIZES), "false change"):
        table.add_column(column, justify="left" if column == "mask" else "right")
    rows = [("deface 1.5.0 (rectangles 1.6x)", [deface_mask(b, *hw) for b, hw in zip(deface, shapes, strict=True)])]
    for shape, scales in CANDIDATES:
        name = f"Veil {shape} {'/'.join(f'{s:g}' for s in scales)}"
        rows.append((name, [mask(b, *hw, shape, scales) for b, hw in zip(veil, shapes, strict=True)]))
    for name, masks in rows:
        tally = PhotoTally()
        for truth, found in zip(truths, masks, strict=True):
            tally.add(truth, found)
        missed = [f"{tally.total[n] - tally.hidden[n]} / {tally.total[n]}" for n, *_ in SIZES]
        table.add_row(name, *missed, f"{100 * tally.false_change:.2f} %")
    console.print(table)


if __name__ == "__main__":
    main()
