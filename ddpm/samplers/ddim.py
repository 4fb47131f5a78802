"""DDIM (Song et al. 2021): the non-Markovian sampler on an evenly spaced subsequence of timesteps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ddpm.errors import InvalidOption
from ddpm.samplers.noise import EpsFn, ImageNoise, Progress, timestep_batch
from ddpm.schedule import NoiseSchedule


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
        eps = eps_fn(x, timestep_batch(t, n, device)).float()
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
