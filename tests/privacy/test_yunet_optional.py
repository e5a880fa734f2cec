"""YuNet's `yuface` wheel exists for CPython 3.11 only, so it is an optional extra: without it `veil anonymize`
still hides faces with CenterFace alone and warns once that the second detector is missing (it does not fail)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
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


# YuNet's own OpenMP (yuface bundles libgomp) must run one thread: Veil already runs one image per core, and a
# thread per core inside each call made YuNet cost 3-5x the CPU (0.25-0.42 s instead of 0.07 s per 960x540
# frame, measured). libgomp reads OMP_NUM_THREADS when it loads, so the first `import yuface` decides.
ONE_OPENMP_THREAD = """
import os, numpy as np
from veil.privacy.detectors import FaceDetector, yunet_available
assert yunet_available()  # the availability check is the first import of yuface
before = len(os.listdir("/proc/self/task"))
FaceDetector(yunet=True, threads=1).yunet.detect(np.zeros((540, 960, 3), np.uint8))
print(before, len(os.listdir("/proc/self/task")), os.environ.get("OMP_NUM_THREADS", "unset"))
"""


def test_yunet_runs_on_one_thread_and_leaves_the_environment_alone() -> None:
    if os.cpu_count() == 1 or not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux /proc and 2+ cores: with one core OpenMP starts no thread to count")
    if importlib.util.find_spec("yuface") is None:  # not imported here: this process's OpenMP stays as it is
        pytest.skip("yuface (the optional 'yunet' extra, CPython 3.11 only) is not installed")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    result = subprocess.run(
        [sys.executable, "-c", ONE_OPENMP_THREAD], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    before, after, variable = result.stdout.split()
    assert after == before, "YuNet started OpenMP threads beside Veil's own one-per-core workers"
    assert variable == "unset", "OMP_NUM_THREADS must not leak to libraries loaded later (torch)"
