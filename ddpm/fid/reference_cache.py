"""Where a data set's reference statistics live on the volume and what names them; torch-free.

The key names everything that changes the numbers: the data set (a folder's path hashed in), the image
size the images are loaded at, no flips, and the feature extractor with its preprocessing. The job plane
(one `fid_reference` job per key, jobs/fid_reference.py) and the API (GET /fid/reference) use this
module without loading torch; ddpm/fid/reference.py computes and reads the files.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ddpm.errors import InvalidOption
from ddpm.limits import check_dataset_name
from ddpm.settings import fid_dir

NATIVE_SIZES = {"cifar10": 32}  # datasets whose loader ignores image_size
MAX_IMAGE_SIZE = 1024
# The reference feature set for KID and precision/recall: all images up to this many, else a seeded
# subset of this size. 10,000 x 2048 float32 is 82 MB; KID subsets (1,000) and the k-NN manifolds of
# precision/recall are well inside it. Both numbers are in the cache file's name and in every result.
REFERENCE_FEATURES_MAX = 10_000
REFERENCE_FEATURES_SEED = 0
FEATURES_INFIX = "-features-max"


def extractor_tag() -> str:
    """The feature extractor and preprocessing: pytorch-fid's version, pool3, its bilinear 299 resize."""
    return f"pytorch-fid-{importlib.metadata.version('pytorch-fid')}-pool3-bilinear299"


def reference_size(dataset: str, image_size: int) -> int:
    return NATIVE_SIZES.get(dataset, image_size)


def check_image_size(image_size: object) -> int:
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int)
        or not 1 <= image_size <= MAX_IMAGE_SIZE
    ):
        raise InvalidOption(f"image size must be an integer in [1, {MAX_IMAGE_SIZE}], got {image_size!r}")
    return image_size


def reference_key(dataset: str, image_size: int) -> str:
    """A file-name-safe cache key; folder datasets also carry a hash of their path."""
    check_dataset_name(dataset)
    check_image_size(image_size)
    slug = re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-")
    if dataset.startswith("folder:"):
        slug += "-" + hashlib.sha1(dataset.encode()).hexdigest()[:8]
    return f"{slug}-train-{reference_size(dataset, image_size)}px-noflip-{extractor_tag()}"


def reference_identity(dataset: str, image_size: int, n: int | None) -> str:
    size = reference_size(dataset, image_size)
    count = "" if n is None else f"{n} images, "
    return f"{dataset} training split ({count}{size}x{size}, no flips); {extractor_tag()}"


def reference_dir(data_dir: Path) -> Path:
    return fid_dir(data_dir) / "reference"


def reference_path(data_dir: Path, dataset: str, image_size: int) -> Path:
    return reference_dir(data_dir) / f"{reference_key(dataset, image_size)}.npz"


def reference_features_path(data_dir: Path, dataset: str, image_size: int) -> Path:
    key = reference_key(dataset, image_size)
    name = f"{key}{FEATURES_INFIX}{REFERENCE_FEATURES_MAX}-seed{REFERENCE_FEATURES_SEED}.npz"
    return reference_dir(data_dir) / name


def is_cached(data_dir: Path, dataset: str, image_size: int) -> bool:
    """Whether the statistics file exists (the write is atomic: an existing file is a whole one)."""
    return reference_path(data_dir, dataset, image_size).is_file()


@dataclass(frozen=True)
class CachedReference:
    """One statistics file on the volume, as GET /fid/reference lists it."""

    key: str
    n: int | None
    identity: str | None
    bytes: int
    modified: float
    features: bool  # its feature set (KID, precision/recall) is cached beside it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cached_references(data_dir: Path) -> list[CachedReference]:
    """The statistics files on the volume, by key. Only the small `n` and `identity` members are read
    (an .npz member is decompressed on access), so listing does not load 32 MB covariances; a file that
    does not read is left out (the evaluator would not use it either)."""
    folder = reference_dir(data_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.npz")):
        if FEATURES_INFIX in path.name:
            continue
        n, identity = None, None
        try:
            with np.load(path, allow_pickle=False) as data:
                n = int(data["n"]) if "n" in data.files else None
                identity = str(data["identity"]) if "identity" in data.files else None
            stat = path.stat()
        except (OSError, ValueError, KeyError):
            continue  # vanished or unreadable: not a usable cache entry
        features = any(folder.glob(f"{path.stem}{FEATURES_INFIX}*.npz"))
        found.append(CachedReference(path.stem, n, identity, stat.st_size, stat.st_mtime, features))
    return found
