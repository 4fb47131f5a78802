"""Reverse-process samplers as plain functions of an eps-predictor. They import no network.

All randomness comes from `ImageNoise`: one CPU torch.Generator per image, seeded from (seed, index).
So image i of a seed starts from the same Gaussian noise (and gets the same per-step noise) whatever
the arch, the device, n, the batch size, or which other requests it is batched with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ddpm.errors import InvalidOption
from ddpm.limits import DEFAULT_DDIM_STEPS, SAMPLERS
from ddpm.schedule import NoiseSchedule
from ddpm.seeding import STREAM_IMAGE_NOISE, derive_seed

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Progress = Callable[[int, int], None]  # (steps done, total steps); may raise to abort


class ImageNoise:
    """Per-image CPU noise streams for images [first, first + n) of `seed`."""

    def __init__(self, seed: int, n: int, first: int = 0) -> None:
        if n <= 0:
            raise InvalidOption(f"n must be >= 1, got {n}")
        self.generators = [
            torch.Generator().manual_seed(derive_seed(seed, STREAM_IMAGE_NOISE, first + i)) for i in range(n)
        ]

    @classmethod
    def concat(cls, parts: Sequence[ImageNoise]) -> ImageNoise:
        """One batch made of several independent requests; each keeps its own streams."""
        merged = cls.__new__(cls)
        merged.generators = [g for part in parts for g in part.generators]
        return merged

    def __len__(self) -> int:
        return len(self.generators)

    def draw(self, image_shape: Sequence[int]) -> torch.Tensor:
        out = torch.empty((len(self.generators), *image_shape))
        for row, generator in zip(out, self.generators, strict=True):
            torch.randn(tuple(image_shape), generator=generator, out=row)
        return out


def _timestep_batch(t: int, n: int, device: torch.device) -> torch.Tensor:
    return torch.full((n,), t, dtype=torch.long, device=device)


def ddpm_sample(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    noise: ImageNoise,
    image_shape: Sequence[int] = (3, 32, 32),
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> torch.Tensor:
    """Ancestral sampling (Ho et al. 2020, Algorithm 2) over all T steps with sigma_t^2 = beta_t.

    Returns x_0 in float32 on `device`, clamped to [-1, 1].
    """
    device = torch.device(device)
    n, total = len(noise), schedule.timesteps
    x = noise.draw(image_shape).to(device)
    for done, t in enumerate(reversed(range(total)), start=1):
        eps = eps_fn(x, _timestep_batch(t, n, device)).float()
        alpha, beta, abar = (float(v[t]) for v in (schedule.alphas, schedule.betas, schedule.alpha_bars))
        x = (x - (beta / math.sqrt(1.0 - abar)) * eps) / math.sqrt(alpha)
        if t > 0:
            x = x + math.sqrt(beta) * noise.draw(image_shape).to(device)
        if progress is not None:
            progress(done, total)
    return x.clamp(-1.0, 1.0)


def ddim_timesteps(total: int, steps: int) -> list[int]:
    """`steps` timesteps spread evenly over [0, total - 1], descending, always starting at total - 1."""
    if not 1 <= steps <= total:
        raise InvalidOption(f"steps must be between 1 and {total}, got {steps}")
    if steps == 1:
        return [total - 1]
    return sorted({round(v) for v in np.linspace(0, total - 1, steps)}, reverse=True)


def ddim_sample(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    noise: ImageNoise,
    image_shape: Sequence[int] = (3, 32, 32),
    steps: int = 50,
    eta: float = 0.0,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    clip_x0: bool = True,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) on an evenly spaced subsequence; eta=0 is deterministic given x_T,
    eta=1 has the DDPM posterior variance.

    clip_x0 clamps each step's predicted x_0 to the data range [-1, 1] (diffusers' clip_sample) and keeps
    the predicted eps: with few steps an imperfect model's x_0 estimate at high t is divided by
    sqrt(abar_t) ~ 0.006 and, unclipped, leaves saturated noise in the samples. Exact for the oracle.
    """
    if not 0.0 <= eta <= 1.0:
        raise InvalidOption(f"eta must be in [0, 1], got {eta}")
    device = torch.device(device)
    n = len(noise)
    timesteps = ddim_timesteps(schedule.timesteps, steps)
    x = noise.draw(image_shape).to(device)
    for done, t in enumerate(timesteps, start=1):
        eps = eps_fn(x, _timestep_batch(t, n, device)).float()
        abar = float(schedule.alpha_bars[t])
        abar_prev = float(schedule.alpha_bars[timesteps[done]]) if done < len(timesteps) else 1.0
        x0 = (x - math.sqrt(1.0 - abar) * eps) / math.sqrt(abar)
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        sigma = eta * math.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
        x = math.sqrt(abar_prev) * x0 + math.sqrt(max(1.0 - abar_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * noise.draw(image_shape).to(device)
        if progress is not None:
            progress(done, len(timesteps))
    return x.clamp(-1.0, 1.0)


def sample(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    noise: ImageNoise,
    sampler: str = "ddpm",
    steps: int | None = None,
    eta: float = 0.0,
    image_shape: Sequence[int] = (3, 32, 32),
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> torch.Tensor:
    """Dispatch by sampler name. DDPM always runs all T steps; `steps` is DDIM's (default 50)."""
    if sampler == "ddpm":
        if steps not in (None, schedule.timesteps):
            raise InvalidOption(
                f"the ddpm sampler runs all {schedule.timesteps} steps; use sampler='ddim' for {steps} steps"
            )
        return ddpm_sample(eps_fn, schedule, noise, image_shape, device, progress)
    if sampler == "ddim":
        return ddim_sample(
            eps_fn, schedule, noise, image_shape, steps or DEFAULT_DDIM_STEPS, eta, device, progress
        )
    raise InvalidOption(f"sampler {sampler!r} is not valid; choose one of {list(SAMPLERS)}")
