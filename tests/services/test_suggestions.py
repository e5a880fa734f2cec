"""The smart labeler on real ants/bees photos: a Regular iteration trained on a few labelled photos suggests tags
for the untagged ones; queries filter by tag and threshold, rank by uncertainty and page; counts agree."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import dataset_path

from veil.config import get_settings
from veil.security.auth import OPERATOR
from veil.services.context import AppContext
from veil.services.errors import InvalidInput
from veil.services.images import Upload, add_images
from veil.services.projects import create_project
from veil.services.suggestions import DEFAULT_THRESHOLD, SuggestionQuery, count, query, suggest, uncertainty
from veil.services.tags import create_tag
from veil.services.training import TRAINING_JOB, TrainOptions, start_training


@dataclass
class Labelled:
    ctx: AppContext
    project_id: str
    iteration_id: str
    tags: dict[str, str]  # name → id
    truth: dict[str, str]  # untagged image id → its real tag id


def _photos(folder: Path, count: int, skip: int = 0) -> list[Path]:
    return sorted(folder.glob("*.jpg"))[skip : skip + count]


def train_now(ctx: AppContext, project_id: str, backbone: str = "lite0") -> str:
    """Queue a Regular training and run its job here, synchronously (the worker's handler, in this process)."""
    from veil.jobs.handlers import JobContext

    iteration = start_training(ctx, OPERATOR, project_id, TrainOptions(backbone=backbone))
    payload = {"project_id": project_id, "iteration_id": iteration.id, "backbone": f"efficientnet-{backbone}"}
    TRAINING_JOB.run(JobContext(ctx.settings, iteration.job_id or "", "train", payload))
    return iteration.id


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Labelled]:
    root = dataset_path("ants-bees") / "train"
    ctx = AppContext.open(get_settings(data_dir=tmp_path_factory.mktemp("suggest") / "data"))
    with ctx.db.session() as session:
        project_id = create_project(ctx, session, OPERATOR, "bugs").id
        tags = {name: create_tag(session, OPERATOR, project_id, name).id for name in ("ant", "bee")}
    truth = {}
    for name, folder in (("ant", "ants"), ("bee", "bees")):
        labelled_ones = [Upload(p.read_bytes(), p.name) for p in _photos(root / folder, 8)]
        assert add_images(ctx, OPERATOR, project_id, labelled_ones, [tags[name]]).all_ok
        untagged = add_images(
            ctx, OPERATOR, project_id, [Upload(p.read_bytes(), p.name) for p in _photos(root / folder, 6, 8)]
        )
        truth.update({r.image.id: tags[name] for r in untagged.results if r.image is not None})
    yield Labelled(ctx, project_id, train_now(ctx, project_id), tags, truth)
    ctx.close()


def test_untagged_images_get_the_right_tag_at_the_default_threshold(labelled: Labelled) -> None:
    page = query(labelled.ctx, labelled.project_id, labelled.iteration_id, SuggestionQuery(max_count=100))
    assert {s.image.id for s in page.results} <= set(labelled.truth)  # never a tagged image
    right = sum(s.predictions[0].tag_id == labelled.truth[s.image.id] for s in page.results)
    assert len(page.results) >= 10 and right >= 0.8 * len(page.results), f"{right}/{len(page.results)} right"
    assert all(p.probability >= DEFAULT_THRESHOLD for s in page.results for p in s.predictions)
    assert [s.uncertainty for s in page.results] == sorted(s.uncertainty for s in page.results)


def test_a_tag_filter_and_count_agree_and_pages_cover_everything_once(labelled: Labelled) -> None:
    ctx, pid, it = labelled.ctx, labelled.project_id, labelled.iteration_id
    bee = labelled.tags["bee"]
    counts = count(ctx, pid, it, [bee], 0.5)
    assert set(counts) == {bee}
    seen: list[str] = []
    request = SuggestionQuery(tag_ids=(bee,), threshold=0.5, max_count=3, sort_by="UncertaintyDescending")
    while True:
        page = query(ctx, pid, it, request)
        assert len(page.results) <= 3
        assert all(any(p.tag_id == bee for p in s.predictions) for s in page.results)
        seen += [s.image.id for s in page.results]
        if page.query.continuation is None:
            break
        request = page.query
    assert len(seen) == len(set(seen)) == counts[bee] > 0
    assert count(ctx, pid, it, [bee], 1.0)[bee] <= counts[bee]


def test_suggest_runs_the_iteration_over_named_images_and_refuses_too_many(labelled: Labelled) -> None:
    ids = list(labelled.truth)[:3]
    found = suggest(labelled.ctx, OPERATOR, labelled.project_id, labelled.iteration_id, ids)
    assert [s.image.id for s in found] == ids
    assert all(abs(sum(p.probability for p in s.predictions) - 1) < 1e-3 for s in found)  # multiclass softmax
    with pytest.raises(InvalidInput) as too_many:
        suggest(labelled.ctx, OPERATOR, labelled.project_id, labelled.iteration_id, [f"id{i}" for i in range(65)])
    assert too_many.value.code == "BadRequestExceededBatchSize"
    with pytest.raises(InvalidInput) as unknown:
        suggest(labelled.ctx, OPERATOR, labelled.project_id, labelled.iteration_id, ["not-an-image"])
    assert unknown.value.code == "BadRequestInvalidIds"


def test_uncertainty_is_zero_when_sure_and_one_when_torn() -> None:
    from veil.services.predictions import PredictedTag

    sure = [PredictedTag("a", "a", 1.0), PredictedTag("b", "b", 0.0)]
    torn = [PredictedTag("a", "a", 0.5), PredictedTag("b", "b", 0.5)]
    assert uncertainty(sure, False, False) == pytest.approx(0, abs=1e-6)
    assert uncertainty(torn, False, False) == pytest.approx(1)
    assert uncertainty(torn, True, False) == pytest.approx(1) and uncertainty([], True, False) == 0
