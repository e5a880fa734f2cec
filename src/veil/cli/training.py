"""`veil train`, `veil predict`, `veil import`: train and run models locally, or load a dataset into a running Veil.

    veil train ./my-photos --task classify --out model.zip          # folder per tag → classifier
    veil train ./coco.json --task detect --advanced --minutes 10 --out det.zip
    veil train ./my-photos --backbone lite0 --input-size 224        # smaller, faster model
    veil train ./my-photos --dp-epsilon 8 [--dp-delta 1e-4]          # differentially private (δ: auto = 1/(10·N))
    veil predict --model model.zip photo1.jpg photo2.jpg [--json]     # onnxruntime only, no server
    veil import ./my-photos --project <id> --url http://127.0.0.1:8080 --key <training key>

`veil train` shows a progress bar, prints the held-out metrics and the privacy table (ε spent, if private, and the
membership-inference audit of every iteration) and writes the PR curves (`<out>.pr-<tag>.png`) next to the
bundle. Bad datasets and bad model files end with one line on stderr and exit code 1; a bad privacy request
(ε ≤ 0, δ outside (0, 1/N), DP for detection) with one line and exit code 2.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer
from PIL import Image, ImageOps
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console()
err_console = Console(stderr=True)
IMPORT_BATCH = 64


def _fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    from veil.vision.dp import PrivacyInputError

    try:
        yield
    except PrivacyInputError as error:
        _fail(str(error), code=2)
    except (ValueError, OSError) as error:
        text = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        _fail(text)


def _safe_name(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", tag) or "tag"


def train_command(
    dataset: Annotated[Path, typer.Argument(help="Folder per tag, COCO .json, VOC XML, YOLO or PASCAL txt dataset.")],
    task: Annotated[str, typer.Option(help="classify, multilabel or detect.")] = "classify",
    out: Annotated[Path, typer.Option(help="Where to write the model bundle (.zip).")] = Path("model.zip"),
    advanced: Annotated[bool, typer.Option("--advanced", help="Fine-tune under a time budget.")] = False,
    minutes: Annotated[float | None, typer.Option(help="Time budget in minutes (Advanced; detection).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same metrics.")] = 0,
    input_size: Annotated[int | None, typer.Option(help="Network input side, a multiple of 32.")] = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            help="lite0, lite1 or lite2; yolox-nano for detection (default: lite2 for classification, yolox-nano for "
            "detection, lite0 for private detection)."
        ),
    ] = None,
    negative_tag: Annotated[str | None, typer.Option(help="Tag meaning 'none of the others'.")] = None,
    dataset_format: Annotated[str | None, typer.Option("--format", help="Force the dataset format.")] = None,
    threshold: Annotated[float, typer.Option(help="Probability threshold for the printed metrics.")] = 0.5,
    dp_epsilon: Annotated[
        float | None, typer.Option("--dp-epsilon", help="Train with differential privacy at this ε (e.g. 8).")
    ] = None,
    dp_delta: Annotated[
        str, typer.Option("--dp-delta", help="δ for --dp-epsilon: a number below 1/N, or auto = 1/(10·N).")
    ] = "auto",
    dp_accountant: Annotated[str, typer.Option("--dp-accountant", help="prv (tighter) or rdp.")] = "prv",
    dp_clip: Annotated[float, typer.Option("--dp-clip", help="Per-image gradient clipping norm.")] = 1.0,
    audit: Annotated[bool, typer.Option("--audit/--no-audit", help="Membership-inference audit (every task).")] = True,
) -> None:
    """Train a model on a local dataset, evaluate it on held-out images and write an ONNX bundle."""
    with _one_line_errors():
        budget = _privacy_budget(dp_epsilon, dp_delta, dp_accountant, dp_clip, task, advanced, backbone)
        from veil.vision.datasets import load_dataset
        from veil.vision.metrics import performance
        from veil.vision.train import TrainingCancelled, TrainProgress, TrainRequest, train

        if task not in ("classify", "multilabel", "detect"):
            raise ValueError(f"unknown task {task!r}; use classify, multilabel or detect")
        samples = load_dataset(dataset, dataset_format)
        request = TrainRequest(
            task=task,
            samples=samples,
            advanced=advanced,
            budget_minutes=minutes,
            seed=seed,
            input_size=input_size,
            backbone=backbone,
            negative_tag=negative_tag,
            name=out.stem,
            privacy=budget,
            audit=audit,
        )
        private = f" · differential privacy ε = {budget.epsilon:g}" if budget else ""
        console.print(
            f"{len(samples)} images from {dataset} · task {task} · {'Advanced' if advanced else 'Regular'}{private}"
        )
        columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as bar:
            job = bar.add_task("training", total=100)

            def show(update: TrainProgress) -> None:
                bar.update(job, completed=update.percent, description=update.stage)

            try:
                result = train(request, progress=show)
            except TrainingCancelled:
                _fail("training cancelled")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(result.bundle)
        for tag, png in result.pr_curves.items():
            out.with_name(f"{out.stem}.pr-{_safe_name(tag)}.png").write_bytes(png)
        if result.training_curve:
            out.with_name(f"{out.stem}.training.png").write_bytes(result.training_curve)
        _print_performance(performance(result.evaluation, threshold, 0.5), task)
        if result.privacy:
            _print_privacy(result.privacy)
        console.print(
            f"wrote {out} ({len(result.bundle) / 1e6:.1f} MB) in {result.seconds:.1f} s; "
            f"PR curves beside it as {out.stem}.pr-<tag>.png"
        )


def _privacy_budget(
    epsilon: float | None, delta: str, accountant: str, clip: float, task: str, advanced: bool, backbone: str | None
) -> Any:
    """The --dp-* flags as a validated `PrivacyBudget` (None without --dp-epsilon); PrivacyInputError → exit 2."""
    from veil.vision.dp import PrivacyBudget, PrivacyInputError

    if epsilon is None:
        if delta != "auto":
            raise PrivacyInputError("--dp-delta needs --dp-epsilon")
        return None
    try:
        parsed_delta = None if delta == "auto" else float(delta)
    except ValueError:
        raise PrivacyInputError(f"--dp-delta must be a number or auto, got {delta!r}") from None
    budget = PrivacyBudget(epsilon, parsed_delta, accountant, clip)
    budget.validate(task, advanced, backbone=backbone)
    return budget


def _print_privacy(privacy: Any) -> None:
    """ε and how it was spent, then the audit's attacks with their 95 % intervals and the verdict."""
    spent = privacy.differential_privacy
    table = Table(title="privacy", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    if spent:
        table.add_row(
            "differential privacy",
            f"ε = {spent.epsilon:.3g}, δ = {spent.delta:.1e} (target ε {spent.target_epsilon:g})",
        )
        table.add_row("accountant", spent.accountant.upper())
        table.add_row("clipping norm", f"{spent.max_grad_norm:g}")
        table.add_row("noise multiplier", f"{spent.noise_multiplier:.4g}")
        table.add_row("sampling rate", f"{spent.sample_rate:.4g} · {spent.steps} steps ({spent.epochs:g} epochs)")
        table.add_row("ε covers", spent.covers)
    else:
        table.add_row("differential privacy", "not used (ε = ∞); add --dp-epsilon 8 to train privately")
    console.print(table)
    audit = privacy.audit
    if not audit:
        return
    title = (
        f"membership-inference audit · {audit.members} member / {audit.non_members} non-member pairs · "
        f"{audit.reference_models} reference models · {audit.seconds:g} s"
    )
    attacks = Table(title=title)
    for column in ("attack", "AUC [95 % CI]", "TPR @ 0.1 % FPR", "TPR @ 1 % FPR"):
        attacks.add_column(column, justify="left" if column == "attack" else "right")
    for attack in audit.attacks:
        attacks.add_row(attack.name, str(attack.auc), str(attack.tpr_at_0_1_fpr), str(attack.tpr_at_1_fpr))
    console.print(attacks)
    console.print(audit.verdict, highlight=False)
    for note in audit.notes:
        console.print(f"note: {note}", style="dim", highlight=False)
    if audit.min_measurable_fpr > 0.001:
        console.print(
            f"(with {audit.non_members} held-out images the smallest measurable FPR is "
            f"{audit.min_measurable_fpr:.2%}: TPR @ 0.1 % FPR is the TPR at zero false alarms)",
            style="dim",
            highlight=False,
        )


def _print_performance(summary: Any, task: str) -> None:
    title = (
        f"held-out metrics ({summary.evaluation_method}, {summary.held_out_images} images, threshold "
        f"{summary.threshold:g}{', IoU 0.5' if task == 'detect' else ''}; ± = {summary.std_method} std)"
    )
    table = Table(title=title)
    for column in ("tag", "precision", "recall", "AP", "held-out images"):
        table.add_column(column, justify="left" if column == "tag" else "right")
    for tag in summary.per_tag:
        table.add_row(
            tag.tag,
            f"{tag.precision:.3f} ± {tag.precision_std:.3f}",
            f"{tag.recall:.3f} ± {tag.recall_std:.3f}",
            f"{tag.average_precision:.3f} ± {tag.average_precision_std:.3f}",
            str(tag.held_out_images),
        )
    table.add_row(
        "[bold]overall[/]",
        f"{summary.precision:.3f}",
        f"{summary.recall:.3f}",
        f"mAP {summary.mean_average_precision:.3f}",
        str(summary.held_out_images),
    )
    console.print(table)


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8)
    except OSError as error:
        raise ValueError(f"cannot read image {path}: {error}") from None


