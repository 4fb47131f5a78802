"""Which data sets a training run can name, and whether their images are on the volume, without loading
any of them. Torch-free: the API lists them (GET /datasets) for the page's Train form.

Layout (ddpm/data.py reads the same): CIFAR-10 under DATA_DIR/datasets/cifar10 (torchvision's extracted
folder, or its archive placed there), the digits inside scikit-learn, and every other folder under
DATA_DIR/datasets as `folder:<name>`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ddpm.limits import FOLDER_PREFIX, GRAYSCALE_DATASETS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CIFAR10_FOLDER = "cifar10"  # under DATA_DIR/datasets
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_EXTRACTED = "cifar-10-batches-py"
CIFAR10_IMAGES = 50_000
DIGITS_IMAGES = 1_797
# A folder's images are counted up to this many: the listing stays quick on a volume of big folders.
MAX_COUNTED = 100_000


@dataclass(frozen=True)
class DatasetEntry:
    name: str  # what POST /train's `dataset` takes
    kind: str  # builtin or folder
    available: bool  # its images are on the volume (digits: always)
    grayscale: bool
    images: int | None  # how many (a folder's: counted up to MAX_COUNTED), None when not available
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def datasets_root(data_dir: Path) -> Path:
    return data_dir / "datasets"


def cifar10_present(data_dir: Path) -> bool:
    """The extracted batches or the archive (torchvision verifies and extracts it without network)."""
    root = datasets_root(data_dir) / CIFAR10_FOLDER
    return (root / CIFAR10_EXTRACTED / "data_batch_1").is_file() or (root / CIFAR10_ARCHIVE).is_file()


def count_images(folder: Path, limit: int = MAX_COUNTED) -> int:
    count = 0
    for path in folder.rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            count += 1
            if count >= limit:
                break
    return count


def list_datasets(data_dir: Path) -> list[DatasetEntry]:
    """The built-in data sets, then the folders under DATA_DIR/datasets by name (hidden ones and links
    left out: the API reads nothing outside the volume)."""
    cifar = cifar10_present(data_dir)
    entries = [
        DatasetEntry(
            name="cifar10",
            kind="builtin",
            available=cifar,
            grayscale="cifar10" in GRAYSCALE_DATASETS,
            images=CIFAR10_IMAGES if cifar else None,
            note="the report's data set, on the volume"
            if cifar
            else "not downloaded yet: a worker fetches it (163 MB) at its first run, unless DDPM_DOWNLOAD=0",
        ),
        DatasetEntry(
            name="digits",
            kind="builtin",
            available=True,
            grayscale="digits" in GRAYSCALE_DATASETS,
            images=DIGITS_IMAGES,
            note="scikit-learn's 8x8 handwritten digits, scaled to image_size; offline, minutes on a CPU",
        ),
    ]
    root = datasets_root(data_dir)
    folders = sorted(root.iterdir()) if root.is_dir() else []
    for folder in folders:
        if folder.name == CIFAR10_FOLDER or folder.name.startswith(".") or folder.is_symlink():
            continue
        if not folder.is_dir():
            continue
        images = count_images(folder)
        more = "+" if images >= MAX_COUNTED else ""
        entries.append(
            DatasetEntry(
                name=f"{FOLDER_PREFIX}{folder.name}",
                kind="folder",
                available=images > 0,
                grayscale=False,
                images=images,
                note=f"{images:,}{more} image{'' if images == 1 else 's'} in datasets/{folder.name}"
                if images
                else f"datasets/{folder.name} holds no images ({', '.join(IMAGE_SUFFIXES)})",
            )
        )
    return entries
