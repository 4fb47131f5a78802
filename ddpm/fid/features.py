"""Inception pool3 features and their statistics, computed as `python -m pytorch_fid` does.

pytorch-fid reads a PNG with PIL, converts it to RGB and applies ToTensor (uint8 / 255 as float32);
its InceptionV3 then resizes to 299x299 (bilinear) and scales to [-1, 1]. A PNG stores our uint8
pixels losslessly, so dividing the same uint8 tensor by 255 here gives the same network input
without writing files. Network, statistics and distance are pytorch-fid's own code; the network runs
with its batch norms folded and channels-last (ddpm/fid/inception.py), which moves its features by
about 1e-6 relative (tested within 1e-5) and the FID by less than 1e-6.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from pytorch_fid.inception import InceptionV3

from ddpm.errors import InvalidOption
from ddpm.fid.errors import FidUnavailable
from ddpm.fid.inception import FastInception
from ddpm.fid.options import FEATURE_DIMS
from ddpm.fid.weights import ensure_weights
from ddpm.model_cache import file_key, process_cache

Progress = Callable[[int, int], None]


def load_inception(device: torch.device | str = "cpu", fast: bool = True) -> torch.nn.Module:
    """pytorch-fid's FID InceptionV3 (pool3), its weights built offline first when missing: run on the
    fast path (`ddpm.fid.inception.FastInception`, features within 1e-5) or, `fast=False`, as it is."""
    weights = ensure_weights().path

    def load() -> tuple[torch.nn.Module, dict]:
        model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIMS]]).eval()
        return (FastInception(model) if fast else model).to(device).eval(), {}

    # Kept between jobs by a worker (ddpm/model_cache.py): loading and folding take seconds.
    return process_cache().get(file_key(weights, "inception", str(device), fast), load)[0]


def as_rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8; one channel is repeated, as PIL's convert('RGB') does for grey PNGs."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise InvalidOption(
            f"expected uint8 images (N, 1 or 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


@torch.inference_mode()
def inception_features(
    images: torch.Tensor,
    model: torch.nn.Module,
    batch_size: int = 50,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> np.ndarray:
    """(N, 2048) float64 pool3 features of uint8 images (pytorch-fid keeps them as float64 too)."""
    images = as_rgb_uint8(images)
    count = images.shape[0]
    features = np.empty((count, FEATURE_DIMS), dtype=np.float64)
    if progress is not None:  # the phase is named from its start, not after its first batch
        progress(0, count)
    for first in range(0, count, batch_size):
        batch = images[first : first + batch_size].to(device).to(torch.float32).div(255)  # = ToTensor()
        pred = model(batch)[0]
        features[first : first + batch.shape[0]] = pred.squeeze(3).squeeze(2).cpu().numpy()
        if progress is not None:
            progress(min(first + batch_size, count), count)
    return features


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) as pytorch-fid's calculate_activation_statistics computes them."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise InvalidOption(f"statistics need at least 2 feature rows, got shape {features.shape}")
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> tuple[float, list[str]]:
    """pytorch-fid's calculate_frechet_distance, and what it printed (its singular-product notice)."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
    except ValueError as err:  # "Imaginary component ...": sqrtm failed on near-singular covariances
        raise FidUnavailable(
            f"the Frechet distance is numerically undefined for these statistics ({err}); use more samples"
        ) from err
    notes = [line.strip() for line in printed.getvalue().splitlines() if line.strip()]
    # pytorch-fid 0.3.0 passes sqrtm's `disp`, deprecated since SciPy 1.17: not news for our users.
    notes += [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
    return float(value), notes
