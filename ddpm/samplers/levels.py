"""The discrete VP schedule seen as noise levels, for the ODE solvers.

x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, divided by sqrt(abar_t), is x_0 + sigma_t eps with
sigma_t = sqrt((1 - abar_t) / abar_t): the variance-exploding view Karras et al. sample in, and
lambda_t = -log sigma_t is the half log-SNR that DPM-Solver steps in. The network knows only its T
integer timesteps; a noise level between two of them maps to a fractional t by interpolating t
linearly in log sigma (Lu et al.'s discrete-time schedule, diffusers' `_sigma_to_t`).
"""

from __future__ import annotations

import math

import numpy as np

from ddpm.schedule import NoiseSchedule


class NoiseLevels:
    """sigma_t for t = 0 .. T-1 (float64, increasing) and the map from a sigma back to a timestep."""

    def __init__(self, schedule: NoiseSchedule) -> None:
        abar = schedule.alpha_bars.double().cpu().numpy()
        self.sigmas = np.sqrt((1.0 - abar) / abar)
        self.log_sigmas = np.log(self.sigmas)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def timestep(self, sigma: float) -> float:
        """The fractional timestep whose interpolated log sigma is log(sigma), clamped to [0, T-1]."""
        return float(np.interp(math.log(sigma), self.log_sigmas, np.arange(len(self.sigmas))))

    def nearest_timestep(self, sigma: float) -> int:
        return round(self.timestep(sigma))


def vp_coefficients(sigma: float) -> tuple[float, float]:
    """(alpha, sigma_vp) of x_t = alpha x_0 + sigma_vp eps for a VE noise level sigma: alpha =
    1 / sqrt(1 + sigma^2) = sqrt(abar), sigma_vp = sigma alpha = sqrt(1 - abar)."""
    alpha = 1.0 / math.sqrt(1.0 + sigma * sigma)
    return alpha, sigma * alpha
