"""Data sources: digits (real, offline), image folders, and CIFAR-10's missing-data error."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from ddpm.data import epoch_order, load_dataset, to_model_range, to_uint8
from ddpm.errors import DatasetUnavailable, InvalidOption
from tests.conftest import make_image_folder


def test_digits_are_real_32px_rgb_images(data_dir: Path) -> None:
    data = load_dataset("digits", data_dir)
    assert data.images.shape == (1797, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.images.min() == 0 and data.images.max() == 255
    assert torch.equal(data.images[:, 0], data.images[:, 2]), "grey digits as RGB"
    assert not data.default_flip, "mirrored digits are not digits"


def test_image_folder_is_cropped_and_resized(data_dir: Path) -> None:
    make_image_folder(data_dir / "datasets" / "mine", count=5, size=40)
    data = load_dataset("folder:mine", data_dir, image_size=64)
    assert data.images.shape == (5, 3, 64, 64) and data.default_flip


def test_class_labels_of_digits_and_folders(data_dir: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_dataset("digits", data_dir, image_size=8)
    assert digits.class_names == tuple(str(i) for i in range(10))
    assert digits.labels is not None and torch.equal(
        digits.labels, torch.from_numpy(load_digits().target).long()
    )
    make_image_folder(data_dir / "datasets" / "pets" / "dog", count=2, size=12)
    make_image_folder(data_dir / "datasets" / "pets" / "cat" / "inner", count=3, size=12)
    pets = load_dataset("folder:pets", data_dir, image_size=8)
    assert pets.class_names == ("cat", "dog") and pets.labels.tolist() == [0, 0, 0, 1, 1]
    make_image_folder(data_dir / "datasets" / "pets", count=1, size=12)  # an image outside any class folder
    assert load_dataset("folder:pets", data_dir, image_size=8).labels is None


def test_missing_or_empty_image_folder(data_dir: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        load_dataset("folder:nothing", data_dir)
    (data_dir / "datasets" / "empty").mkdir(parents=True)
    with pytest.raises(DatasetUnavailable, match="has no images"):
        load_dataset("folder:empty", data_dir)


def test_unknown_dataset_lists_the_valid_ones(data_dir: Path) -> None:
    with pytest.raises(
        InvalidOption, match="unknown dataset 'mnist'; valid: cifar10, digits, folder:<folder>"
    ):
        load_dataset("mnist", data_dir)


def test_missing_cifar10_with_downloads_off_says_what_to_do(data_dir: Path) -> None:
    with pytest.raises(DatasetUnavailable) as caught:
        load_dataset("cifar10", data_dir, download=False)
    message = str(caught.value)
    assert str(data_dir / "datasets" / "cifar10") in message
    assert "cifar-10-python.tar.gz" in message and "DDPM_DOWNLOAD" in message and "--download" in message


def test_cifar10_download_failure_is_explained(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", offline)
    with pytest.raises(DatasetUnavailable, match=r"download failed: URLError.*cifar-10-batches-py"):
        load_dataset("cifar10", data_dir, download=True)


def test_quantisation_round_trips_uint8_exactly() -> None:
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    assert torch.equal(to_uint8(to_model_range(pixels)), pixels)
    assert to_uint8(torch.tensor([-5.0, 5.0])).tolist() == [0, 255]


def test_epoch_order_is_a_seeded_permutation() -> None:
    order = epoch_order(50, seed=1, epoch=3)
    assert sorted(order.tolist()) == list(range(50))
    assert torch.equal(order, epoch_order(50, seed=1, epoch=3))
    assert not torch.equal(order, epoch_order(50, seed=1, epoch=4))
