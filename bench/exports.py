"""Exports per format: file size, single-image latency in the format's runtime vs the service, and accuracy on
held-out images vs the service.

A Lite0 224-px ants/bees classifier (Regular, 40 `train` images) is exported to every format that can run here;
each runs on all of ants/bees `val` fed the service's resized pixels. Latency: median of 50 single-image runs,
one thread in every runtime (onnxruntime, OpenVINO, LiteRT), as a ratio to the service's onnxruntime session in
the same run — the machine is shared, so absolute milliseconds are noisy. Core ML: size only (no runtime on
Linux); Docker: the service's own graph and runtime behind HTTP, not timed here.

    make bench BENCH=exports
"""

from __future__ import annotations

import io
import statistics
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from veil.vision.exports import ExportOptions, available_formats, export_model
from veil.vision.runtime import ExportedModel, fit_to_input, load_model, preprocess

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ants-bees"
RUNS = 50


def _images(split: str, per_class: int | None = None) -> list[tuple[np.ndarray, str]]:
    from PIL import Image, ImageOps

    found = []
    for tag in ("ants", "bees"):
        for path in sorted((DATASET / split / tag).glob("*.jpg"))[:per_class]:
            try:
                with Image.open(path) as image:
                    found.append((np.asarray(ImageOps.exif_transpose(image).convert("RGB")), tag))
            except OSError:
                continue
    return found


def _bgr(model: ExportedModel, rgb: np.ndarray) -> np.ndarray:
    fitted, _ = fit_to_input(rgb, model.info)
    return np.ascontiguousarray(fitted[..., ::-1], dtype=np.float32)


def _latency(run: Callable[[], object]) -> float:
    run()
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _member(data: bytes, suffix: str) -> bytes:
    archive = zipfile.ZipFile(io.BytesIO(data))
    return archive.read(next(name for name in archive.namelist() if name.endswith(suffix)))


def _onnx_runner(model_bytes: bytes, dtype: type) -> Callable[[np.ndarray], np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])

    def run(bgr: np.ndarray) -> np.ndarray:
        _, (loss,) = session.run(None, {"data": bgr.transpose(2, 0, 1)[None].astype(dtype)})
        return np.array([loss[key] for key in sorted(loss)])

    return run


def _openvino_runner(data: bytes) -> Callable[[np.ndarray], np.ndarray]:
    import tempfile

    import openvino as ov

    folder = Path(tempfile.mkdtemp(prefix="veil-bench-ov-"))
    zipfile.ZipFile(io.BytesIO(data)).extractall(folder)
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(folder / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    )

    def run(bgr: np.ndarray) -> np.ndarray:
        return np.asarray(compiled(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)[None] / 255.0))[0][0])

    return run


def _tflite_runner(model_bytes: bytes) -> Callable[[np.ndarray], np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    (given,), (answer,) = interpreter.get_input_details(), interpreter.get_output_details()

    def run(bgr: np.ndarray) -> np.ndarray:
        pixels = bgr[None]
        if given["dtype"] == np.int8:
            scale, zero = given["quantization"]
            pixels = np.clip(np.round(pixels / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(given["index"], pixels)
        interpreter.invoke()
        result = interpreter.get_tensor(answer["index"])[0]
        if answer["dtype"] == np.int8:
            scale, zero = answer["quantization"]
            result = (result.astype(np.float32) - zero) * scale
        return np.asarray(result)

    return run


def main() -> None:
    from veil.vision.data import Sample
    from veil.vision.train import TrainRequest, train

    train_images = _images("train", 20)
    samples = [Sample(f"{i}", rgb, [tag]) for i, (rgb, tag) in enumerate(train_images)]
    onnx_bytes = train(TrainRequest("classify", samples, seed=7, backbone="efficientnet-lite0", input_size=224)).onnx
    service = load_model(onnx_bytes, threads=1)
    held_out = _images("val")
    prepared = [(_bgr(service, rgb), rgb, tag) for rgb, tag in held_out]
    labels = service.info.labels
    service_answers = [service.probabilities([rgb])[0] for _, rgb, _ in prepared]
    pairs = zip(service_answers, prepared, strict=True)
    service_accuracy = np.mean([labels[int(p.argmax())] == tag for p, (_, _, tag) in pairs])
    tensor = preprocess(held_out[0][0], service.info)[0][None]
    service_ms = _latency(lambda: service.run(tensor))
    calibration = [rgb for rgb, _ in _images("train")[40:104]]
    offered = {fmt.key for fmt in available_formats("classify")}
    rows: list[tuple[str, int, str, str, str]] = [
        ("service (Veil ONNX, onnxruntime)", len(onnx_bytes), "1.00", f"{service_accuracy:.3f}", "—")
    ]
    candidates: list[tuple[str, str, str | None, Callable[[bytes], Callable[[np.ndarray], np.ndarray]], str]] = [
        ("ONNX (Azure layout)", "ONNX", None, lambda d: _onnx_runner(_member(d, ".onnx"), np.float32), ".onnx"),
        ("ONNX float16", "ONNX", "OnnxFloat16", lambda d: _onnx_runner(_member(d, ".onnx"), np.float16), ".onnx"),
        ("OpenVINO IR", "OpenVino", None, _openvino_runner, ".bin"),
        ("TFLite float32", "TensorFlow", "TensorFlowLite", lambda d: _tflite_runner(_member(d, ".tflite")), ".tflite"),
        ("TFLite int8", "TensorFlow", "TensorFlowLiteInt8", lambda d: _tflite_runner(_member(d, ".tflite")), ".tflite"),
    ]
    for title, platform, flavor, make_runner, suffix in candidates:
        key = f"{platform}/{flavor}" if flavor else platform
        if key not in offered:
            rows.append((title, 0, "not installed", "", ""))
            continue
        data = export_model(onnx_bytes, platform, flavor, options=ExportOptions(calibration=calibration)).data
        run = make_runner(data)
        answers = [run(bgr) for bgr, _, _ in prepared]
        accuracy = np.mean([labels[int(a.argmax())] == tag for a, (_, _, tag) in zip(answers, prepared, strict=True)])
        worst = max(float(np.abs(a - s).max()) for a, s in zip(answers, service_answers, strict=True))
        ratio = _latency(lambda run=run: run(prepared[0][0])) / service_ms
        rows.append((title, len(_member(data, suffix)), f"{ratio:.2f}", f"{accuracy:.3f}", f"{worst:.1e}"))
    if "CoreML" in offered:
        rows.append(("Core ML", len(_member(export_model(onnx_bytes, "CoreML").data, ".mlmodel")), "—", "—", "—"))
    print(f"Lite0 224 px ants/bees classifier; held-out: ants/bees val ({len(prepared)} images)")
    print(f"service single-image latency: {service_ms:.1f} ms (one thread)")
    print("| format | model file | latency vs service | val accuracy | max |p − service| |")
    print("|---|---|---|---|---|")
    for title, size, ratio, accuracy, worst in rows:
        print(f"| {title} | {size / 1e6:.1f} MB | {ratio} | {accuracy} | {worst} |")