def predict_command(
    images: Annotated[list[Path], typer.Argument(help="Image files to run the model on.")],
    model: Annotated[Path, typer.Option("--model", help="A Veil .zip bundle or .onnx model.")],
    threshold: Annotated[
        float | None, typer.Option(help="Detection: minimum confidence (default: the model's).")
    ] = None,
    top: Annotated[int, typer.Option(help="Classification: tags shown per image.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Run an exported model on images with onnxruntime only (no server, no torch)."""
    with _one_line_errors():
        from veil.vision.data import to_normalized_ltwh
        from veil.vision.runtime import load_model

        loaded = load_model(model)
        results: list[dict[str, Any]] = []
        for path in images:
            rgb = _read_rgb(path)
            if loaded.info.task == "detect":
                detections = loaded.detect(rgb, threshold)
                names = detections.data.get("class_name", [])
                predictions = [
                    {
                        "tagName": str(name),
                        "probability": round(float(score), 6),
                        "boundingBox": dict(
                            zip(
                                ("left", "top", "width", "height"),
                                (round(v, 6) for v in to_normalized_ltwh(xyxy, rgb.shape[1], rgb.shape[0])),
                                strict=True,
                            )
                        ),
                    }
                    for xyxy, score, name in zip(detections.xyxy, detections.confidence, names, strict=True)  # type: ignore[arg-type]
                ]
            else:
                predictions = [{"tagName": p.tag, "probability": round(p.probability, 6)} for p in loaded.classify(rgb)]
            results.append({"image": str(path), "predictions": predictions})
        if as_json:
            sys.stdout.write(json.dumps(results, indent=2) + "\n")
            return
        table = Table(title=f"{model.name} · {loaded.info.task}")
        for column in ("image", "tag", "probability", "box (left, top, width, height)"):
            table.add_column(column)
        for item in results:
            shown = item["predictions"] if loaded.info.task == "detect" else item["predictions"][:top]
            if not shown:
                table.add_row(item["image"], "—", "", "")
            for prediction in shown:
                box = prediction.get("boundingBox")
                where = ", ".join(f"{v:.3f}" for v in box.values()) if box else ""
                table.add_row(item["image"], prediction["tagName"], f"{prediction['probability']:.4f}", where)
        console.print(table)


def _encode(sample: Any) -> str:
    import io

    buffer = io.BytesIO()
    Image.fromarray(sample.rgb()).save(buffer, format="JPEG", quality=95)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def import_command(
    dataset: Annotated[Path, typer.Argument(help="Dataset to upload (same formats as `veil train`).")],
    project: Annotated[str, typer.Option("--project", help="Project id in the running Veil.")],
    url: Annotated[str, typer.Option(help="Veil base URL.", envvar="VEIL_URL")] = "http://127.0.0.1:8080",
    key: Annotated[str, typer.Option(help="Training key.", envvar="VEIL_TRAINING_KEY")] = "",
    dataset_format: Annotated[str | None, typer.Option("--format", help="Force the dataset format.")] = None,
) -> None:
    """Upload a local dataset (tags, images, regions) into a project of a running Veil over its REST API."""
    import httpx

    with _one_line_errors():
        from veil.vision.datasets import load_dataset

        samples = load_dataset(dataset, dataset_format)
        base = f"{url.rstrip('/')}/customvision/v3.3/training/projects/{project}"
        with httpx.Client(headers={"Training-Key": key}, timeout=120) as client:
            tag_ids = _ensure_tags(client, base, sorted({t for s in samples for t in s.tags()}))
            created = 0
            with Progress(console=console) as bar:
                job = bar.add_task("uploading", total=len(samples))
                for start in range(0, len(samples), IMPORT_BATCH):
                    batch = samples[start : start + IMPORT_BATCH]
                    entries = [
                        {
                            "name": s.key,
                            "contents": _encode(s),
                            "tagIds": [tag_ids[t] for t in s.labels],
                            "regions": [
                                {
                                    "tagId": tag_ids[b.tag],
                                    "left": b.left,
                                    "top": b.top,
                                    "width": b.width,
                                    "height": b.height,
                                }
                                for b in s.boxes
                            ],
                        }
                        for s in batch
                    ]
                    response = client.post(f"{base}/images/files", json={"images": entries})
                    _check(response)
                    created += sum(
                        1 for i in response.json().get("images", []) if i.get("status") in ("OK", "OKDuplicate")
                    )
                    bar.update(job, advance=len(batch))
        console.print(f"imported {created} of {len(samples)} images, {len(tag_ids)} tags into project {project}")


def _check(response: Any) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("error", {}).get("message") or response.text
        except ValueError:
            detail = response.text
        raise ValueError(f"Veil answered {response.status_code}: {str(detail)[:200]}")


def _ensure_tags(client: Any, base: str, names: list[str]) -> dict[str, str]:
    try:
        listed = client.get(f"{base}/tags")
    except Exception as error:  # httpx.HTTPError and socket errors: say where we could not connect
        raise ValueError(f"cannot reach Veil at {base}: {error}") from None
    _check(listed)
    existing = {tag["name"]: tag["id"] for tag in listed.json()}
    for name in names:
        if name not in existing:
            created = client.post(f"{base}/tags", params={"name": name})
            _check(created)
            existing[name] = created.json()["id"]
    return existing


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("predict")(predict_command)
    app.command("import")(import_command)
