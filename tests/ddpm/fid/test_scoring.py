"""score_features: every metric at every N from one feature array (synthetic features, no network)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pytorch_fid.fid_score import calculate_frechet_distance

from ddpm.errors import InvalidOption
from ddpm.fid.metrics import inception_score, kid, knn_radii, precision_recall
from ddpm.fid.options import METRICS, MetricOptions
from ddpm.fid.reference import ReferenceFeatures
from ddpm.fid.scoring import LEGACY_SEED_RANGE, score_features
from ddpm.seeding import STREAM_IS_SHUFFLE, STREAM_KID_SUBSETS, derive_seed

DIMS = 64  # pytorch-fid's headline sqrtm runs per N; 2048 is exercised end to end in test_evaluate


def features(rows: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(42).standard_normal((16, DIMS)) * 0.3
    return np.abs(rng.standard_normal((rows, 16)) @ mixing + shift + 0.05 * rng.standard_normal((rows, DIMS)))


@pytest.fixture(scope="module")
def reference() -> ReferenceFeatures:
    rows = features(300, seed=1)
    return ReferenceFeatures(rows, knn_radii(rows, 3), np.arange(300), 300, None, Path("ref.npz"))


def _score(generated: np.ndarray, counts: list[int], reference: ReferenceFeatures, **kwargs):  # type: ignore[no-untyped-def]
    mu, sigma = reference.features.mean(axis=0), np.cov(reference.features, rowvar=False)
    return score_features(generated, counts, mu, sigma, reference_features=reference, **kwargs)


def test_every_metric_at_every_n(reference: ReferenceFeatures) -> None:
    generated = features(200, seed=2, shift=0.1)
    classifier = np.random.default_rng(3).standard_normal((12, DIMS))
    options = MetricOptions(kid_subsets=10, bootstrap=10, fid_inf_points=5, seed=4)
    scoring = _score(generated, [50, 200], reference, options=options, classifier=classifier)
    assert list(scoring.scores) == [50, 200] and scoring.unavailable == {}
    mu_r, sigma_r = reference.features.mean(axis=0), np.cov(reference.features, rowvar=False)
    for n, row in scoring.scores.items():
        rows = generated[:n]
        # The headline is pytorch-fid's own number on the first N rows.
        assert row.fid == calculate_frechet_distance(
            rows.mean(axis=0), np.cov(rows, rowvar=False), mu_r, sigma_r
        )
        assert row.fid_interval is not None and row.fid_interval.low < row.fid < row.fid_interval.high
        assert row.fid_inf is not None and len(row.fid_inf.points) == 5 and row.fid_inf.points[-1][0] == n
        assert row.fid_inf.points[-1][1] == pytest.approx(row.fid, rel=1e-6)  # all n rows: the same FID
        kid_seed = derive_seed(4, STREAM_KID_SUBSETS, n) % LEGACY_SEED_RANGE
        assert row.kid == kid(rows, reference.features, 10, min(n // 2, 150), kid_seed)
        assert row.precision_recall == precision_recall(rows, reference.features, 3)
        is_seed = derive_seed(4, STREAM_IS_SHUFFLE, n) % LEGACY_SEED_RANGE
        assert row.inception_score == inception_score(rows @ classifier.T, 10, is_seed)
        assert any("rank-deficient" in w for w in row.warnings)  # 64 dims here, but the rule is pool3's
    assert set(scoring.timings) == {"fast_frechet_setup", "statistics", *METRICS} - {"fid"} | {"frechet"}
    assert scoring.warnings == [w for row in scoring.scores.values() for w in row.warnings]


def test_seeded_and_independent_of_other_n(reference: ReferenceFeatures) -> None:
    generated = features(120, seed=5, shift=0.1)
    options = MetricOptions(metrics=("fid_interval", "kid"), kid_subsets=5, bootstrap=5)
    both = _score(generated, [40, 120], reference, options=options)
    alone = _score(generated, [40], reference, options=options)
    assert both.scores[40] == alone.scores[40]  # adding an N changes nothing at the others
    other_seed = _score(generated, [40], reference, options=replace(options, seed=1))
    assert other_seed.scores[40].kid != alone.scores[40].kid
    assert other_seed.scores[40].fid == alone.scores[40].fid


def test_missing_inputs_are_reported_not_guessed(reference: ReferenceFeatures) -> None:
    generated = features(30, seed=6)
    mu, sigma = reference.features.mean(axis=0), np.cov(reference.features, rowvar=False)
    scoring = score_features(
        generated,
        [8, 30],
        mu,
        sigma,
        MetricOptions(bootstrap=5, fid_inf_points=3),
        unavailable={"inception_score": "the weights have no classifier head"},
    )
    assert scoring.unavailable == {
        "inception_score": "the weights have no classifier head",
        "kid": "no reference feature set was given",
        "precision_recall": "no reference feature set was given",
    }
    row = scoring.scores[8]
    assert row.kid is None and row.precision_recall is None and row.inception_score is None
    assert row.fid_interval is not None and row.fid_inf is not None  # mu and sigma are enough for these
    few = ReferenceFeatures(reference.features[:3], None, np.arange(3), 3, None, Path("three.npz"))
    scoring = score_features(generated, [30], mu, sigma, MetricOptions(bootstrap=5), few)
    assert "more than k=3" in scoring.unavailable["precision_recall"] and scoring.scores[30].kid is not None


def test_default_metrics_skip_small_n_with_a_note(reference: ReferenceFeatures) -> None:
    scoring = _score(features(12, seed=7), [4, 12], reference, options=MetricOptions(bootstrap=5))
    assert scoring.scores[4].fid_inf is None and scoring.scores[12].fid_inf is None
    assert scoring.scores[4].precision_recall is not None  # k=3 needs N >= 4
    assert any(w.startswith("N=4: fid_inf skipped: it needs N >= 16") for w in scoring.scores[4].warnings)
    with pytest.raises(InvalidOption, match="fid_inf needs N >= 16"):
        _score(features(12, seed=7), [12], reference, options=MetricOptions(metrics=("fid_inf",)))
