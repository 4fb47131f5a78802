"""Reverse-process samplers as plain functions of an eps-predictor `eps_fn(x, t)`. They import no network.

One module per solver family: `ancestral` (DDPM), `ddim`, `dpm_solver` (DPM-Solver++(2M)), `karras`
(Heun on the EDM schedule); `levels` maps the discrete VP schedule to noise levels, `noise` holds the
per-image noise streams every sampler draws from. Callers use `sample`, which serves every sampler by
name or by a `SamplerSpec` (ddpm/sampler_spec.py, torch-free), and `nfe` for its network calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ddpm.limits import SAMPLERS
from ddpm.sampler_spec import SamplerSpec, nfe
from ddpm.samplers.ancestral import ddpm_sample
from ddpm.samplers.ddim import ddim_sample, ddim_timesteps
from ddpm.samplers.dpm_solver import dpm_solver_levels, dpmpp_2m_sample
from ddpm.samplers.karras import heun_sample, karras_sigmas
from ddpm.samplers.noise import EpsFn, ImageNoise, Progress
from ddpm.schedule import NoiseSchedule

__all__ = [
    "SAMPLERS",
    "EpsFn",
    "ImageNoise",
    "Progress",
    "SamplerSpec",
    "ddim_sample",
    "ddim_timesteps",
    "ddpm_sample",
    "dpm_solver_levels",
    "dpmpp_2m_sample",
    "heun_sample",
    "karras_sigmas",
    "nfe",
    "sample",
]


def sample(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    noise: ImageNoise,
    sampler: str | SamplerSpec = "ddpm",
    steps: int | None = None,
    eta: float | None = None,
    image_shape: Sequence[int] = (3, 32, 32),
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    **options: Any,
) -> torch.Tensor:
    """x_0 in [-1, 1] for each of `noise`'s images, by any sampler: a SamplerSpec, or a name with its
    steps, eta and options (`SamplerSpec`'s fields). `progress(done, total)` counts network calls;
    `nfe(spec)` says how many there will be."""
    spec = SamplerSpec.of(sampler, steps, eta, **options)
    common: dict[str, Any] = {"image_shape": image_shape, "device": device, "progress": progress}
    if spec.sampler == "ddpm":
        return ddpm_sample(eps_fn, schedule, noise, **common, variance=spec.variance, clip_x0=spec.clip_x0)
    if spec.sampler == "ddim":
        return ddim_sample(
            eps_fn, schedule, noise, **common, steps=spec.steps, eta=spec.eta, clip_x0=spec.clip_x0
        )
    if spec.sampler == "dpmpp_2m":
        return dpmpp_2m_sample(
            eps_fn, schedule, noise, **common, steps=spec.steps, spacing=spec.spacing, clip_x0=spec.clip_x0
        )
    churn = {name: getattr(spec, name) for name in ("churn", "churn_tmin", "churn_tmax", "churn_noise")}
    # churn 0 leaves the range and noise scale unset (they change nothing); heun_sample's defaults apply
    return heun_sample(
        eps_fn,
        schedule,
        noise,
        **common,
        steps=spec.steps,
        timestep=spec.timestep,
        clip_x0=spec.clip_x0,
        **{k: v for k, v in churn.items() if v is not None},
    )
