"""Edge test fixtures: a real panning video built from MOT17 frames, a private Mosquitto broker."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from tests.conftest import dataset_path

MOSQUITTO = Path("/usr/sbin/mosquitto")
PAN_STEP = 14  # pixels per frame: the camera pans right, so people drift left across a vertical line


def write_video(frames: list[np.ndarray], path: Path, fps: int = 10) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def panning_frames(count: int = 12) -> list[np.ndarray]:
    """MOT17-05 (640×480, real street scene) seen through a 480-wide window sliding right: the walkers on the
    left drift further left by PAN_STEP pixels a frame. Frames play forward then backward to last longer."""
    images = sorted((dataset_path("people-video") / "train" / "MOT17-05-FRCNN" / "img1").glob("*.jpg"))
    order = images + images[::-1]
    frames = []
    for i in range(count):
        bgr = cv2.imread(str(order[i % len(order)]))
        offset = i * PAN_STEP
        frames.append(np.ascontiguousarray(cv2.cvtColor(bgr[:, offset : offset + 480], cv2.COLOR_BGR2RGB)))
    return frames


@pytest.fixture(scope="session")
def people_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(panning_frames(), tmp_path_factory.mktemp("video") / "street.mp4")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


class Broker:
    """A Mosquitto process of our own on a free port (so tests can stop and restart it)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        store = workdir / "mosquitto-store"
        store.mkdir(exist_ok=True)
        # Persistence keeps a subscriber's session (and its queued QoS 1 messages) across a broker restart.
        # Started as root, mosquitto would switch to its own user, who cannot read pytest's 0700 tmp dirs.
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {store}/\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if not wait_for_port(self.port):
            self.stop()
            pytest.skip("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)
            self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not MOSQUITTO.exists() and shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (Debian package `mosquitto`; scripts/test-setup.sh installs it)")
    instance = Broker(tmp_path)
    instance.start()
    yield instance
    instance.stop()


PERSON_CLASSES = (1, 2, 7)  # MOT17: pedestrian, person on a vehicle, static person — everyone a counter should see


@dataclass(frozen=True)
class PannedClip:
    """A real MOT17 sequence seen through a window sliding right by `step` pixels a frame (frames played forward
    then backward, so people drift left across the picture), with the ground truth moved the same way."""

    frames: list[np.ndarray]
    truth: list[np.ndarray]  # per video frame: [id, x, y, w, h, visibility] of every person, in window pixels
    fps: int


def panned_clip(sequence: str, window: int, step: int, count: int, fps: int = 10) -> PannedClip:
    folder = dataset_path("people-video") / "train" / sequence
    images = sorted((folder / "img1").glob("*.jpg"))
    gt = np.loadtxt(folder / "gt" / "gt.txt", delimiter=",")
    gt = gt[np.isin(gt[:, 7], PERSON_CLASSES)]
    order = list(range(len(images))) + list(range(len(images)))[::-1]
    frames, truth = [], []
    for i in range(count):
        index, offset = order[i % len(order)], i * step
        bgr = cv2.imread(str(images[index]))
        assert offset + window <= bgr.shape[1], "the window left the picture"
        frames.append(np.ascontiguousarray(cv2.cvtColor(bgr[:, offset : offset + window], cv2.COLOR_BGR2RGB)))
        rows = gt[gt[:, 0] == index + 1]
        truth.append(np.column_stack([rows[:, 1], rows[:, 2] - offset, rows[:, 3:6], rows[:, 8]]))
    return PannedClip(frames, truth, fps)
