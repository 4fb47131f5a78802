"""The numbers of a classifier study, from class probabilities alone (numpy; scipy for chi-square tails).

For N images classified into K classes: the histogram of predicted classes beside the data set's own
class distribution, per-class mean confidence (the top probability) and the share of confident
predictions, the histogram's entropy (mode coverage; log K when every class is equally drawn), and how
far the histogram is from the data set's: total variation distance, with what a perfect sampler's N
draws would show (its null distribution, by seeded Monte Carlo), and a chi-square goodness-of-fit test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ddpm.seeding import STREAM_ANALYSIS, derive_seed

Z_95 = 1.959963984540054  # two-sided 95% normal quantile
NULL_DRAWS = 4000  # Monte Carlo draws of the null distribution of the total variation distance
MIN_EXPECTED = 5.0  # the usual rule of thumb for the chi-square approximation


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (sound near 0 and 1, unlike p +- z*se)."""
    if total <= 0:
        return (0.0, 1.0)
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def entropy(counts: Sequence[float]) -> float:
    """Shannon entropy (nats) of the distribution proportional to counts; 0 * log 0 = 0."""
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    if total <= 0:
        return 0.0
    p = values[values > 0] / total
    return max(0.0, float(-(p * np.log(p)).sum()))  # one class: -0.0 (or -1e-17) is reported as 0


def total_variation(p: Sequence[float], q: Sequence[float]) -> float:
    """Half the L1 distance of two distributions: the largest difference in probability of any event."""
    return float(0.5 * np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)).sum())


def null_total_variation(n: int, proportions: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """(mean, 95th percentile) of the total variation between the histogram of n draws from
    `proportions` and `proportions` itself: the distance sampling noise alone gives at this n."""
    q = np.asarray(proportions, dtype=np.float64)
    rng = np.random.default_rng(derive_seed(seed, STREAM_ANALYSIS, n))
    draws = rng.multinomial(n, q, size=NULL_DRAWS) / n
    distances = 0.5 * np.abs(draws - q).sum(axis=1)
    return float(distances.mean()), float(np.quantile(distances, 0.95))


def chi_square_fit(counts: Sequence[int], proportions: Sequence[float]) -> dict[str, Any]:
    """Pearson's goodness-of-fit test of observed counts against expected proportions."""
    from scipy.stats import chi2

    observed = np.asarray(counts, dtype=np.float64)
    expected = observed.sum() * np.asarray(proportions, dtype=np.float64)
    keep = expected > 0
    statistic = float((((observed - expected) ** 2)[keep] / expected[keep]).sum())
    dof = int(keep.sum()) - 1
    return {
        "statistic": statistic,
        "dof": dof,
        "p_value": float(chi2.sf(statistic, dof)) if dof > 0 else 1.0,
        "min_expected": float(expected[keep].min()) if keep.any() else 0.0,
    }


def summarise(
    probabilities: np.ndarray, class_names: Sequence[str], dataset_counts: Sequence[int], threshold: float
) -> dict[str, Any]:
    """Every number of an analysis from the (N, K) class probabilities of N images."""
    probs = np.asarray(probabilities, dtype=np.float64)
    n, k = probs.shape
    if k != len(class_names) or k != len(dataset_counts):
        raise ValueError(
            f"{k} probability columns for {len(class_names)} classes, {len(dataset_counts)} counts"
        )
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    confident = confidence >= threshold
    counts = np.bincount(predicted, minlength=k)
    reference = np.asarray(dataset_counts, dtype=np.float64) / float(sum(dataset_counts))
    classes = []
    for c, name in enumerate(class_names):
        mine = predicted == c
        low, high = wilson_interval(int(counts[c]), n)
        classes.append(
            {
                "name": name,
                "count": int(counts[c]),
                "share": float(counts[c] / n),
                "share_ci95": [low, high],
                "dataset_share": float(reference[c]),
                "mean_probability": float(probs[:, c].mean()),
                "mean_confidence": float(confidence[mine].mean()) if mine.any() else None,
                "confident": int((mine & confident).sum()),
                "confident_share": float(confident[mine].mean()) if mine.any() else None,
            }
        )
    null_mean, null_p95 = null_total_variation(n, reference)
    distance = total_variation(counts / n, reference)
    fit = chi_square_fit(counts.tolist(), reference.tolist())
    log_k = math.log(k)
    return {
        "n": n,
        "threshold": threshold,
        "classes": classes,
        "counts": counts.tolist(),
        "dataset_counts": [int(c) for c in dataset_counts],
        "confident": int(confident.sum()),
        "confident_share": float(confident.mean()),
        "confident_share_ci95": list(wilson_interval(int(confident.sum()), n)),
        "mean_confidence": float(confidence.mean()),
        "entropy": {
            "nats": entropy(counts),
            "normalised": entropy(counts) / log_k,
            "dataset_nats": entropy(dataset_counts),
            "dataset_normalised": entropy(dataset_counts) / log_k,
            "classes_present": int((counts > 0).sum()),
        },
        "divergence": {
            "total_variation": distance,
            "null_total_variation_mean": null_mean,
            "null_total_variation_p95": null_p95,
            "chi_square": fit["statistic"],
            "dof": fit["dof"],
            "p_value": fit["p_value"],
            "min_expected": fit["min_expected"],
        },
    }


def compare_counts(first: Sequence[int], second: Sequence[int]) -> dict[str, Any]:
    """How two analyses' histograms differ (two checkpoints, or one run's epochs): the total variation
    distance of their class shares and a chi-square test of homogeneity of the 2 x K table."""
    from scipy.stats import chi2

    a, b = np.asarray(first, np.float64), np.asarray(second, np.float64)
    if a.shape != b.shape or a.sum() <= 0 or b.sum() <= 0:
        raise ValueError("two non-empty histograms over the same classes are needed")
    table = np.stack([a, b])
    keep = table.sum(axis=0) > 0
    table = table[:, keep]
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    dof = table.shape[1] - 1
    return {
        "total_variation": total_variation(a / a.sum(), b / b.sum()),
        "chi_square": statistic,
        "dof": dof,
        "p_value": float(chi2.sf(statistic, dof)) if dof > 0 else 1.0,
        "min_expected": float(expected.min()),
    }
