"""The forward process: noise schedule, noising and the eps-MSE loss. Knows nothing about networks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddpm.errors import InvalidOption
from ddpm.limits import SCHEDULES

DEFAULT_TIMESTEPS = 1000
SCHEDULE_KINDS = SCHEDULES  # named in ddpm.limits so torch-free checks (ddpm.study) share it
COSINE_OFFSET = 0.008  # Nichol & Dhariwal's s: keeps beta_0 from being vanishingly small
MAX_BETA = 0.999  # their clip, avoiding a singularity at t = T


@dataclass(frozen=True)
class NoiseSchedule:
    """beta_t, alpha_t = 1 - beta_t and alpha_bar_t = prod_{s<=t} alpha_s for t in [0, T), in float64.

    Float64 keeps alpha_bar accurate near t = T - 1 (about 4e-5) where float32 cumprod drifts.
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor

    @property
    def timesteps(self) -> int:
        return self.betas.shape[0]

    def noise(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), written with the given eps."""
        abar = self.alpha_bars.to(x0.device)[t].to(x0.dtype)[:, None, None, None]
        return abar.sqrt() * x0 + (1 - abar).sqrt() * eps

    def loss(
        self,
        eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x0: torch.Tensor,
        t: torch.Tensor,
        eps: torch.Tensor,
    ) -> torch.Tensor:
        """The DDPM 'simple' loss: MSE between the true noise and eps_fn(x_t, t)."""
        return F.mse_loss(eps_fn(self.noise(x0, t, eps), t), eps)


def linear_schedule(
    timesteps: int = DEFAULT_TIMESTEPS, beta_start: float = 1e-4, beta_end: float = 0.02
) -> NoiseSchedule:
    """Ho et al. 2020 (and the report): betas linear from 1e-4 to 0.02 over T = 1000 steps."""
    if timesteps < 1:
        raise InvalidOption(f"timesteps must be >= 1, got {timesteps}")
    betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    alphas = 1.0 - betas
    return NoiseSchedule(betas=betas, alphas=alphas, alpha_bars=torch.cumprod(alphas, dim=0))


def cosine_schedule(timesteps: int = DEFAULT_TIMESTEPS) -> NoiseSchedule:
    """Nichol & Dhariwal 2021: alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi/2),
    betas = 1 - alpha_bar_t / alpha_bar_{t-1} clipped to 0.999 (index t here is their t + 1)."""
    if timesteps < 1:
        raise InvalidOption(f"timesteps must be >= 1, got {timesteps}")
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * torch.pi / 2) ** 2
    abar = f / f[0]
    betas = (1 - abar[1:] / abar[:-1]).clamp(max=MAX_BETA)
    alphas = 1.0 - betas
    return NoiseSchedule(betas=betas, alphas=alphas, alpha_bars=torch.cumprod(alphas, dim=0))


def make_schedule(kind: str = "linear", timesteps: int = DEFAULT_TIMESTEPS) -> NoiseSchedule:
    schedules = {"linear": linear_schedule, "cosine": cosine_schedule}
    if kind not in schedules:
        raise InvalidOption(f"schedule {kind!r} is not valid; choose one of {list(SCHEDULE_KINDS)}")
    return schedules[kind](timesteps)
