"""The forward process: noise schedule, noising and the eps-MSE loss. Knows nothing about networks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddpm.errors import InvalidOption

DEFAULT_TIMESTEPS = 1000
SCHEDULE_KINDS = ("linear",)


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


def make_schedule(kind: str = "linear", timesteps: int = DEFAULT_TIMESTEPS) -> NoiseSchedule:
    if kind not in SCHEDULE_KINDS:
        raise InvalidOption(f"schedule {kind!r} is not valid; choose one of {list(SCHEDULE_KINDS)}")
    return linear_schedule(timesteps)
