"""Shared FID fixtures: the Inception weights converted once into a temporary TORCH_HOME."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from ddpm.checkpoints import Checkpoint, save_checkpoint
from ddpm.fid.weights import WeightsStatus

# scipy's sqrtm on 2048x2048 (one per FID) runs 3-4x faster single-threaded when the CPU is
# oversubscribed (other test processes, torch's own threads); results are unaffected.
BLAS_THREADS = 1


@pytest.fixture(scope="session", autouse=True)
def _single_thread_blas() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(BLAS_THREADS, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def converted_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeightsStatus]:
    """Weights this session converted from the TorchScript (no download) into a temporary TORCH_HOME.

    The conversion itself runs the oracle on a fresh random input and refuses to write on failure.
    """
    from ddpm.fid.weights import ensure_weights

    home = tmp_path_factory.mktemp("torch_home")
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    try:
        status = ensure_weights(download=False)
        assert status.source == "converted" and status.path.is_file()
        yield status
    finally:
        if previous is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = previous


@pytest.fixture(scope="session")
def torch_home(converted_weights: WeightsStatus) -> Path:
    return converted_weights.path.parents[2]


@pytest.fixture(scope="session")
def inception(torch_home: Path) -> torch.nn.Module:
    """pytorch-fid's InceptionV3, loaded through torch hub from the converted file."""
    from ddpm.fid.features import load_inception

    return load_inception("cpu")


@pytest.fixture(scope="session")
def digits() -> torch.Tensor:
    from ddpm.data import load_digits

    return load_digits(32).images


def write_pngs(folder: Path, images: torch.Tensor) -> list[Path]:
    """uint8 (N, C, H, W) -> folder/00000.png ..., the way the sampling engine's PNGs store pixels: three
    channels as RGB, one (a grey data set's samples) as a grey PNG, which pytorch-fid reads as RGB."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"{index:05d}.png"
        pixels = image.permute(1, 2, 0).numpy()
        Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny baseline checkpoint with the metadata the training engine writes."""
    from ddpm.training import TrainConfig
    from models import build_model

    torch.manual_seed(0)
    config = TrainConfig(arch="baseline", dataset="digits", width=0.125, max_steps=1)
    model = build_model(config.arch, **config.model_options())
    meta = {
        "run_id": "tiny-fid",
        "arch": config.arch,
        "model_config": model.config.to_dict(),
        "train_config": config.to_dict(),
        "step": 1,
        "epoch": 1 / 450,
        "time": 0.0,
    }
    path = tmp_path_factory.mktemp("run") / "step-00000001.safetensors"
    save_checkpoint(path, Checkpoint(meta=meta, model=model.state_dict()))
    return path
