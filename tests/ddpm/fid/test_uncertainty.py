"""FID-infinity and the bootstrap interval: known laws, analytic Gaussians, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from ddpm.errors import InvalidOption
from ddpm.fid.bootstrap import bootstrap_interval
from ddpm.fid.fid_infinity import fid_infinity, fit_inverse_n
from ddpm.fid.frechet import FrechetReference, fast_frechet_distance
from ddpm.fid.options import fid_infinity_sizes

DIMS = 16


def test_fit_recovers_an_exact_inverse_n_law() -> None:
    points = [(n, 12.5 + 3000.0 / n) for n in (100, 200, 400, 800)]
    fit = fit_inverse_n(points)
    assert fit.value == pytest.approx(12.5, abs=1e-9) and fit.slope == pytest.approx(3000.0)
    assert fit.se == pytest.approx(0.0, abs=1e-9) and fit.points == tuple(points)
    assert fit_inverse_n(points[:2]).se is None  # two points: a line, no residuals


def test_fid_infinity_recovers_the_intercept_of_a_noisy_inverse_n_law() -> None:
    """Synthetic distances built with FID_N = 7 + 900 / N + noise: the intercept comes back within its se."""
    noise = np.random.default_rng(5)

    def distance(rows: np.ndarray) -> float:
        return 7.0 + 900.0 / len(rows) + noise.normal(0.0, 0.05)

    fit = fid_infinity(distance, n=2000, points=15, seed=0)
    assert [n for n, _ in fit.points] == fid_infinity_sizes(2000, 15)
    assert fit.points[0][0] == 200 and fit.points[-1][0] == 2000  # a tenth of N to N, as Chong & Forsyth
    assert fit.se is not None and 0 < fit.se < 0.2
    assert abs(fit.value - 7.0) < 3 * fit.se and fit.slope == pytest.approx(900.0, rel=0.1)


def gaussian(rows: int, rng: np.random.Generator, mean: np.ndarray, cov_root: np.ndarray) -> np.ndarray:
    return mean + rng.standard_normal((rows, len(mean))) @ cov_root


@pytest.fixture(scope="module")
def two_gaussians() -> dict[str, np.ndarray]:
    """A generated and a reference Gaussian whose Frechet distance is known in closed form."""
    rng = np.random.default_rng(0)
    generated_root = rng.standard_normal((DIMS, DIMS)) * 0.4
    reference_root = np.diag(np.linspace(0.5, 1.5, DIMS))
    mu_g, mu_r = np.full(DIMS, 0.3), np.zeros(DIMS)
    sigma_g, sigma_r = generated_root.T @ generated_root, reference_root.T @ reference_root
    return {
        "mu_g": mu_g,
        "root_g": generated_root,
        "mu_r": mu_r,
        "sigma_r": sigma_r,
        "true": np.array(fast_frechet_distance(mu_g, sigma_g, mu_r, sigma_r)),
    }


def test_fid_infinity_removes_the_small_n_bias_of_real_samples() -> None:
    """Gaussian samples against the exact population statistics, so the true FID is known in closed form.

    FID_N is biased upward by ~c/N; FID-infinity lands near the truth when its smallest N is well above
    the dimension (here N_1 = 256 = 2d, like Chong & Forsyth's 5,000 for 2048 features).
    """
    dims, n = 128, 2560
    rng = np.random.default_rng(0)
    generated_root = rng.standard_normal((dims, dims)) * 0.2 * np.sqrt(64 / dims)
    reference_sigma = np.diag(np.linspace(0.5, 1.5, dims) ** 2)
    mu = np.zeros(dims)
    truth = fast_frechet_distance(mu, generated_root.T @ generated_root, mu, reference_sigma)
    reference = FrechetReference(mu, reference_sigma)
    errors_n, errors_inf = [], []
    for seed in range(4):
        projected = reference.project(gaussian(n, np.random.default_rng(100 + seed), mu, generated_root))
        errors_n.append(projected.distance() - truth)
        errors_inf.append(fid_infinity(projected.distance, n, 15, seed).value - truth)
    assert min(errors_n) > 0.01 * truth  # every FID at N=2560 is biased upward (by about 2%)
    assert abs(np.mean(errors_inf)) < 0.25 * np.mean(errors_n)


def test_bootstrap_se_matches_the_spread_over_independent_sample_sets(two_gaussians: dict) -> None:
    """The oracle for an interval: the std of FID across many independent sample sets of the same N."""
    g = two_gaussians
    reference = FrechetReference(g["mu_r"], g["sigma_r"])
    rng = np.random.default_rng(1)
    n = 300
    across_sets = np.std(
        [reference.project(gaussian(n, rng, g["mu_g"], g["root_g"])).distance() for _ in range(200)], ddof=1
    )
    one_set = reference.project(gaussian(n, rng, g["mu_g"], g["root_g"]))
    fid = one_set.distance()
    interval = bootstrap_interval(one_set.distance, n, fid, replicates=200, seed=0)
    assert 0.7 < interval.se / across_sets < 1.4
    assert interval.low < fid < interval.high and interval.level == 0.95 and interval.replicates == 200
    assert interval.high - fid == pytest.approx(1.959964 * interval.se, rel=1e-6)
    assert interval.bootstrap_mean > fid  # resampling repeats rows: the small-N bias, reported not used


def test_bootstrap_and_fid_infinity_are_seeded(two_gaussians: dict) -> None:
    g = two_gaussians
    projected = FrechetReference(g["mu_r"], g["sigma_r"]).project(
        gaussian(120, np.random.default_rng(2), g["mu_g"], g["root_g"])
    )
    fid = projected.distance()
    first = bootstrap_interval(projected.distance, 120, fid, replicates=20, seed=3)
    assert bootstrap_interval(projected.distance, 120, fid, replicates=20, seed=3) == first
    assert bootstrap_interval(projected.distance, 120, fid, replicates=20, seed=4) != first
    assert fid_infinity(projected.distance, 120, 5, seed=1) == fid_infinity(
        projected.distance, 120, 5, seed=1
    )
    assert fid_infinity(projected.distance, 120, 5, seed=1) != fid_infinity(
        projected.distance, 120, 5, seed=2
    )


def test_fid_infinity_sizes_are_distinct_and_checked() -> None:
    assert fid_infinity_sizes(50_000, 15)[:2] == [5000, 8214] and fid_infinity_sizes(50_000, 15)[-1] == 50_000
    sizes = fid_infinity_sizes(16, 15)
    assert len(set(sizes)) == 15 and sizes[0] == 2 and sizes[-1] == 16
    with pytest.raises(InvalidOption, match="needs N >= 16"):
        fid_infinity_sizes(15, 15)
