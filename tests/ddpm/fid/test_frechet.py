"""The fast Frechet distance against pytorch-fid's calculate_frechet_distance (scipy's sqrtm)."""

from __future__ import annotations

import numpy as np
import pytest
from pytorch_fid.fid_score import calculate_frechet_distance

from ddpm.fid.frechet import FrechetReference, fast_frechet_distance, psd_sqrt

DIMS = 256  # sqrtm at 2048 takes 15-60 s here; tests/ddpm/fid/test_evaluate.py checks 2048 on real features
RELATIVE = 1e-6


def correlated(rows: int, seed: int, shift: float = 0.0, dims: int = DIMS) -> np.ndarray:
    """Non-negative features with a decaying spectrum, like pool3's."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).standard_normal((dims, dims)) / np.sqrt(dims)
    return np.abs((rng.standard_normal((rows, dims)) * np.linspace(0.1, 2.0, dims)) @ mixing + shift)


def stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), np.cov(features, rowvar=False)


@pytest.mark.parametrize(
    "generated_rows, reference_rows",
    [(600, 800), (100, 800), (600, 120), (50, 40)],
    ids=["full-rank", "generated-rank-deficient", "reference-rank-deficient", "both-rank-deficient"],
)
def test_fast_distance_equals_pytorch_fid(generated_rows: int, reference_rows: int) -> None:
    generated, reference = correlated(generated_rows, 1, shift=0.1), correlated(reference_rows, 2)
    mu1, sigma1 = stats(generated)
    mu2, sigma2 = stats(reference)
    expected = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
    fast = FrechetReference(mu2, sigma2)
    assert fast_frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=RELATIVE)
    assert fast.distance(mu1, sigma1) == pytest.approx(expected, rel=RELATIVE)
    # From the features: the d x d product above d rows, the n x n Gram matrix below.
    assert fast.project(generated).distance() == pytest.approx(expected, rel=RELATIVE)


def test_row_subsets_and_resamples_equal_pytorch_fid_on_those_rows() -> None:
    generated, reference = correlated(400, 3, shift=0.05), correlated(500, 4)
    mu2, sigma2 = stats(reference)
    projected = FrechetReference(mu2, sigma2).project(generated)
    rng = np.random.default_rng(0)
    for rows in (np.arange(150), rng.permutation(400)[:300], rng.integers(0, 400, size=400)):
        mu1, sigma1 = stats(generated[rows])  # repeats included: a bootstrap resample
        expected = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
        assert projected.distance(rows) == pytest.approx(expected, rel=RELATIVE)


def test_analytic_case_with_singular_covariances() -> None:
    """Commuting diagonal covariances: tr sqrt(S1 S2) = sum sqrt(a_i b_i), zeros included."""
    a = np.array([4.0, 1.0, 0.0, 9.0, 0.0])
    b = np.array([1.0, 0.0, 2.0, 4.0, 0.0])
    mu1, mu2 = np.array([1.0, 0, 0, 0, 0]), np.zeros(5)
    expected = 1.0 + a.sum() + b.sum() - 2 * np.sqrt(a * b).sum()
    assert fast_frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_psd_sqrt_squares_back_and_clips_rounding_negatives() -> None:
    sigma = np.cov(correlated(50, 5, dims=80), rowvar=False)  # rank 49 of 80: eigenvalues ~ +-1e-15
    root = psd_sqrt(sigma)
    assert np.allclose(root, root.T) and np.allclose(root @ root, sigma, atol=1e-12)
    assert np.linalg.eigvalsh(root).min() > -1e-12


def test_a_covariance_needs_two_rows() -> None:
    fast = FrechetReference(np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="at least 2 rows"):
        fast.project(np.ones((5, 3))).distance([2])
    with pytest.raises(ValueError, match="do not match"):
        fast.project(np.ones((5, 4)))
