"""Sampling engine: seeded PNG grids that are byte-identical for identical inputs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.checkpoints import load_model
from ddpm.errors import InvalidOption
from ddpm.runs import RunDir
from ddpm.sampler_spec import SamplerSpec
from ddpm.sampling import generate_images, grid_png, grid_size, sample_checkpoint
from ddpm.training import TrainConfig, train
from tests.conftest import TINY_WIDTH


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pure_unet trained 2 steps on digits (16x16, grey: one channel), with EMA weights."""
    root = tmp_path_factory.mktemp("data")
    config = TrainConfig(
        arch="pure_unet",
        dataset="digits",
        width=TINY_WIDTH,
        batch_size=8,
        image_size=16,
        max_steps=2,
        ema=True,
    )
    train(config, root, run_id="s", device="cpu")
    return RunDir.of(root, "s").kept_checkpoints()[-1][1]


def _sample(checkpoint: Path, **options) -> bytes:
    args = dict(n=6, seed=0, sampler="ddim", steps=5, device="cpu")
    args.update(options)
    images, _ = sample_checkpoint(checkpoint, **args)
    return grid_png(images, nrow=4)


def test_same_inputs_give_identical_png_bytes(checkpoint: Path) -> None:
    assert _sample(checkpoint) == _sample(checkpoint)


def test_different_seeds_give_different_images(checkpoint: Path) -> None:
    assert _sample(checkpoint) != _sample(checkpoint, seed=1)


def test_batch_size_and_n_do_not_change_an_image(checkpoint: Path) -> None:
    full, _ = sample_checkpoint(checkpoint, n=6, seed=2, sampler="ddim", steps=5, device="cpu", batch_size=4)
    prefix, _ = sample_checkpoint(
        checkpoint, n=3, seed=2, sampler="ddim", steps=5, device="cpu", batch_size=3
    )
    assert torch.equal(full[:3], prefix)


def test_ddpm_sampler_runs_and_stochastic_ddim_differs_from_deterministic(checkpoint: Path) -> None:
    images, meta = sample_checkpoint(checkpoint, n=2, seed=0, sampler="ddpm", device="cpu")
    assert images.shape == (2, 1, 16, 16) and images.dtype == torch.uint8  # digits are grey
    assert meta["weights"] == "ema", "a run with EMA samples from the EMA weights"
    assert _sample(checkpoint, eta=1.0) != _sample(checkpoint, eta=0.0)


def test_grid_layout_matches_nrow(checkpoint: Path) -> None:
    png = _sample(checkpoint, n=6)
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == grid_size(6, 4, 16) == (4 * 18 + 2, 2 * 18 + 2)
        assert image.mode == "L"  # a grey model's grid is a grey PNG
    assert grid_size(80, 10) == (342, 274), "the report's 8x10 grid of 32x32 images"


def test_grid_pixels_are_the_images() -> None:
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).reshape(2, 3, 4, 4)
    with Image.open(io.BytesIO(grid_png(images, nrow=2, padding=1))) as image:
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    assert torch.equal(pixels[:, 1:5, 1:5], images[0]) and torch.equal(pixels[:, 1:5, 6:10], images[1])
    assert pixels[:, 0, :].sum() == 0, "padding is black"


def test_progress_counts_network_calls_across_batches(checkpoint: Path) -> None:
    seen: list[tuple[int, int]] = []
    model, _ = load_model(checkpoint)
    generate_images(
        model, 5, 0, "ddim", 3, batch_size=2, image_size=16, progress=lambda d, t: seen.append((d, t))
    )
    assert seen == [(i, 9) for i in range(1, 10)]


@pytest.mark.parametrize(
    "spec", [SamplerSpec("dpmpp_2m", 4), SamplerSpec("heun", 3, churn=5.0)], ids=lambda s: s.describe()
)
def test_fast_samplers_through_a_checkpoint(checkpoint: Path, spec: SamplerSpec) -> None:
    full, meta = sample_checkpoint(checkpoint, n=6, seed=2, sampler=spec, device="cpu", batch_size=4)
    prefix, _ = sample_checkpoint(checkpoint, n=3, seed=2, sampler=spec, device="cpu", batch_size=3)
    assert full.shape == (6, 1, 16, 16) and torch.equal(full[:3], prefix)
    seen: list[tuple[int, int]] = []
    model, _ = load_model(checkpoint)
    generate_images(model, 5, 0, spec, batch_size=2, image_size=16, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 3 * spec.nfe) for i in range(1, 3 * spec.nfe + 1)], "3 batches, every call counted"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n": 0}, "n must be an integer in"),
        ({"n": 10**6}, "n must be an integer in"),
        ({"sampler": "euler"}, "sampler 'euler' is not valid"),
        ({"steps": 0}, "steps must be an integer in"),
        ({"eta": -1.0}, "eta must be in"),
    ],
)
def test_bad_sampling_options_are_rejected(checkpoint: Path, options: dict, message: str) -> None:
    with pytest.raises(InvalidOption, match=message):
        _sample(checkpoint, **options)
