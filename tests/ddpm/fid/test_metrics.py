"""KID, precision/recall and the Inception Score against torch-fidelity's own metric functions.

torch-fidelity (a test dependency) is an independent public implementation; its KID functions are
adapted from the KID paper's code. Both sides get the same float64 features and the same seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from ddpm.fid import metrics
from ddpm.fid.metrics import inception_score, kid, knn_radii, precision_recall

DIMS = 2048  # pool3's width: the kernel's 1/d and the distances are those of real use


def pool3_like(rows: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Non-negative, correlated features at pool3's scale (means ~0.3, most variance in few directions)."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((rows, 64))
    mixing = np.random.default_rng(1234).standard_normal((64, DIMS)) * 0.15
    return np.abs(latent @ mixing + shift + 0.05 * rng.standard_normal((rows, DIMS)))


def _fidelity_kid(gen: np.ndarray, ref: np.ndarray, subsets: int, size: int, seed: int) -> dict:
    return kid_features_to_metric(
        torch.from_numpy(gen),
        torch.from_numpy(ref),
        kid_subsets=subsets,
        kid_subset_size=size,
        rng_seed=seed,
        verbose=False,
    )


@pytest.mark.parametrize("full_kernel", [True, False])
@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_kid_equals_torch_fidelity(monkeypatch: pytest.MonkeyPatch, full_kernel: bool, shift: float) -> None:
    if not full_kernel:  # the per-subset path, taken when all rows' kernel would not fit in memory
        monkeypatch.setattr(metrics, "KID_FULL_KERNEL_BYTES", 0)
    gen, ref = pool3_like(150, seed=1, shift=shift), pool3_like(200, seed=2)
    ours = kid(gen, ref, subsets=20, subset_size=100, seed=7)
    theirs = _fidelity_kid(gen, ref, 20, 100, 7)
    assert ours.mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6, abs=1e-12)
    assert ours.std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-6, abs=1e-12)
    assert (ours.subsets, ours.subset_size) == (20, 100)
    if shift:
        assert ours.mean > 3 * ours.std  # a shifted distribution is told apart


def test_kid_is_unbiased_for_equal_distributions() -> None:
    """Two samples of one distribution: the unbiased estimate scatters around 0 (a biased one would not)."""
    estimate = kid(pool3_like(300, seed=3), pool3_like(300, seed=4), subsets=50, subset_size=150, seed=0)
    assert abs(estimate.mean) < estimate.std


def test_kid_subset_size_is_checked() -> None:
    gen, ref = pool3_like(10, seed=1), pool3_like(20, seed=2)
    with pytest.raises(ValueError, match=r"\[2, 10\]"):
        kid(gen, ref, subsets=2, subset_size=11, seed=0)


@pytest.mark.parametrize("sizes", [(120, 200), (200, 120)])
def test_precision_recall_equal_torch_fidelity(sizes: tuple[int, int]) -> None:
    gen, ref = pool3_like(sizes[0], seed=5, shift=0.02), pool3_like(sizes[1], seed=6)
    ours = precision_recall(gen, ref, k=3)
    theirs = prc_features_to_metric(
        torch.from_numpy(gen), torch.from_numpy(ref), prc_neighborhood=3, prc_batch_size=10000, verbose=False
    )
    assert ours.precision == pytest.approx(theirs["precision"], abs=1e-6)
    assert ours.recall == pytest.approx(theirs["recall"], abs=1e-6)
    assert 0 < ours.precision < 1 and 0 < ours.recall < 1  # the test would be weak at 0 or 1
    assert ours.k == 3


def test_precision_recall_in_row_blocks_and_cached_radii(monkeypatch: pytest.MonkeyPatch) -> None:
    gen, ref = pool3_like(90, seed=8, shift=0.02), pool3_like(110, seed=9)
    whole = precision_recall(gen, ref, k=3)
    radii = knn_radii(ref, 3)
    monkeypatch.setattr(metrics, "BLOCK_BYTES", 8 * 110 * 7)  # 7 rows per block
    assert precision_recall(gen, ref, k=3, reference_radii=radii) == whole


def test_knn_radius_is_the_kth_other_point() -> None:
    points = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
    assert knn_radii(points, 1).tolist() == [1.0, 1.0, 2.0, 3.0, 4.0]
    assert knn_radii(points, 3).tolist() == [6.0, 5.0, 3.0, 5.0, 9.0]
    with pytest.raises(ValueError, match="more than k=5"):
        knn_radii(points, 5)


def test_precision_recall_of_disjoint_and_identical_sets() -> None:
    ref = pool3_like(50, seed=10)
    assert precision_recall(ref + 100.0, ref, k=3) == metrics.PrecisionRecall(0.0, 0.0, 3)
    assert precision_recall(ref.copy(), ref, k=3) == metrics.PrecisionRecall(1.0, 1.0, 3)


def test_inception_score_equals_torch_fidelity() -> None:
    logits = np.random.default_rng(11).standard_normal((103, 1008)) * 3.0
    ours = inception_score(logits, splits=10, seed=2020)
    theirs = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=True, rng_seed=2020)
    assert ours.mean == pytest.approx(theirs["inception_score_mean"], rel=1e-6)
    assert ours.std == pytest.approx(theirs["inception_score_std"], rel=1e-6)


def test_inception_score_bounds() -> None:
    """Confident and evenly spread classes give IS = number of classes; one class for all gives 1."""
    confident = np.full((40, 4), -50.0)
    confident[np.arange(40), np.arange(40) % 4] = 50.0
    assert inception_score(confident, splits=1, seed=0).mean == pytest.approx(4.0, rel=1e-9)
    assert inception_score(np.zeros((40, 4)), splits=2, seed=0).mean == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 10 samples"):
        inception_score(np.zeros((5, 4)), splits=10, seed=0)
