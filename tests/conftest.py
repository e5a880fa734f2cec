"""Suite-wide fixtures: where the shared real datasets live, and a clear skip when they do not."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATASETS = SHARED / "datasets"


def dataset_path(name: str) -> Path:
    """Path of `../shared/datasets/<name>`, or skip the test with the reason when it is absent (a user's clone)."""
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not found at {path} (it ships beside the repo in CI as ../shared)")
    return path


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {DATASETS} (they ship beside the repo in CI as ../shared)")
    return DATASETS
