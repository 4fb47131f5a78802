"""KID, precision and recall, and the Inception Score, from feature arrays (numpy only, no network).

- KID (Binkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimator of MMD^2 with the
  cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets of equal size drawn
  without replacement from each set; reported as the mean and the standard deviation over subsets.
  Subsets are drawn as the paper's code and torch-fidelity draw them (numpy RandomState(seed).choice,
  generated then reference, per subset), so a seed selects the same subsets in all three.
- Precision and recall (Kynkaanniemi et al. 2019): each set's manifold is the union of balls around
  its points with radius the distance to the point's k-th nearest neighbour in its own set (k = 3).
  Precision is the fraction of generated points inside the reference manifold; recall the fraction of
  reference points inside the generated manifold.
- Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) over splits of the samples, from
  the classifier's logits; torch-fidelity's convention (seeded shuffle, then equal splits).

tests/ddpm/fid/test_metrics.py checks each against torch-fidelity's functions on the same features.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ddpm.fid.score_types import InceptionScore, KidEstimate, PrecisionRecall

# Memory for one block of a pairwise matrix (float64): distances are computed in row blocks this big.
BLOCK_BYTES = 256 * 1024 * 1024
# KID computes the kernel of all rows at once when that matrix fits in this many bytes, else per subset.
KID_FULL_KERNEL_BYTES = 1024 * 1024 * 1024


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel (x.y / d + 1)^3, d the feature dimension."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """The unbiased MMD^2 estimate from kernel matrices of m x-rows and n y-rows (diagonals excluded)."""
    m, n = k_xy.shape
    if m < 2 or n < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 rows on each side, got {m} and {n}")
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.sum() / (m * n))


def kid(
    generated: np.ndarray, reference: np.ndarray, subsets: int, subset_size: int, seed: int
) -> KidEstimate:
    """KID of generated against reference features: mean and std of MMD^2 over seeded subsets."""
    n_gen, n_ref = len(generated), len(reference)
    if not 2 <= subset_size <= min(n_gen, n_ref):
        raise ValueError(
            f"KID subset size {subset_size} must be in [2, {min(n_gen, n_ref)}] "
            f"(the smaller of {n_gen} generated and {n_ref} reference rows)"
        )
    rng = np.random.RandomState(seed)
    draws = [
        (rng.choice(n_gen, subset_size, replace=False), rng.choice(n_ref, subset_size, replace=False))
        for _ in range(subsets)
    ]
    if (n_gen + n_ref) ** 2 * 8 <= KID_FULL_KERNEL_BYTES:
        # Every subset's kernel is a block of the kernel of all rows: one product instead of 3 per subset.
        full = polynomial_kernel(
            np.concatenate([generated, reference]), np.concatenate([generated, reference])
        )
        values = [
            mmd2_unbiased(full[np.ix_(g, g)], full[np.ix_(n_gen + r, n_gen + r)], full[np.ix_(g, n_gen + r)])
            for g, r in draws
        ]
    else:
        values = []
        for g, r in draws:
            x, y = generated[g], reference[r]
            values.append(
                mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))
            )
    return KidEstimate(float(np.mean(values)), float(np.std(values)), subsets, subset_size)


def _row_blocks(rows: int, columns: int) -> Iterator[slice]:
    step = max(1, BLOCK_BYTES // (8 * max(columns, 1)))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of x and of y."""
    squared = (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :] - 2.0 * (x @ y.T)
    return np.sqrt(np.clip(squared, 0.0, None))


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Per row, the distance to its k-th nearest other row (the (k+1)-th smallest, counting itself)."""
    if not 1 <= k < len(features):
        raise ValueError(f"k-th neighbours need more than k={k} rows, got {len(features)}")
    radii = np.empty(len(features))
    for block in _row_blocks(len(features), len(features)):
        distances = pairwise_distances(features[block], features)
        radii[block] = np.partition(distances, k, axis=1)[:, k]
    return radii


def precision_recall(
    generated: np.ndarray,
    reference: np.ndarray,
    k: int,
    reference_radii: np.ndarray | None = None,
) -> PrecisionRecall:
    """Improved precision and recall with k-NN manifolds; pass cached reference radii to skip their pass."""
    generated_radii = knn_radii(generated, k)
    if reference_radii is None:
        reference_radii = knn_radii(reference, k)
    elif reference_radii.shape != (len(reference),):
        raise ValueError(f"{reference_radii.shape} reference radii for {len(reference)} reference rows")
    inside_reference = np.zeros(len(generated), dtype=bool)  # precision: generated point covered
    covered_reference = np.zeros(len(reference), dtype=bool)  # recall: reference point covered
    for block in _row_blocks(len(generated), len(reference)):
        distances = pairwise_distances(generated[block], reference)
        inside_reference[block] = (distances <= reference_radii[None, :]).any(axis=1)
        covered_reference |= (distances <= generated_radii[block, None]).any(axis=0)
    return PrecisionRecall(float(inside_reference.mean()), float(covered_reference.mean()), k)


def inception_score(logits: np.ndarray, splits: int, seed: int) -> InceptionScore:
    """IS from classifier logits: rows shuffled (seeded), cut into `splits` parts, exp(mean KL) each."""
    count = len(logits)
    if not 1 <= splits <= count:
        raise ValueError(
            f"the Inception Score needs at least {splits} samples for {splits} splits, got {count}"
        )
    shuffled = np.asarray(logits, dtype=np.float64)[np.random.RandomState(seed).permutation(count)]
    log_p = shuffled - shuffled.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        part = slice(i * count // splits, (i + 1) * count // splits)
        log_marginal = np.log(p[part].mean(axis=0, keepdims=True))
        kl = (p[part] * (log_p[part] - log_marginal)).sum(axis=1).mean()
        scores.append(float(np.exp(kl)))
    return InceptionScore(float(np.mean(scores)), float(np.std(scores)), splits)
