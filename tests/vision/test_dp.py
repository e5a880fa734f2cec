"""Differentially private training: Opacus' accountants against published values, private iterations that really
differ from non-private ones (and are reproducible), the record on the card and in the ONNX metadata, refusals."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from tests.vision.conftest import ants_bees
from tests.vision.test_cli import _folder_dataset

from veil.vision.dp import PrivacyBudget, PrivacyInputError, epsilon_spent, noise_multiplier_for
from veil.vision.train import TrainRequest, TrainResult, train


# Published reference values, not computed by Veil: Opacus' own test suite (opacus/tests/accountants_test.py,
# Opacus 1.6.0) and Microsoft's prv_accountant outputs that Opacus ships in opacus/tests/prv_accountant.py.
@pytest.mark.parametrize(
    ("accountant", "sigma", "rate", "steps", "delta", "expected"),
    [
        ("rdp", 1.5, 0.04, 2250, 1e-5, 7.32911117143),
        ("prv", 1.5, 0.04, 2250, 1e-5, 6.777395712150674),
        ("prv", 1.5, 0.05, 1000, 1e-6, 6.20996924657726712),  # microsoft/prv_accountant
        ("prv", 2.0, 0.001, 100, 1e-6, 0.0291045369484074882),  # microsoft/prv_accountant
        ("prv", 0.8, 0.2, 100, 1e-6, 24.3336641779225644),  # microsoft/prv_accountant
    ],
)
def test_accountant_epsilon_matches_published_reference_values(
    accountant: str, sigma: float, rate: float, steps: int, delta: float, expected: float
) -> None:
    # RDP is closed-form; PRV is numerical, accurate to its eps_error of 0.01 (Gopi et al. 2021; Opacus' default)
    tolerance = 1e-6 if accountant == "rdp" else 0.01
    assert epsilon_spent(accountant, sigma, rate, steps, delta) == pytest.approx(expected, abs=tolerance)


def test_noise_is_calibrated_to_the_target_epsilon() -> None:
    # Opacus' test: ε = 8, δ = 1e-5, q = 0.04, 2000 steps → σ = 1.3562 (RDP) with its 0.01 ε tolerance; Veil
    # searches to 0.005, so σ may be a little larger, and must spend between 7.99 and 8.
    sigma = noise_multiplier_for(PrivacyBudget(8.0, accountant="rdp"), 1e-5, 0.04, 2000)
    assert sigma == pytest.approx(1.3562, abs=0.01)
    assert 7.99 <= epsilon_spent("rdp", sigma, 0.04, 2000, 1e-5) <= 8.0


def _head(result: TrainResult) -> np.ndarray:
    graph = onnx.load_from_string(result.onnx).graph
    return next(numpy_helper.to_array(i) for i in graph.initializer if i.name == "head.weight")


@pytest.fixture(scope="module")
def iterations() -> dict[str, TrainResult]:
    samples = ants_bees("train", 10, skip=60)

    def run(privacy: PrivacyBudget | None) -> TrainResult:
        return train(TrainRequest("classify", samples, seed=5, input_size=96, privacy=privacy))

    return {"plain": run(None), "eps1": run(PrivacyBudget(1.0)), "eps1-again": run(PrivacyBudget(1.0))}


def test_iteration_trained_with_epsilon_1_differs_from_non_private(iterations: dict[str, TrainResult]) -> None:
    plain, private = iterations["plain"], iterations["eps1"]
    assert _head(plain).shape == _head(private).shape
    assert not np.allclose(_head(plain), _head(private), atol=1e-3)
    validation = ants_bees("val", 5)
    from veil.vision.runtime import load_model

    rgb = [s.rgb() for s in validation]
    assert not np.allclose(
        load_model(plain.onnx).probabilities(rgb), load_model(private.onnx).probabilities(rgb), atol=1e-3
    )
    assert plain.privacy is not None and plain.privacy.differential_privacy is None


def test_private_iteration_is_reproducible_with_its_seed(iterations: dict[str, TrainResult]) -> None:
    assert np.array_equal(_head(iterations["eps1"]), _head(iterations["eps1-again"]))
    assert iterations["eps1"].evaluation.to_dict() == iterations["eps1-again"].evaluation.to_dict()


def test_spent_budget_is_recorded_on_card_and_in_onnx_metadata(iterations: dict[str, TrainResult]) -> None:
    result = iterations["eps1"]
    assert result.privacy is not None
    spent = result.privacy.differential_privacy
    assert spent is not None
    assert 0.95 <= spent.epsilon <= 1.0 and spent.delta < 1 / 20 and spent.accountant == "prv"
    assert spent.max_grad_norm == 1.0 and spent.noise_multiplier > 1 and 0 < spent.sample_rate <= 1 and spent.steps > 0
    # the spent ε is what Opacus' accountant gives for the recorded (σ, q, steps): nothing is rounded in our favour
    assert epsilon_spent("prv", spent.noise_multiplier, spent.sample_rate, spent.steps, spent.delta) == pytest.approx(
        spent.epsilon, abs=0.02
    )
    with zipfile.ZipFile(io.BytesIO(result.bundle)) as bundle:
        card = json.loads(bundle.read("model_card.json"))
        markdown = bundle.read("model_card.md").decode()
        exported = onnx.load_from_string(bundle.read("model.onnx"))
    assert card["privacy"]["differential_privacy"]["epsilon"] == spent.epsilon
    assert "## Privacy" in markdown and "ε = " in markdown and "Membership-inference audit" in markdown
    metadata = {entry.key: entry.value for entry in exported.metadata_props}
    recorded = json.loads(metadata["veil.privacy"])["differential_privacy"]
    assert recorded["epsilon"] == spent.epsilon and recorded["noise_multiplier"] == spent.noise_multiplier
    assert recorded["sample_rate"] == spent.sample_rate and recorded["max_grad_norm"] == 1.0


@pytest.mark.parametrize(
    ("budget", "task", "advanced", "message"),
    [
        (PrivacyBudget(0.0), "classify", False, "epsilon must be a positive number"),
        (PrivacyBudget(-1.0), "classify", False, "epsilon must be a positive number"),
        (PrivacyBudget(float("inf")), "classify", False, "epsilon must be a positive number"),
        (PrivacyBudget(8.0, delta=1.0), "classify", False, "delta must be between 0 and 1"),
        (PrivacyBudget(8.0, delta=0.2), "classify", False, "not below 1/N"),
        (PrivacyBudget(8.0), "detect", False, "not available for object detection"),
        (PrivacyBudget(8.0, accountant="moments"), "classify", False, "unknown accountant"),
    ],
)
def test_bad_privacy_requests_are_refused_in_one_line(
    budget: PrivacyBudget, task: str, advanced: bool, message: str
) -> None:
    with pytest.raises(PrivacyInputError, match=message) as refused:
        budget.validate(task, advanced, images=20)
    assert "\n" not in str(refused.value)


def _veil(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from veil.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dp-epsilon", "0"], "epsilon must be a positive number"),
        (["--dp-epsilon", "8", "--dp-delta", "1"], "delta must be between 0 and 1"),
        (["--dp-epsilon", "8", "--task", "detect"], "not available for object detection"),
        (["--dp-delta", "1e-5"], "--dp-delta needs --dp-epsilon"),
    ],
)
def test_cli_refuses_bad_privacy_flags_with_exit_2(tmp_path: Path, flags: list[str], message: str) -> None:
    refused = _veil("train", str(tmp_path / "never-read"), "--out", str(tmp_path / "m.zip"), *flags)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_cli_trains_privately_and_prints_the_privacy_table(tmp_path: Path) -> None:
    data = _folder_dataset(tmp_path / "photos", 6)
    out = tmp_path / "private.zip"
    trained = _veil("train", str(data), "--dp-epsilon", "8", "--input-size", "64", "--out", str(out))
    assert trained.returncode == 0, trained.stderr[-2000:]
    text = " ".join(trained.stdout.split())
    assert "differential privacy ε = 8" in text and "PRV" in text and "noise multiplier" in text
    assert "membership-inference audit" in text and "loss threshold" in text and "LiRA" in text
    assert "leakage" in text or "leaks" in text  # the verdict in plain words
    with zipfile.ZipFile(out) as bundle:
        assert json.loads(bundle.read("model_card.json"))["privacy"]["differential_privacy"]["target_epsilon"] == 8
