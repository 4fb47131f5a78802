"""The reference feature set (KID, precision/recall) cached beside the reference statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm.errors import DatasetUnavailable
from ddpm.fid import reference as ref
from ddpm.fid import reference_cache
from ddpm.fid.metrics import knn_radii
from ddpm.fid.reference import (
    dataset_reference,
    dataset_reference_features,
    load_npz,
    reference_features_path,
    reference_path,
)
from tests.ddpm.fid.conftest import write_pngs


def _never() -> torch.nn.Module:
    raise AssertionError("Inception called: the cache was not used")


def test_statistics_and_feature_set_are_computed_together_then_reused(
    inception: torch.nn.Module, data_dir: Path, digits: torch.Tensor
) -> None:
    write_pngs(data_dir / "datasets" / "five", digits[:5])
    stats = dataset_reference("folder:five", data_dir, 32, lambda: inception, batch_size=5)
    path = reference_features_path(data_dir, "folder:five", 32)
    assert stats.computed and path.parent == reference_path(data_dir, "folder:five", 32).parent
    cached = dataset_reference_features("folder:five", data_dir, 32, _never)
    assert cached.summary() == {"n": 5, "total": 5, "seed": None, "chosen": "all"}
    # The same rows the statistics came from (float32 on disk is lossless: the network computes in it).
    mu, sigma, _ = load_npz(stats.path)
    assert np.array_equal(cached.features.mean(axis=0), mu)
    assert np.array_equal(cached.radii, knn_radii(cached.features, 3))
    assert cached.features.dtype == np.float64


def test_a_large_dataset_keeps_a_seeded_subset_and_old_caches_get_one_pass(
    inception: torch.nn.Module, data_dir: Path, digits: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reference_cache, "REFERENCE_FEATURES_MAX", 4)  # as CIFAR-10's 50,000 against 10,000
    images = digits[10:16]
    write_pngs(data_dir / "datasets" / "six", images)
    dataset_reference("folder:six", data_dir, 32, lambda: inception, batch_size=6)
    path = reference_features_path(data_dir, "folder:six", 32)
    assert "max4-seed0" in path.name
    first = dataset_reference_features("folder:six", data_dir, 32, _never)
    assert first.summary() == {"n": 4, "total": 6, "seed": 0, "chosen": "seeded subset (seed 0)"}
    assert first.indices.tolist() == sorted(first.indices.tolist()) and len(set(first.indices.tolist())) == 4

    # A statistics file cached before feature sets existed: the set is computed from its 4 images only.
    path.unlink()
    seen: list[tuple[int, int]] = []
    again = dataset_reference_features(
        "folder:six", data_dir, 32, lambda: inception, batch_size=4, progress=lambda *e: seen.append(e)
    )
    assert seen == [(0, 4), (4, 4)] and path.is_file()  # a phase reports from its start (0 of 4)
    # The same rows as the set computed with the statistics (features do not depend on the batch).
    assert np.array_equal(again.indices, first.indices) and np.array_equal(again.features, first.features)
    assert dataset_reference_features("folder:six", data_dir, 32, _never).summary() == first.summary()


def test_a_changed_folder_is_not_silently_mixed_with_old_statistics(
    inception: torch.nn.Module, data_dir: Path, digits: torch.Tensor
) -> None:
    folder = data_dir / "datasets" / "grows"
    write_pngs(folder, digits[:4])
    dataset_reference("folder:grows", data_dir, 32, lambda: inception, batch_size=4)
    reference_features_path(data_dir, "folder:grows", 32).unlink()
    write_pngs(folder, digits[:6])
    with pytest.raises(ref.FidUnavailable, match="now has 6 images .* computed from 4.*--refresh"):
        dataset_reference_features("folder:grows", data_dir, 32, lambda: inception)
    with pytest.raises(DatasetUnavailable):
        dataset_reference_features("folder:absent", data_dir, 32, lambda: inception)
