"""Karras et al. 2022 (EDM), Algorithms 1 and 2: Heun's second-order method on their sigma schedule,
applied to our discrete VP network through its noise levels (ddpm/samplers/levels.py).

In the VE view x~ = x / sqrt(abar) = x_0 + sigma eps, the probability-flow ODE is dx~/dsigma = eps, and
the network is called as eps(x~ / sqrt(1 + sigma^2), t(sigma)) (their VP preconditioning: c_in =
1 / sqrt(1 + sigma^2)). The schedule is

    sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,  sigma_N = 0,

with rho = 7 and [sigma_min, sigma_max] the network's own range (sigma_0 .. sigma_{T-1} of the schedule),
so the first call sees pure noise as every other sampler's does. Each step is an Euler step plus Heun's
correction, except the last (to sigma = 0), which is Euler: 2N - 1 network calls. t(sigma) is
"interpolated" (fractional, diffusers' HeunDiscreteScheduler with use_karras_sigmas) or "nearest"
(rounded; the step keeps the exact sigma_i).

Churn (Algorithm 2): at levels in [churn_tmin, churn_tmax], noise is added to raise sigma_i to
sigma^_i = (1 + gamma) sigma_i, gamma = min(churn / N, sqrt(2) - 1), before the step. Its noise comes
from each image's own stream, so stochastic sampling stays independent of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ddpm.errors import InvalidOption
from ddpm.limits import HEUN_RHO, HEUN_TIMESTEPS
from ddpm.samplers.levels import NoiseLevels
from ddpm.samplers.noise import EpsFn, ImageNoise, Progress, timestep_batch
from ddpm.schedule import NoiseSchedule


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = HEUN_RHO) -> list[float]:
    """Karras et al.'s eq. 5: `steps` levels from sigma_max down to sigma_min, then 0."""
    if steps < 1:
        raise InvalidOption(f"steps must be >= 1, got {steps}")
    ramp = np.linspace(0.0, 1.0, steps)
    top, bottom = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    return [float(s) for s in (top + ramp * (bottom - top)) ** rho] + [0.0]


def heun_sample(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    noise: ImageNoise,
    image_shape: Sequence[int] = (3, 32, 32),
    steps: int = 18,
    timestep: str = "interpolated",
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    clip_x0: bool = False,
    churn: float = 0.0,
    churn_tmin: float = 0.0,
    churn_tmax: float | None = None,
    churn_noise: float = 1.0,
) -> torch.Tensor:
    """Heun's method from the image's starting noise to x_0 in 2 * steps - 1 network calls.

    clip_x0 clamps each denoised estimate D = x~ - sigma eps to [-1, 1] (diffusers' clip_sample).
    Returns x_0 clamped to [-1, 1].
    """
    if timestep not in HEUN_TIMESTEPS:
        raise InvalidOption(f"timestep {timestep!r} is not valid; choose one of {list(HEUN_TIMESTEPS)}")
    device = torch.device(device)
    n = len(noise)
    levels = NoiseLevels(schedule)
    sigmas = karras_sigmas(levels.sigma_min, levels.sigma_max, steps)
    gamma = min(churn / steps, math.sqrt(2.0) - 1.0)
    upper = math.inf if churn_tmax is None else churn_tmax
    calls, total = 0, 2 * steps - 1

    def denoised(x: torch.Tensor, sigma: float) -> torch.Tensor:
        nonlocal calls
        t = levels.timestep(sigma) if timestep == "interpolated" else levels.nearest_timestep(sigma)
        eps = eps_fn(x / math.sqrt(1.0 + sigma * sigma), timestep_batch(t, n, device)).float()
        estimate = x - sigma * eps
        calls += 1
        if progress is not None:
            progress(calls, total)
        return estimate.clamp(-1.0, 1.0) if clip_x0 else estimate

    # x~_T = x_T / sqrt(abar_T): the VP starting noise every sampler uses, in the VE view.
    x = noise.draw(image_shape).to(device) * math.sqrt(1.0 + sigmas[0] ** 2)
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        sigma_hat = sigma
        if gamma > 0 and churn_tmin <= sigma <= upper:
            sigma_hat = sigma * (1.0 + gamma)
            fresh = noise.draw(image_shape).to(device)
            x = x + (churn_noise * math.sqrt(sigma_hat**2 - sigma**2)) * fresh
        slope = (x - denoised(x, sigma_hat)) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * slope
        if sigma_next > 0:  # Heun's correction: the slope's average over both ends
            slope_next = (x_next - denoised(x_next, sigma_next)) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * ((slope + slope_next) / 2)
        x = x_next
    return x.clamp(-1.0, 1.0)
