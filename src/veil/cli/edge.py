"""`veil edge`: people events from live video (Spatial Analysis style), with no video kept.

    veil edge validate CONFIG.yaml            check a config and say what it will run
    veil edge run CONFIG.yaml [--preview out.mp4] [--max-frames N] [--data-dir DIR]

A config that names no detector runs the shipped YOLOX-Nano; `detector: {model: NAME}` names one registered with
`veil models add` in the data directory (`--data-dir`, `$VEIL_DATA_DIR` or ./.veil-data).

Events go to the configured sinks (stdout JSON lines by default); progress and errors go to stderr. SIGTERM or
Ctrl-C stops cleanly: sources close, sinks flush. Exit codes: 0 done, 2 bad config/input, 1 runtime failure.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from veil.cli.server import DataDirOption

edge_app = typer.Typer(
    name="edge",
    help="People counting, line crossing, zone and distance events from video; frames stay in memory.",
    no_args_is_help=True,
)
_err = Console(stderr=True, highlight=False)


def _fail(message: str, code: int = 2) -> typer.Exit:
    _err.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def _load(config_path: Path):  # type: ignore[no-untyped-def]  # returns EdgeConfig; imported lazily
    from veil.edge.config import ConfigError, load_config

    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


@edge_app.command()
def validate(
    config: Path = typer.Argument(..., metavar="CONFIG.yaml", help="Edge configuration file."),
    data_dir: DataDirOption = None,
) -> None:
    """Check CONFIG.yaml (fields, allowed values, files) without opening any camera."""
    from veil.edge.detect import DetectorError, build_detector

    cfg = _load(config)
    try:
        detector = build_detector(cfg.detector, data_dir)
    except DetectorError as exc:
        raise _fail(str(exc)) from None
    for camera in cfg.cameras:
        operations = [f"line {line.name}" for line in camera.lines] + [
            f"{event.type} {zone.name}" for zone in camera.zones for event in zone.events
        ]
        _err.print(f"camera {camera.id}: {camera.source.type} · {', '.join(operations) or 'no operations'}")
    _err.print(f"detector: {detector.name} · sinks: {', '.join(s.type for s in cfg.sinks)}")
    _err.print("config OK")


@edge_app.command()
def run(
    config: Path = typer.Argument(..., metavar="CONFIG.yaml", help="Edge configuration file."),
    preview: Path | None = typer.Option(
        None, "--preview", help="Also write an annotated, anonymized debug video of the first camera here."
    ),
    max_frames: int | None = typer.Option(None, "--max-frames", min=1, help="Stop after N frames per camera."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log reconnects and sink problems."),
    data_dir: DataDirOption = None,
) -> None:
    """Run the cameras of CONFIG.yaml until their sources end (files) or SIGTERM / Ctrl-C (live)."""
    from veil.edge.detect import DetectorError
    from veil.edge.sources import SourceError

    try:
        from veil.edge.pipeline import EdgePipeline
    except ImportError as exc:  # ByteTrack's package missing from a hand-made environment
        raise _fail(str(exc), code=1) from None

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    cfg = _load(config)
    pipeline = EdgePipeline(cfg, data_dir=data_dir)
    pipeline.preview_path = preview
    try:
        pipeline.open()
    except (SourceError, DetectorError) as exc:
        pipeline.close()
        raise _fail(str(exc)) from None
    except OSError as exc:  # e.g. the metrics port is taken, the recorder directory is not writable
        pipeline.close()
        raise _fail(f"cannot start: {exc}") from None
    signalled = _stop_on_signals(pipeline.stop)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=_err, transient=True
    ) as progress:
        task = progress.add_task("starting", total=None)
        counts = {camera.id: 0 for camera in cfg.cameras}

        def on_frame(camera_id: str, index: int) -> None:
            counts[camera_id] += 1
            fps = sum(pipeline.metrics.value("veil_edge_frames_per_second", camera=c) for c in counts)
            frames = sum(counts.values())
            progress.update(task, description=f"{frames} frames · {fps:.1f} frames/s")

        pipeline.on_frame = on_frame
        try:
            pipeline.run(max_frames=max_frames)
        except Exception as exc:  # a camera thread failed; the others were stopped and the sinks flushed
            raise _fail(f"{type(exc).__name__}: {exc}", code=1) from None
    frames = sum(counts.values())
    events = sum(
        s.value for metric in pipeline.metrics.events.collect() for s in metric.samples if s.name.endswith("_total")
    )
    _err.print(f"done: {frames} frames, {int(events)} events" + (" (stopped by signal)" if signalled.is_set() else ""))


@edge_app.command("open-clip")
def open_clip(
    clip: Path = typer.Argument(..., help="A recorder clip (<id>.clip)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the decrypted MP4."),
    data_dir: DataDirOption = None,
) -> None:
    """Decrypt a recorder clip (faces were hidden before encryption) with Veil's master key."""
    from veil.edge.recorder import master_key
    from veil.edge.recorder import open_clip as decrypt
    from veil.security.crypto import CryptoError

    if not clip.is_file():
        raise _fail(f"no such clip: {clip}")
    try:
        output.write_bytes(decrypt(clip, master_key(data_dir)))
    except (CryptoError, ValueError, KeyError) as exc:
        raise _fail(f"cannot open {clip}: {exc}") from None
    _err.print(f"wrote {output}")


def _stop_on_signals(stop: threading.Event) -> threading.Event:
    """SIGTERM / SIGINT end the run cleanly (the pipeline then flushes its sinks)."""
    signalled = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        signalled.set()
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return signalled


def register(app: typer.Typer) -> None:
    app.add_typer(edge_app, name="edge")
