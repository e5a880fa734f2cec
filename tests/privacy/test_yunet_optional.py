"""YuNet's `yuface` wheel exists for CPython 3.11 only, so it is an optional extra: without it `veil anonymize`
still hides faces with CenterFace alone and warns once that the second detector is missing (it does not fail)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tests.privacy.conftest import wider_faces

COUPLE = "19_Couple_Couple_19_881.jpg"

# The `veil` entry point in a fresh interpreter where importing `yuface` fails, as on Python 3.12 and 3.13.
WITHOUT_YUFACE = """
import importlib.abc, sys
class NoYuface(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "yuface" or name.startswith("yuface."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoYuface())
from veil.cli import main
sys.argv = ["veil", *sys.argv[1:]]
main()
"""


def test_anonymize_without_yuface_hides_faces_with_centerface_and_says_so(tmp_path: Path) -> None:
    source, faces = wider_faces(COUPLE, 40)
    output = tmp_path / "out.jpg"
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_YUFACE, "anonymize", str(source), "-o", str(output), "--yunet"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "YuNet (the second face detector) is not installed" in result.stderr + result.stdout
    before = np.asarray(Image.open(source).convert("RGB"), dtype=np.int16)
    after = np.asarray(Image.open(output).convert("RGB"), dtype=np.int16)
    assert faces
    for face in faces:  # every face of 40 px and more is hidden: its centre pixels changed
        cx, cy = int((face.x1 + face.x2) / 2), int((face.y1 + face.y2) / 2)
        assert np.abs(after[cy - 2 : cy + 3, cx - 2 : cx + 3] - before[cy - 2 : cy + 3, cx - 2 : cx + 3]).mean() > 20
