"""The fast path: same numbers as the eager network, and each image independent of its batch."""

from __future__ import annotations

import pytest
import torch

import models
from ddpm.fastpath import BATCH_MULTIPLE, EAGER, FastPath, InferenceRunner, sampling_path, training_path
from ddpm.sampler_spec import SamplerSpec
from ddpm.sampling import generate_images, generate_many
from tests.conftest import TINY_WIDTH


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("arch", ["baseline", "convnext", "biggan", "rdn"])
def test_each_row_is_the_same_bits_whatever_the_batch(arch: str, threads: int) -> None:
    """The sampling path on CPU: any batch size, any position in the batch, one or two threads."""
    torch.manual_seed(0)
    runner = InferenceRunner(models.build_model(arch, width=TINY_WIDTH), sampling_path("cpu"))
    x, t = torch.randn(40, 3, 16, 16), torch.randint(0, 1000, (40,))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            full = runner(x, t)
            for batch in (1, 2, 3, 5, 8, 12, 17, 33):  # sizes oneDNN computes differently unless padded
                assert torch.equal(runner(x[:batch], t[:batch]), full[:batch]), batch
            order = torch.randperm(40, generator=torch.Generator().manual_seed(1))
            assert torch.equal(runner(x[order], t[order]), full[order])
    finally:
        torch.set_num_threads(before)


def test_fast_path_matches_the_eager_network() -> None:
    torch.manual_seed(0)
    reference = models.build_model("baseline", width=TINY_WIDTH).eval()
    fast = models.build_model("baseline", width=TINY_WIDTH)
    fast.load_state_dict(reference.state_dict())
    runner = InferenceRunner(fast, FastPath(channels_last=True))  # the training and GPU layout
    x, t = torch.randn(8, 3, 16, 16), torch.randint(0, 1000, (8,))
    with torch.inference_mode():
        expected, got = reference(x, t), runner(x, t)
    assert got.dtype == torch.float32
    assert float((got - expected).norm() / expected.norm()) < 1e-4


def test_padding_keeps_scalar_timesteps_and_the_row_count() -> None:
    runner = InferenceRunner(models.build_model("pure_unet", width=TINY_WIDTH), EAGER)
    with torch.inference_mode():
        out = runner(torch.randn(3, 3, 16, 16), torch.tensor(5))
    assert out.shape == (3, 3, 16, 16)
    assert BATCH_MULTIPLE >= 16


def test_default_paths() -> None:
    assert sampling_path("cpu") == EAGER  # NHWC would tie a row's bits to its position at some thread counts
    assert training_path("cpu").channels_last
    assert sampling_path("cuda").channels_last and not sampling_path("cuda").bf16


@pytest.mark.parametrize(
    "spec",
    [
        # DDIM with eta=1 draws fresh noise at every step, like DDPM, in 10 network calls instead of 1000.
        SamplerSpec("ddim", 10, eta=1.0),
        SamplerSpec("dpmpp_2m", 6, spacing="time", clip_x0=True),
        SamplerSpec("dpmpp_2m", 6, spacing="logsnr"),
        SamplerSpec("heun", 4, timestep="interpolated", churn=10.0),  # churn draws noise at each level
        SamplerSpec("heun", 4, timestep="nearest"),
    ],
    ids=lambda spec: spec.describe(),
)
def test_requests_batched_together_get_the_images_they_get_alone(spec: SamplerSpec) -> None:
    torch.manual_seed(0)
    model = models.build_model("baseline", width=TINY_WIDTH)
    requests = [(3, 4), (0, 10), (3, 1), (7, 6)]  # (seed, n); seed 3 twice on purpose
    options = dict(sampler=spec, image_size=16)
    together = generate_many(model, requests, batch_size=8, **options)  # batches cut across requests
    for (seed, n), images in zip(requests, together, strict=True):
        alone = generate_images(model, n, seed, batch_size=128, **options)
        assert torch.equal(images, alone), (seed, n)
