"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): second-order multistep, data
prediction, on the probability-flow ODE of the discrete VP schedule.

Each network call at noise level sigma_i gives x0_i = (x - sigma_vp,i eps) / alpha_i. With the half
log-SNR lambda = -log sigma and h_i = lambda_{i+1} - lambda_i, a step is

    x_{i+1} = (sigma_vp,i+1 / sigma_vp,i) x_i - alpha_{i+1} (e^{-h_i} - 1) D_i,
    D_i = (1 + 1 / (2 r_i)) x0_i - (1 / (2 r_i)) x0_{i-1},   r_i = h_{i-1} / h_i,

first order (D_i = x0_i, a DDIM step) at the first step, which has no earlier x0, and at the last,
which goes to sigma = 0 and so returns x0 of the last call: the "lower-order final step" that keeps
few-step sampling stable. `steps` network calls in all.

Spacing of the noise levels (both as diffusers' DPMSolverMultistepScheduler builds them, so it serves
as the reference in tests/ddpm/test_solvers.py):
- "time": timesteps linspace(0, T-1, steps + 1) rounded, the lowest dropped (its "linspace"); the
  levels are the schedule's own sigmas at those timesteps.
- "logsnr": `steps` levels uniform in log sigma from sigma_{T-1} to sigma_0 (its `use_lu_lambdas`); the
  network is called at the nearest integer timestep, while the step uses the level itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ddpm.errors import InvalidOption
from ddpm.limits import DPM_SPACINGS
from ddpm.samplers.levels import NoiseLevels, vp_coefficients
from ddpm.samplers.noise import EpsFn, ImageNoise, Progress, timestep_batch
from ddpm.schedule import NoiseSchedule


def dpm_solver_levels(schedule: NoiseSchedule, steps: int, spacing: str) -> tuple[list[int], list[float]]:
    """(timesteps the network is called at, their noise levels sigma followed by the final 0)."""
    if spacing not in DPM_SPACINGS:
        raise InvalidOption(f"spacing {spacing!r} is not valid; choose one of {list(DPM_SPACINGS)}")
    total = schedule.timesteps
    if not 1 <= steps <= total // 2:
        raise InvalidOption(f"steps must be an integer in [1, {total // 2}], got {steps}")
    levels = NoiseLevels(schedule)
    if spacing == "time":
        timesteps = [int(t) for t in np.linspace(0, total - 1, steps + 1).round()[::-1][:-1]]
        sigmas = [float(levels.sigmas[t]) for t in timesteps]
    else:
        sigmas = [float(s) for s in np.exp(np.linspace(levels.log_sigmas[-1], levels.log_sigmas[0], steps))]
        timesteps = [levels.nearest_timestep(s) for s in sigmas]
    return timesteps, [*sigmas, 0.0]


def dpmpp_2m_sample(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    noise: ImageNoise,
    image_shape: Sequence[int] = (3, 32, 32),
    steps: int = 20,
    spacing: str = "logsnr",
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    clip_x0: bool = False,
) -> torch.Tensor:
    """DPM-Solver++(2M) from x_T = the image's starting noise to x_0, in `steps` network calls.

    clip_x0 clamps each predicted x_0 to [-1, 1] before it is used (static thresholding, Lu et al.
    section 5, diffusers' thresholding with sample_max_value=1). Returns x_0 clamped to [-1, 1].
    """
    device = torch.device(device)
    n = len(noise)
    timesteps, sigmas = dpm_solver_levels(schedule, steps, spacing)
    x = noise.draw(image_shape).to(device)
    previous: tuple[torch.Tensor, float] | None = None  # (x0, h) of the step before
    for i, t in enumerate(timesteps):
        alpha, sigma_vp = vp_coefficients(sigmas[i])
        eps = eps_fn(x, timestep_batch(t, n, device)).float()
        x0 = (x - sigma_vp * eps) / alpha
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        if sigmas[i + 1] == 0.0:  # lambda = inf: the step lands on x0 itself (first order)
            x = x0
        else:
            alpha_next, sigma_vp_next = vp_coefficients(sigmas[i + 1])
            h = math.log(sigmas[i]) - math.log(sigmas[i + 1])
            data = x0
            if previous is not None:
                x0_before, h_before = previous
                r = h_before / h
                data = x0 + (0.5 / r) * (x0 - x0_before)
            x = (sigma_vp_next / sigma_vp) * x - (alpha_next * math.expm1(-h)) * data
            previous = (x0, h)
        if progress is not None:
            progress(i + 1, len(timesteps))
    return x.clamp(-1.0, 1.0)
