"""In-memory features and statistics equal pytorch-fid's own path through PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import get_activations
from torchvision.models.inception import BasicConv2d

from ddpm.errors import InvalidOption
from ddpm.fid.features import as_rgb_uint8, feature_statistics, inception_features, load_inception
from ddpm.fid.inception import FastInception
from ddpm.fid.inception_blocks import ConvRelu
from tests.ddpm.fid.conftest import write_pngs

COUNT = 6  # Inception at 299x299 runs a few images/s on two CPU cores


@pytest.fixture(scope="module")
def pngs(digits: torch.Tensor, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_pngs(tmp_path_factory.mktemp("pngs"), digits[:COUNT])


@pytest.fixture(scope="module")
def ours(inception: torch.nn.Module, digits: torch.Tensor) -> np.ndarray:
    return inception_features(digits[:COUNT], inception, batch_size=COUNT)


@pytest.fixture(scope="module")
def plain_inception(torch_home: Path) -> torch.nn.Module:
    """pytorch-fid's network called as it is (no folding, NCHW)."""
    return load_inception("cpu", fast=False)


def test_features_equal_pytorch_fid_reading_pngs(
    plain_inception: torch.nn.Module, pngs: list[Path], ours: np.ndarray, digits: torch.Tensor
) -> None:
    theirs = get_activations(pngs, plain_inception, batch_size=COUNT, dims=2048, device="cpu", num_workers=0)
    assert ours.dtype == theirs.dtype == np.float64 and ours.shape == theirs.shape == (COUNT, 2048)
    # Same uint8 pixels, same division, same network and batch: the plain network gives the same floats.
    plain = inception_features(digits[:COUNT], plain_inception, batch_size=COUNT)
    assert np.array_equal(plain, theirs)
    # The fast path (folded batch norms, channels-last) moves each row by about 1e-6, never 1e-5.
    row_error = np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    assert row_error.max() < 1e-5, row_error


def test_fast_inception_folds_every_batch_norm(inception: torch.nn.Module) -> None:
    assert isinstance(inception, FastInception) and inception.folded == 94  # the TF graph's 94 convs
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in inception.modules())
    conv = next(m for m in inception.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    # Every convolution runs with its relu fused (ddpm/fid/inception_blocks.py); none is left unconverted.
    assert sum(isinstance(m, ConvRelu) for m in inception.modules()) == 94
    assert not any(isinstance(m, BasicConv2d) for m in inception.modules())


def test_batch_size_does_not_change_features(
    inception: torch.nn.Module, digits: torch.Tensor, ours: np.ndarray
) -> None:
    progress: list[tuple[int, int]] = []
    other = inception_features(
        digits[:4], inception, batch_size=3, progress=lambda d, t: progress.append((d, t))
    )
    assert progress == [(0, 4), (3, 4), (4, 4)]  # named from its start, then after each batch
    np.testing.assert_allclose(other, ours[:4], rtol=1e-4, atol=1e-5)  # CPU kernels may round per batch


def test_grey_images_are_repeated_like_pil_convert_rgb() -> None:
    grey = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    rgb = as_rgb_uint8(grey)
    assert rgb.shape == (2, 3, 4, 4) and all(torch.equal(rgb[:, c], grey[:, 0]) for c in range(3))


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(2, 3, 8, 8),
        torch.zeros(3, 8, 8, dtype=torch.uint8),
        torch.zeros(2, 4, 8, 8, dtype=torch.uint8),
    ],
)
def test_bad_image_tensors_are_refused(bad: torch.Tensor) -> None:
    with pytest.raises(InvalidOption, match="uint8"):
        as_rgb_uint8(bad)


def test_statistics_need_two_rows() -> None:
    with pytest.raises(InvalidOption, match="at least 2"):
        feature_statistics(np.zeros((1, 2048)))
