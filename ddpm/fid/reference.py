"""Reference statistics: mu and sigma of a dataset's training images, cached as pytorch-fid's .npz.

The cache is DATA_DIR/fid/reference/<key>.npz, the key naming everything that changes the numbers:
dataset (and folder path), image size, no flips, and the feature extractor with its preprocessing.
The file holds `mu` and `sigma` (what `python -m pytorch_fid` reads), plus `n` and `identity`.
A user-supplied .npz with `mu` (2048,) and `sigma` (2048, 2048) is accepted as well.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpm.data import check_dataset_name, load_dataset
from ddpm.errors import InvalidOption
from ddpm.fid.errors import FidUnavailable
from ddpm.fid.features import feature_statistics, inception_features
from ddpm.fid.options import FEATURE_DIMS
from ddpm.settings import fid_dir
from ddpm.storage import atomic_write

NATIVE_SIZES = {"cifar10": 32}  # datasets whose loader ignores image_size
MAX_IMAGE_SIZE = 1024


def extractor_tag() -> str:
    """The feature extractor and preprocessing: pytorch-fid's version, pool3, its bilinear 299 resize."""
    return f"pytorch-fid-{importlib.metadata.version('pytorch-fid')}-pool3-bilinear299"


@dataclass
class ReferenceStats:
    mu: np.ndarray
    sigma: np.ndarray
    identity: str  # dataset + preprocessing, stored with every FID
    path: Path
    n: int | None
    computed: bool = False  # True when this call computed (and cached) them


def reference_size(dataset: str, image_size: int) -> int:
    return NATIVE_SIZES.get(dataset, image_size)


def reference_key(dataset: str, image_size: int) -> str:
    """A file-name-safe cache key; folder datasets also carry a hash of their path."""
    check_dataset_name(dataset)
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int)
        or not 1 <= image_size <= MAX_IMAGE_SIZE
    ):
        raise InvalidOption(f"image size must be an integer in [1, {MAX_IMAGE_SIZE}], got {image_size!r}")
    slug = re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-")
    if dataset.startswith("folder:"):
        slug += "-" + hashlib.sha1(dataset.encode()).hexdigest()[:8]
    return f"{slug}-train-{reference_size(dataset, image_size)}px-noflip-{extractor_tag()}"


def reference_identity(dataset: str, image_size: int, n: int | None) -> str:
    size = reference_size(dataset, image_size)
    count = "" if n is None else f"{n} images, "
    return f"{dataset} training split ({count}{size}x{size}, no flips); {extractor_tag()}"


def reference_path(data_dir: Path, dataset: str, image_size: int) -> Path:
    return fid_dir(data_dir) / "reference" / f"{reference_key(dataset, image_size)}.npz"


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
    save_npz(path, mu, sigma, len(features), identity)
    return ReferenceStats(mu, sigma, identity, path, len(features), computed=True)
