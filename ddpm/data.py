"""Training data as in-memory uint8 image tensors (N, 3, H, W).

Sources: CIFAR-10 through torchvision (the report's), scikit-learn's bundled digits (real, offline),
and a folder of images. Batching and flips are done by the training loop with its own generator, so
a run resumes exactly where it stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ddpm.dataset_catalog import CIFAR10_ARCHIVE, IMAGE_SUFFIXES
from ddpm.errors import DatasetUnavailable
from ddpm.limits import (  # noqa: F401 (re-exported)
    BUILTIN_DATASETS,
    FOLDER_PREFIX,
    check_dataset_name,
    dataset_choices,
)
from ddpm.seeding import STREAM_EPOCH_ORDER, derive_seed

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


@dataclass(frozen=True)
class ImageSet:
    name: str
    images: torch.Tensor  # uint8, (N, 3, H, W)
    default_flip: bool  # random horizontal flips suit natural images, not digits
    # Class labels (int64, (N,)) indexing class_names, for the classifier study; None when the source
    # has none (a folder with images outside class subfolders).
    labels: torch.Tensor | None = None
    class_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]


def download_allowed() -> bool:
    """DDPM_DOWNLOAD=0 forbids network downloads (air-gapped GPU boxes); allowed by default."""
    return os.environ.get("DDPM_DOWNLOAD", "1").strip().lower() not in ("0", "false", "no", "off")


def load_dataset(spec: str, data_dir: Path, image_size: int = 32, download: bool | None = None) -> ImageSet:
    """Load `cifar10`, `digits` or `folder:<path>` (relative paths resolve under DATA_DIR/datasets)."""
    check_dataset_name(spec)
    download = download_allowed() if download is None else download
    if spec == "cifar10":
        return load_cifar10(data_dir / "datasets" / "cifar10", download)
    if spec == "digits":
        return load_digits(image_size)
    folder = Path(spec[len(FOLDER_PREFIX) :])
    if not folder.is_absolute():
        folder = data_dir / "datasets" / folder
    return load_image_folder(folder, image_size)


def load_cifar10(root: Path, download: bool) -> ImageSet:
    """The 50,000 CIFAR-10 training images via torchvision (which checks the files' MD5s)."""
    from torchvision.datasets import CIFAR10

    root.mkdir(parents=True, exist_ok=True)
    placed_archive = (root / CIFAR10_ARCHIVE).exists()
    try:
        # A placed archive is verified and extracted by torchvision's download path without network.
        dataset = CIFAR10(str(root), train=True, download=download or placed_archive)
    except Exception as err:  # torchvision raises RuntimeError when absent, URLError/OSError offline
        how = (
            "the download failed"
            if download
            else "downloads are off (DDPM_DOWNLOAD=0; unset it or pass --download to fetch it)"
        )
        raise DatasetUnavailable(
            f"CIFAR-10 is not in {root} and {how}: {type(err).__name__}: {err}. "
            f"Put {CIFAR10_ARCHIVE} ({CIFAR10_URL}) or its extracted cifar-10-batches-py/ folder in {root}, "
            f"or run where the download can reach the network. For an offline smoke test use --dataset digits."
        ) from err
    images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(dataset.targets, dtype=torch.long)
    return ImageSet("cifar10", images, default_flip=True, labels=labels, class_names=tuple(dataset.classes))


def load_digits(image_size: int = 32) -> ImageSet:
    """scikit-learn's 1,797 real 8x8 handwritten digits, upscaled (bilinear) to RGB image_size^2."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    raw = torch.from_numpy(bunch.images).float() / 16.0  # (N, 8, 8) in [0, 1], ink bright
    big = F.interpolate(raw[:, None], size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (big.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(bunch.target).long()
    names = tuple(str(name) for name in bunch.target_names)
    return ImageSet("digits", images, default_flip=False, labels=labels, class_names=names)


def grey(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, H, W): the mean of the channels (exact for digits, whose three channels are equal)."""
    if images.shape[1] == 1:
        return images
    return images.float().mean(1, keepdim=True).round().to(torch.uint8)


def load_image_folder(folder: Path, image_size: int) -> ImageSet:
    """Every image under `folder` (recursively), centre-cropped to a square and resized to image_size."""
    from PIL import Image

    if not folder.is_dir():
        raise DatasetUnavailable(f"image folder {folder} does not exist; create it and put images in it")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetUnavailable(f"image folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
    arrays = []
    for path in files:
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                side = min(img.size)
                left, top = (img.width - side) // 2, (img.height - side) // 2
                img = img.crop((left, top, left + side, top + side))
                img = img.resize((image_size, image_size), Image.Resampling.BICUBIC)
                arrays.append(np.asarray(img, dtype=np.uint8))
        except OSError as err:
            raise DatasetUnavailable(f"cannot read image {path}: {err}") from err
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels, names = _folder_classes(folder, files)
    return ImageSet(
        f"{FOLDER_PREFIX}{folder.name}", images, default_flip=True, labels=labels, class_names=names
    )


def _folder_classes(folder: Path, files: list[Path]) -> tuple[torch.Tensor | None, tuple[str, ...]]:
    """torchvision ImageFolder's convention: an image's class is its first subfolder under `folder`,
    classes sorted by name. No labels when any image sits directly in `folder`."""
    parts = [path.relative_to(folder).parts for path in files]
    if any(len(part) < 2 for part in parts):
        return None, ()
    names = tuple(sorted({part[0] for part in parts}))
    index = {name: i for i, name in enumerate(names)}
    return torch.tensor([index[part[0]] for part in parts], dtype=torch.long), names


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (the report's ToTensor + Normalize(0.5, 0.5))."""
    return images.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 with round-to-nearest; the one quantisation used for PNGs and FID."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch `epoch`: a pure function of (seed, epoch), so resume needs no state."""
    generator = torch.Generator().manual_seed(derive_seed(seed, STREAM_EPOCH_ORDER, epoch))
    return torch.randperm(n, generator=generator)
