"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): all T steps, fresh noise at each."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ddpm.errors import InvalidOption
from ddpm.limits import DDPM_VARIANCES
from ddpm.samplers.noise import EpsFn, ImageNoise, Progress, timestep_batch
from ddpm.schedule import NoiseSchedule


def ddpm_sample(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    noise: ImageNoise,
    image_shape: Sequence[int] = (3, 32, 32),
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    variance: str = "beta",
    clip_x0: bool = False,
) -> torch.Tensor:
    """x_{t-1} = mu(x_t, eps) + sigma_t z over t = T-1 .. 0, no noise at the last step.

    variance: sigma_t^2 = beta_t ("beta", the report's and Ho et al.'s CIFAR-10 choice) or the true
    posterior's beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t) ("beta_tilde"); Ho et al. found both
    give similar samples. clip_x0 clamps the predicted x_0 to [-1, 1] and takes the posterior mean
    from it (Ho et al.'s code does; the report's does not). With the defaults this is the report's
    sampler bit for bit: mu = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t).

    Returns x_0 in float32 on `device`, clamped to [-1, 1].
    """
    if variance not in DDPM_VARIANCES:
        raise InvalidOption(f"variance {variance!r} is not valid; choose one of {list(DDPM_VARIANCES)}")
    device = torch.device(device)
    n, total = len(noise), schedule.timesteps
    x = noise.draw(image_shape).to(device)
    for done, t in enumerate(reversed(range(total)), start=1):
        eps = eps_fn(x, timestep_batch(t, n, device)).float()
        alpha, beta, abar = (float(v[t]) for v in (schedule.alphas, schedule.betas, schedule.alpha_bars))
        abar_prev = float(schedule.alpha_bars[t - 1]) if t > 0 else 1.0
        if clip_x0:
            x0 = ((x - math.sqrt(1.0 - abar) * eps) / math.sqrt(abar)).clamp(-1.0, 1.0)
            x = (math.sqrt(abar_prev) * beta / (1.0 - abar)) * x0 + (
                math.sqrt(alpha) * (1.0 - abar_prev) / (1.0 - abar)
            ) * x
        else:
            x = (x - (beta / math.sqrt(1.0 - abar)) * eps) / math.sqrt(alpha)
        if t > 0:
            var = beta if variance == "beta" else beta * (1.0 - abar_prev) / (1.0 - abar)
            x = x + math.sqrt(var) * noise.draw(image_shape).to(device)
        if progress is not None:
            progress(done, total)
    return x.clamp(-1.0, 1.0)
