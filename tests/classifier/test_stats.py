"""The study's numbers against oracles: scipy's tests, textbook intervals, analytic entropies; the split."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from ddpm.classifier.split import holdout_split, indices_digest
from ddpm.classifier.stats import (
    chi_square_fit,
    compare_counts,
    entropy,
    null_total_variation,
    summarise,
    total_variation,
    wilson_interval,
)


def test_chi_square_fit_matches_scipy() -> None:
    counts = [30, 12, 25, 8, 25]
    proportions = [0.3, 0.1, 0.2, 0.2, 0.2]
    expected = scipy.stats.chisquare(counts, f_exp=np.array(proportions) * sum(counts))
    fit = chi_square_fit(counts, proportions)
    assert fit["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert fit["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert fit["dof"] == 4 and fit["min_expected"] == pytest.approx(10.0)


def test_compare_counts_matches_scipy_contingency_without_correction() -> None:
    first, second = [40, 10, 30, 0, 20], [25, 25, 25, 0, 25]
    statistic, p_value, dof, expected = scipy.stats.chi2_contingency(
        np.array([[40, 10, 30, 20], [25, 25, 25, 25]]), correction=False
    )
    result = compare_counts(first, second)
    assert result["chi_square"] == pytest.approx(statistic, rel=1e-12)
    assert result["p_value"] == pytest.approx(p_value, rel=1e-9)
    assert result["dof"] == dof == 3  # the class neither drew is dropped
    assert result["min_expected"] == pytest.approx(expected.min())
    assert result["total_variation"] == pytest.approx(0.5 * (0.15 + 0.15 + 0.05 + 0.05))


@pytest.mark.parametrize(
    "successes, total, low, high",
    # 81/263: the worked example of Newcombe (1998), Stat. Med. 17:857 (its Wilson score interval).
    [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (81, 263, 0.2553, 0.3662)],
)
def test_wilson_interval_textbook_values(successes: int, total: int, low: float, high: float) -> None:
    interval = wilson_interval(successes, total)
    assert interval == pytest.approx((low, high), abs=5e-5)


def test_entropy_and_total_variation_analytic() -> None:
    assert entropy([7] * 10) == pytest.approx(math.log(10))
    assert entropy([5, 0, 0]) == 0.0 and str(entropy([5, 0, 0])) == "0.0", "not -0.0"
    assert entropy([1, 1, 2]) == pytest.approx(-(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5)))
    assert total_variation([1, 0], [0, 1]) == 1.0
    assert total_variation([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_null_total_variation_shrinks_like_one_over_root_n_and_is_seeded() -> None:
    uniform = [0.1] * 10
    small, large = null_total_variation(100, uniform), null_total_variation(1600, uniform)
    assert small == null_total_variation(100, uniform)
    assert 0 < small[0] < small[1] and 0 < large[0] < large[1]
    assert small[0] / large[0] == pytest.approx(4.0, rel=0.05)  # sqrt(1600 / 100)
    # Normal approximation: E|p_hat - q| = sqrt(2 q (1 - q) / (pi n)) per class.
    assert large[0] == pytest.approx(0.5 * 10 * math.sqrt(2 * 0.09 / (math.pi * 1600)), rel=0.03)


def test_summarise_counts_confidence_and_confident_shares() -> None:
    probabilities = np.array(
        [[0.95, 0.05, 0.0], [0.6, 0.3, 0.1], [0.1, 0.85, 0.05], [0.0, 0.05, 0.95], [0.2, 0.1, 0.7]]
    )
    summary = summarise(probabilities, ["a", "b", "c"], [10, 10, 20], threshold=0.9)
    assert summary["counts"] == [2, 1, 2] and summary["n"] == 5
    a, b, c = summary["classes"]
    assert a["mean_confidence"] == pytest.approx((0.95 + 0.6) / 2) and a["confident_share"] == 0.5
    assert b["confident"] == 0 and b["confident_share"] == 0.0
    assert c["dataset_share"] == 0.5 and c["mean_probability"] == pytest.approx(1.8 / 5)
    assert summary["confident"] == 2 and summary["confident_share"] == pytest.approx(0.4)
    assert summary["entropy"]["classes_present"] == 3
    assert summary["entropy"]["normalised"] == pytest.approx(entropy([2, 1, 2]) / math.log(3))
    assert summary["divergence"]["total_variation"] == pytest.approx(0.5 * (0.15 + 0.05 + 0.1))


def test_summarise_of_a_class_never_predicted() -> None:
    summary = summarise(np.array([[0.9, 0.1]] * 10), ["x", "y"], [5, 5], threshold=0.5)
    assert summary["classes"][1]["count"] == 0
    assert (
        summary["classes"][1]["mean_confidence"] is None and summary["classes"][1]["confident_share"] is None
    )
    assert summary["entropy"]["nats"] == 0.0 and summary["divergence"]["total_variation"] == 0.5


def test_holdout_split_is_stratified_disjoint_and_seeded() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 20, 3])
    train, held = holdout_split(labels, 0.2, seed=7)
    assert len(np.intersect1d(train, held)) == 0 and len(train) + len(held) == len(labels)
    assert np.bincount(labels[held], minlength=4).tolist() == [10, 6, 4, 1]  # round(0.2 n), at least 1
    again_train, again_held = holdout_split(labels, 0.2, seed=7)
    assert np.array_equal(held, again_held) and np.array_equal(train, again_train)
    other = holdout_split(labels, 0.2, seed=8)[1]
    assert not np.array_equal(held, other) and indices_digest(held) != indices_digest(other)
    assert np.all(np.diff(held) > 0)
