"""DP-Pix (Fan 2018) and pixelation: the output statistics match the mechanism; options are validated."""

from __future__ import annotations

import numpy as np
import pytest
from tests.privacy.conftest import read_rgb, wider_faces

from veil.privacy.obfuscate import DPRecord, cell_means, dp_pixelate, pixelate
from veil.privacy.settings import AnonymizeSettings, SettingsError


def test_noise_on_a_flat_image_is_laplace_with_the_mechanisms_scale() -> None:
    # ε=1, b=8, m=4 → scale 255·4/(64·1) ≈ 15.9: clipping at 0/255 (8 scales from 128) is negligible.
    settings = AnonymizeSettings(method="dp-pixelate", epsilon=1.0, cell=8, m=4)
    flat = np.full((512, 512, 3), 128, dtype=np.uint8)
    noisy = dp_pixelate(flat, settings.cell, settings.noise_scale, np.random.default_rng(7))
    residual = noisy.astype(np.float64) - 128
    # One noise draw per 8×8 cell and channel: every cell is constant.
    cells = residual.reshape(64, 8, 64, 8, 3)
    assert np.all(cells == cells[:, :1, :, :1, :])
    draws = cells[:, 0, :, 0, :].ravel()  # 12,288 independent draws
    scale = settings.noise_scale
    # For Laplace(b): E|X| = b, Var X = 2b², P(|X| > t) = exp(-t/b). Outputs are rounded to integers, so
    # |out| > b exactly when |X| ≥ ceil(b) - 0.5.
    assert np.mean(np.abs(draws)) == pytest.approx(scale, rel=0.05)
    assert np.std(draws) == pytest.approx(np.sqrt(2) * scale, rel=0.06)
    tail = np.exp(-(np.ceil(scale) - 0.5) / scale)
    assert np.mean(np.abs(draws) > scale) == pytest.approx(tail, abs=0.02)
    assert abs(np.mean(draws)) < 0.5  # unbiased (standard error ≈ 0.2)


def test_noise_scale_follows_epsilon_cell_and_m() -> None:
    flat = np.full((256, 256, 3), 128, dtype=np.uint8)
    spreads = {}
    for epsilon in (2.0, 8.0):
        settings = AnonymizeSettings(method="dp-pixelate", epsilon=epsilon, cell=4, m=4)
        out = dp_pixelate(flat, settings.cell, settings.noise_scale, np.random.default_rng(3))
        spreads[epsilon] = np.mean(np.abs(out.astype(float) - 128))
    assert spreads[2.0] / spreads[8.0] == pytest.approx(4.0, rel=0.1)  # scale ∝ 1/ε
    assert AnonymizeSettings(cell=16, m=16, epsilon=0.5).noise_scale == pytest.approx(255 * 16 / (256 * 0.5))


def test_output_is_clipped_to_valid_pixels_even_with_huge_noise() -> None:
    region = read_rgb(wider_faces("19_Couple_Couple_19_881.jpg", 40)[0])[:200, :200]
    out = dp_pixelate(region, 4, 500.0, np.random.default_rng(0))
    assert out.dtype == np.uint8
    assert (out == 0).any() and (out == 255).any()  # clipping, not wrap-around


def test_pixelate_uses_true_cell_means_including_partial_edge_cells() -> None:
    rng = np.random.default_rng(5)
    region = rng.integers(0, 256, size=(37, 50, 3), dtype=np.uint8)
    means = cell_means(region, 16)
    assert means.shape == (3, 4, 3)
    np.testing.assert_allclose(means[0, 0], region[:16, :16].reshape(-1, 3).mean(axis=0))
    np.testing.assert_allclose(means[2, 3], region[32:, 48:].reshape(-1, 3).mean(axis=0))  # a 5×2 cell
    out = pixelate(region, 16)
    assert np.all(np.abs(out[:16, :16].astype(float) - means[0, 0]) <= 0.5)


def test_pixelate_keeps_at_most_about_ten_cells_across_a_large_face() -> None:
    region = read_rgb(wider_faces("19_Couple_Couple_19_1014.jpg", 40)[0])[100:400, 300:600]
    out = pixelate(region, 4)
    distinct_columns = len(np.unique(out[0], axis=0))
    assert distinct_columns <= 10


def test_budget_composes_over_channels_and_frames() -> None:
    record = DPRecord(epsilon=0.5, cell=16, m=16, noise_scale=31.875, channels=3, frames=1)
    assert record.total_epsilon == pytest.approx(1.5)
    video = DPRecord(epsilon=0.5, cell=16, m=16, noise_scale=31.875, channels=3, frames=30)
    assert video.total_epsilon == pytest.approx(45.0)
    assert "total_epsilon=45" in video.describe()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "swirl"}, "unknown method"),
        ({"epsilon": 0.0}, "epsilon must be > 0"),
        ({"cell": 0}, "cell and m must be >= 1"),
        ({"threshold": 1.5}, "threshold must be between 0 and 1"),
        ({"targets": ("faces", "plates")}, "need a Veil-exported detector"),
        ({"targets": ()}, "no targets"),
    ],
)
def test_bad_options_are_refused_with_a_message(options: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        AnonymizeSettings(**options)  # type: ignore[arg-type]
