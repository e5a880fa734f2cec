"""Smart labeler: what it saves. Ants/bees, 30 labelled photos (15 a class), a Regular iteration on the project's
default domain (General: Lite2 at 256 px); then the next 100 photos of the train split arrive untagged (50 a
class) and the labeler suggests a tag for each. Reported: how many of the suggestions at the default threshold are
right (a user accepting them all in bulk), at stricter thresholds for context (the default is not tuned on this),
and the time to compute the 100 suggestions.

    python -m bench suggestions          # or: make bench BENCH=suggestions
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
ANTS_BEES = REPO.parent / "shared" / "datasets" / "ants-bees" / "train"
LABELLED, UNTAGGED = 15, 50  # per class


def main() -> None:
    from veil.config import get_settings
    from veil.jobs.handlers import JobContext
    from veil.security.auth import OPERATOR
    from veil.services.context import AppContext
    from veil.services.images import Upload, add_images
    from veil.services.projects import create_project
    from veil.services.suggestions import DEFAULT_THRESHOLD, SuggestionQuery, query
    from veil.services.tags import create_tag
    from veil.services.training import TRAINING_JOB, TrainOptions, start_training

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = AppContext.open(get_settings(data_dir=Path(tmp) / "data"))
        with ctx.db.session() as session:
            project_id = create_project(ctx, session, OPERATOR, "ants and bees").id
            tags = {name: create_tag(session, OPERATOR, project_id, name).id for name in ("ants", "bees")}
        truth: dict[str, str] = {}
        for name in ("ants", "bees"):
            files = sorted((ANTS_BEES / name).glob("*.jpg"))
            labelled = [Upload(p.read_bytes(), p.name) for p in files[:LABELLED]]
            assert add_images(ctx, OPERATOR, project_id, labelled, [tags[name]]).all_ok
            for start in range(LABELLED, LABELLED + UNTAGGED, 25):
                batch = [Upload(p.read_bytes(), p.name) for p in files[start : min(start + 25, LABELLED + UNTAGGED)]]
                outcome = add_images(ctx, OPERATOR, project_id, batch)
                truth.update({r.image.id: tags[name] for r in outcome.results if r.image is not None})
        started = time.perf_counter()
        iteration = start_training(ctx, OPERATOR, project_id, TrainOptions())
        payload = {"project_id": project_id, "iteration_id": iteration.id, "backbone": None}
        TRAINING_JOB.run(JobContext(ctx.settings, iteration.job_id or "", "train", payload))
        trained_s = time.perf_counter() - started
        started = time.perf_counter()
        page = query(ctx, project_id, iteration.id, SuggestionQuery(threshold=0.0, max_count=256))
        suggest_s = time.perf_counter() - started
        ctx.close()

    table = Table(title=f"Smart labeler, ants/bees: {2 * LABELLED} labelled, {len(truth)} untagged")
    for column in ("threshold", "suggested", "right", "wrong", "precision", "labels saved"):
        table.add_column(column)
    for threshold in (DEFAULT_THRESHOLD, 0.7, 0.9):
        suggested = [s for s in page.results if s.predictions and s.predictions[0].probability >= threshold]
        right = sum(s.predictions[0].tag_id == truth[s.image.id] for s in suggested)
        label = f"{threshold:.2f}" + (" (default)" if threshold == DEFAULT_THRESHOLD else "")
        table.add_row(label, str(len(suggested)), str(right), str(len(suggested) - right),
                      f"{right / max(1, len(suggested)):.3f}", f"{right} of {len(truth)}")  # fmt: skip
    console.print(table)
    console.print(f"training {trained_s:.1f} s; 100 suggestions computed in {suggest_s:.1f} s "
                  f"({1000 * suggest_s / max(1, len(truth)):.0f} ms an image: decrypt, decode, predict)")  # fmt: skip
