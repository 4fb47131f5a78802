"""Reference statistics: mu and sigma of a dataset's training images, cached as pytorch-fid's .npz.

The cache is DATA_DIR/fid/reference/<key>.npz, the key naming everything that changes the numbers:
dataset (and folder path), image size, no flips, and the feature extractor with its preprocessing
(ddpm/fid/reference_cache.py, torch-free, names them). In the service they are computed once per key
by a `fid_reference` job that every FID job needing them waits on (docs/fid.md).
The file holds `mu` and `sigma` (what `python -m pytorch_fid` reads), plus `n` and `identity`.
A user-supplied .npz with `mu` (2048,) and `sigma` (2048, 2048) is accepted as well.

KID and precision/recall need the reference's features themselves, not only their mean and covariance:
a feature set is cached beside the statistics, <key>-features-max<M>-seed<S>.npz, holding all training
images' features when there are at most M (digits: 1,797) and a seeded subset of M otherwise
(CIFAR-10: 10,000 of 50,000), with the k-NN radii precision/recall needs. A computation of the
statistics writes both; a statistics file cached before feature sets existed gets its feature set
from one Inception pass over the subset's images when first needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpm.data import load_dataset
from ddpm.errors import InvalidOption
from ddpm.fid import reference_cache
from ddpm.fid.errors import FidUnavailable
from ddpm.fid.features import feature_statistics, inception_features
from ddpm.fid.metrics import knn_radii
from ddpm.fid.options import FEATURE_DIMS, PR_NEIGHBOURS
from ddpm.fid.reference_cache import (  # noqa: F401 (re-exported: the names' old home)
    MAX_IMAGE_SIZE,
    NATIVE_SIZES,
    REFERENCE_FEATURES_MAX,
    REFERENCE_FEATURES_SEED,
    extractor_tag,
    reference_features_path,
    reference_identity,
    reference_key,
    reference_path,
    reference_size,
)
from ddpm.storage import atomic_write


@dataclass
class ReferenceStats:
    mu: np.ndarray
    sigma: np.ndarray
    identity: str  # dataset + preprocessing, stored with every FID
    path: Path
    n: int | None
    computed: bool = False  # True when this call computed (and cached) them


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(mu, sigma, extra) from a pytorch-fid .npz; raises FidUnavailable / InvalidOption when unusable."""
    if not path.is_file():
        raise FidUnavailable(f"reference statistics {path} do not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
            extra = {key: data[key].item() for key in ("n", "identity") if key in data.files}
    except (OSError, ValueError, KeyError) as err:
        raise InvalidOption(
            f"{path} is not a pytorch-fid statistics file with `mu` and `sigma` ({type(err).__name__}: {err})"
        ) from err
    if mu.shape != (FEATURE_DIMS,) or sigma.shape != (FEATURE_DIMS, FEATURE_DIMS):
        raise InvalidOption(
            f"{path} holds mu {mu.shape} and sigma {sigma.shape}; pool3 statistics need "
            f"({FEATURE_DIMS},) and ({FEATURE_DIMS}, {FEATURE_DIMS})"
        )
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise InvalidOption(f"{path} holds non-finite statistics")
    return mu, sigma, extra


def save_npz(path: Path, mu: np.ndarray, sigma: np.ndarray, n: int, identity: str) -> None:
    def write(temp: Path) -> None:
        with temp.open("wb") as handle:  # a file object: np.savez would append .npz to a path
            np.savez_compressed(handle, mu=mu, sigma=sigma, n=np.int64(n), identity=np.str_(identity))

    atomic_write(path, write)


def user_reference(path: Path) -> ReferenceStats:
    mu, sigma, extra = load_npz(Path(path))
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    described = f"; {extra['identity']}" if "identity" in extra else ""
    n = int(extra["n"]) if "n" in extra else None
    return ReferenceStats(mu, sigma, f"file {Path(path).name} (sha256 {digest}){described}", Path(path), n)


@dataclass
class ReferenceFeatures:
    """The reference's feature rows (a subset when the dataset is large) and their k-NN radii."""

    features: np.ndarray  # (rows, 2048) float64
    radii: (
        np.ndarray | None
    )  # distance of each row to its PR_NEIGHBOURS-th nearest other row (None: too few rows)
    indices: np.ndarray  # which training images (ascending)
    total: int  # training images in the reference
    seed: int | None  # of the subset; None when every image is kept
    path: Path

    def summary(self) -> dict[str, Any]:
        """What results record about the feature set: its size, of how many, how chosen."""
        chosen = "all" if self.seed is None else f"seeded subset (seed {self.seed})"
        return {"n": len(self.features), "total": self.total, "seed": self.seed, "chosen": chosen}


def feature_subset(total: int) -> tuple[np.ndarray, int | None]:
    """The training images whose features are kept, ascending, and the seed that chose them (or None)."""
    most = reference_cache.REFERENCE_FEATURES_MAX  # read at call time: the file name carries it too
    if total <= most:
        return np.arange(total), None
    rng = np.random.default_rng(REFERENCE_FEATURES_SEED)
    return np.sort(rng.choice(total, most, replace=False)), REFERENCE_FEATURES_SEED


def save_reference_features(
    path: Path, features: np.ndarray, indices: np.ndarray, total: int, seed: int | None, identity: str
) -> ReferenceFeatures:
    """Write the feature set (float32 when that is lossless: the network computes in float32)."""
    radii = knn_radii(features, PR_NEIGHBOURS) if len(features) > PR_NEIGHBOURS else None
    single = features.astype(np.float32)
    stored = single if np.array_equal(single.astype(np.float64), features) else features

    def write(temp: Path) -> None:
        with temp.open("wb") as handle:
            np.savez(
                handle,
                features=stored,
                radii=np.empty(0) if radii is None else radii,
                k=np.int64(PR_NEIGHBOURS),
                indices=indices.astype(np.int64),
                total=np.int64(total),
                seed=np.int64(-1 if seed is None else seed),
                identity=np.str_(identity),
            )

    atomic_write(path, write)
    return ReferenceFeatures(features, radii, indices, total, seed, path)


def load_reference_features(path: Path, total: int | None) -> ReferenceFeatures | None:
    """The cached feature set, or None when absent, unreadable or not from `total` images.

    The file name carries the statistics' key (dataset, size, extractor) and the subset's rule, so
    only the image count can disagree: statistics recomputed from a changed folder.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["k"]) != PR_NEIGHBOURS or (total is not None and int(data["total"]) != total):
                return None
            seed, radii = int(data["seed"]), np.asarray(data["radii"], np.float64)
            return ReferenceFeatures(
                np.asarray(data["features"], np.float64),
                radii if radii.size else None,
                np.asarray(data["indices"]),
                int(data["total"]),
                None if seed < 0 else seed,
                path,
            )
    except (OSError, ValueError, KeyError):
        return None  # unreadable: computed again


def dataset_reference_features(
    dataset: str,
    data_dir: Path,
    image_size: int,
    model_loader: Callable[[], torch.nn.Module],
    device: torch.device | str = "cpu",
    batch_size: int = 50,
    progress: Callable[[int, int], None] | None = None,
) -> ReferenceFeatures:
    """The cached reference feature set; computed (one Inception pass over its images) when absent."""
    stats = reference_path(data_dir, dataset, image_size)
    total = load_npz(stats)[2].get("n") if stats.is_file() else None
    total = int(total) if total else None
    path = reference_features_path(data_dir, dataset, image_size)
    cached = load_reference_features(path, total)
    if cached is not None:
        return cached
    images = load_dataset(dataset, data_dir, image_size).images
    if total is not None and len(images) != total:
        raise FidUnavailable(
            f"{dataset} now has {len(images)} images but its cached statistics {stats.name} were computed "
            f"from {total}: recompute them (ddpm fid-reference --dataset {dataset} --refresh)"
        )
    indices, seed = feature_subset(len(images))
    features = inception_features(
        images[torch.from_numpy(indices)], model_loader(), batch_size, device, progress
    )
    identity = reference_identity(dataset, image_size, len(images))
    return save_reference_features(path, features, indices, len(images), seed, identity)


def dataset_reference(
    dataset: str,
    data_dir: Path,
    image_size: int,
    model_loader: Callable[[], torch.nn.Module],
    device: torch.device | str = "cpu",
    batch_size: int = 50,
    refresh: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReferenceStats:
    """The cached statistics of `dataset`, computing them (all training images) when absent."""
    path = reference_path(data_dir, dataset, image_size)
    if path.is_file() and not refresh:
        mu, sigma, extra = load_npz(path)
        n = int(extra["n"]) if "n" in extra else None
        if progress is not None and n:
            progress(n, n)
        return ReferenceStats(mu, sigma, reference_identity(dataset, image_size, n), path, n)
    images = load_dataset(dataset, data_dir, image_size).images  # DatasetUnavailable says how to get it
    features = inception_features(images, model_loader(), batch_size, device, progress)
    mu, sigma = feature_statistics(features)
    identity = reference_identity(dataset, image_size, len(features))
    # The feature set first: a statistics file is never newer than a feature set it should have had.
    indices, seed = feature_subset(len(features))
    save_reference_features(
        reference_features_path(data_dir, dataset, image_size),
        features[indices],
        indices,
        len(features),
        seed,
        identity,
    )
    save_npz(path, mu, sigma, len(features), identity)
    return ReferenceStats(mu, sigma, identity, path, len(features), computed=True)
