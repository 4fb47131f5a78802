"""Every sampler against analytic oracles and against published reference implementations (diffusers).

Oracles: a one-image data set, whose optimal eps returns that image; and Gaussian data, whose
probability-flow ODE has a closed-form solution, so each deterministic solver's error can be watched
falling at its order (DDIM first, DPM-Solver++(2M) and Heun second). References: diffusers' schedulers
driven step by step with the same starting noise and a fixed random eps-predictor, within float32
rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    HeunDiscreteScheduler,
)
from diffusers.schedulers import scheduling_ddpm

from ddpm.samplers import (
    ImageNoise,
    SamplerSpec,
    dpm_solver_levels,
    karras_sigmas,
    nfe,
    sample,
)
from ddpm.samplers.levels import NoiseLevels
from ddpm.schedule import cosine_schedule, linear_schedule

SCHEDULE = linear_schedule()
LEVELS = NoiseLevels(SCHEDULE)
SHAPE = (3, 8, 8)
# float32 rounding through up to 35 steps; the largest difference seen was 4e-6 (Heun, 5 steps).
REFERENCE_TOLERANCE = 2e-5

# Every sampler and mode, with few steps (the oracle is exact whatever the step count).
SPECS = [
    SamplerSpec("ddpm"),
    SamplerSpec("ddpm", variance="beta_tilde"),
    SamplerSpec("ddpm", clip_x0=True),
    SamplerSpec("ddim", 10),
    SamplerSpec("ddim", 10, eta=1.0, clip_x0=False),
    SamplerSpec("dpmpp_2m", 10, spacing="time"),
    SamplerSpec("dpmpp_2m", 10, spacing="logsnr"),
    SamplerSpec("dpmpp_2m", 1),
    SamplerSpec("dpmpp_2m", 15, clip_x0=True),
    SamplerSpec("heun", 10),
    SamplerSpec("heun", 1),
    SamplerSpec("heun", 10, timestep="nearest"),
    SamplerSpec("heun", 10, clip_x0=True),
    SamplerSpec("heun", 10, churn=40.0),
    SamplerSpec("heun", 10, churn=5.0, churn_tmin=0.05, churn_tmax=50.0, churn_noise=1.007),
]


def _sigma_of(t: torch.Tensor, levels: NoiseLevels = LEVELS) -> torch.Tensor:
    """The noise level of a (possibly fractional) timestep, log sigma interpolated linearly in t as the
    samplers do: exact at integer t."""
    log_sigma = np.interp(t.double().cpu().numpy(), np.arange(len(levels.sigmas)), levels.log_sigmas)
    return torch.from_numpy(np.exp(log_sigma))


def _coefficients(t: torch.Tensor, levels: NoiseLevels = LEVELS) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, sigma_vp) = (sqrt(abar_t), sqrt(1 - abar_t)), shaped to broadcast over images."""
    sigma = _sigma_of(t, levels)[:, None, None, None]
    alpha = 1 / torch.sqrt(1 + sigma**2)
    return alpha, sigma * alpha


def _one_image() -> torch.Tensor:
    return torch.linspace(-0.9, 0.9, math.prod(SHAPE)).reshape(SHAPE)


def _one_image_oracle(x0: torch.Tensor, levels: NoiseLevels = LEVELS):
    """The optimal eps for a data set of one image x0: (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma_vp = _coefficients(t, levels)
        return ((x.double() - alpha * x0) / sigma_vp).float()

    return eps_fn


class RandomEps:
    """A fixed random eps-predictor: smooth in x and t, mixing pixels and channels as a network does, and
    like a trained one mostly x_t itself at high noise (so samples stay of the data's size)."""

    def __init__(self, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        channels = SHAPE[0]
        self.weight = torch.randn(channels, channels, 3, 3, generator=generator) * 0.3
        self.frequency = torch.randn(channels, generator=generator)[None, :, None, None]

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        phase = t.float()[:, None, None, None] / 1000 * 3 * self.frequency
        _, sigma_vp = _coefficients(t)
        mixed = torch.tanh(torch.nn.functional.conv2d(x, self.weight, padding=1) + torch.sin(phase))
        return sigma_vp.float() * x + 0.5 * mixed


# --- the one-image oracle ----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_every_sampler_returns_the_one_image_of_its_data_set(spec: SamplerSpec) -> None:
    x0 = _one_image()
    out = sample(_one_image_oracle(x0), SCHEDULE, ImageNoise(seed=3, n=4), spec, image_shape=SHAPE)
    assert (out - x0).abs().max().item() < 1e-4


@pytest.mark.parametrize("spec", [SamplerSpec("dpmpp_2m", 10), SamplerSpec("heun", 10)], ids=str)
def test_the_solvers_oracle_holds_on_the_cosine_schedule(spec: SamplerSpec) -> None:
    schedule = cosine_schedule()
    levels = NoiseLevels(schedule)
    x0 = _one_image()
    out = sample(_one_image_oracle(x0, levels), schedule, ImageNoise(1, 2), spec, image_shape=SHAPE)
    assert (out - x0).abs().max().item() < 1e-4


def test_the_solvers_oracle_check_is_not_vacuous() -> None:
    x0 = _one_image()
    for spec in (SamplerSpec("dpmpp_2m", 10), SamplerSpec("heun", 10)):
        out = sample(_one_image_oracle(x0 + 0.05), SCHEDULE, ImageNoise(0, 1), spec, image_shape=SHAPE)
        assert (out - x0).abs().max().item() > 0.04, spec


# --- Gaussian data: the probability-flow ODE in closed form ------------------------------------------

MEAN, SPREAD = 0.1, 0.2  # data x0 ~ N(MEAN, SPREAD^2) per pixel: samples stay inside [-1, 1]


def _gaussian_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[eps | x_t] for Gaussian data: sigma_vp (x_t - alpha MEAN) / (alpha^2 SPREAD^2 + sigma_vp^2)."""
    alpha, sigma_vp = _coefficients(t)
    x = x.double()
    return (sigma_vp * (x - alpha * MEAN) / (alpha**2 * SPREAD**2 + sigma_vp**2)).float()


def _gaussian_solution(start: torch.Tensor, last_sigma: float) -> torch.Tensor:
    """Where a solver should land: the exact ODE path from the starting noise to the level of its last
    network call (x~ = MEAN + (x~_T - MEAN) sqrt((SPREAD^2 + sigma^2) / (SPREAD^2 + sigma_T^2)) in the
    VE view), then that call's denoised estimate E[x0 | x~], which every solver here ends with."""
    top = LEVELS.sigma_max
    x_top = start.double() * math.sqrt(1 + top**2)
    x_last = MEAN + (x_top - MEAN) * math.sqrt((SPREAD**2 + last_sigma**2) / (SPREAD**2 + top**2))
    return MEAN + SPREAD**2 / (SPREAD**2 + last_sigma**2) * (x_last - MEAN)


def _gaussian_error(spec: SamplerSpec) -> float:
    if spec.sampler == "dpmpp_2m":
        last_sigma = dpm_solver_levels(SCHEDULE, spec.steps, spec.spacing)[1][-2]
    else:
        last_sigma = LEVELS.sigma_min  # ddim's last call is at t = 0; heun's at sigma_min = sigma_0
    out = sample(_gaussian_eps, SCHEDULE, ImageNoise(0, 2), spec, image_shape=SHAPE)
    exact = _gaussian_solution(ImageNoise(0, 2).draw(SHAPE), last_sigma)
    return (out.double() - exact).abs().max().item()


@pytest.mark.parametrize(
    "sampler, options, order",
    [
        ("ddim", {"clip_x0": False}, 1),
        ("dpmpp_2m", {"spacing": "logsnr"}, 2),
        ("heun", {"timestep": "interpolated"}, 2),
    ],
)
def test_deterministic_solvers_converge_at_their_order_on_gaussian_data(
    sampler: str, options: dict, order: int
) -> None:
    errors = [_gaussian_error(SamplerSpec(sampler, steps, **options)) for steps in (20, 40, 80)]
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    # Doubling the steps divides the error by about 2^order once the steps are small (the last ratio).
    assert errors[2] < 0.05, errors
    if order == 1:
        assert all(1.5 < r < 2.5 for r in ratios), (errors, ratios)
    else:
        assert ratios[1] > 3.5 and ratios[0] > 2.5, (errors, ratios)


# --- diffusers as the reference ----------------------------------------------------------------------


def _run_diffusers(scheduler, eps_fn, start: torch.Tensor, scale_input: bool = False, time=lambda t: t):
    """The diffusers sampling loop (its pipelines' shape): model call, then scheduler.step."""
    scheduler.alphas_cumprod = SCHEDULE.alpha_bars.clone()  # float64, as ours (diffusers builds float32)
    x = start
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t) if scale_input else x
        eps = eps_fn(model_input, time(torch.full((x.shape[0],), float(t))))
        x = scheduler.step(eps, t, x).prev_sample
    return x.clamp(-1, 1)


def _linear(cls, **config):
    return cls(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", **config)


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 20, 30])
@pytest.mark.parametrize("spacing", ["time", "logsnr"])
@pytest.mark.parametrize("clip_x0", [False, True])
def test_dpmpp_2m_matches_diffusers(steps: int, spacing: str, clip_x0: bool) -> None:
    eps_fn = RandomEps()
    scheduler = _linear(
        DPMSolverMultistepScheduler,
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="zero",
        timestep_spacing="linspace",
        use_lu_lambdas=spacing == "logsnr",
        # static thresholding: s = clamp(quantile, 1, sample_max_value = 1) = 1, so x0 is clamped to [-1, 1]
        thresholding=clip_x0,
        sample_max_value=1.0,
    )
    scheduler.alphas_cumprod = SCHEDULE.alpha_bars.clone()
    scheduler.set_timesteps(steps)
    ours_timesteps, ours_sigmas = dpm_solver_levels(SCHEDULE, steps, spacing)
    assert ours_timesteps == scheduler.timesteps.tolist()
    assert np.allclose(ours_sigmas, scheduler.sigmas.double().numpy(), rtol=1e-6)

    spec = SamplerSpec("dpmpp_2m", steps, spacing=spacing, clip_x0=clip_x0)
    seen: list[int] = []
    ours = sample(
        eps_fn, SCHEDULE, ImageNoise(0, 3), spec, image_shape=SHAPE, progress=lambda d, t: seen.append(t)
    )
    reference = _run_diffusers(scheduler, eps_fn, ImageNoise(0, 3).draw(SHAPE))
    assert (ours - reference).abs().max().item() < REFERENCE_TOLERANCE
    assert len(seen) == nfe(spec) == steps


@pytest.mark.parametrize(
    "steps, clip_x0",
    # Not 1 step: diffusers then takes sigma_max from its one-point timestep grid [0], i.e. sigma_0.
    # Clipping from 3 steps down is ill-conditioned: a Heun correction at sigma 0.01 after a step from
    # sigma 157 divides float32 rounding of ~1e-5 by 0.01 and multiplies it by 157 (both codes do).
    [(2, False), (5, False), (10, False), (18, False), (5, True), (10, True), (18, True)],
)
@pytest.mark.parametrize("timestep", ["interpolated", "nearest"])
def test_heun_matches_diffusers(steps: int, timestep: str, clip_x0: bool) -> None:
    """diffusers' HeunDiscreteScheduler with Karras sigmas is Karras et al.'s Algorithm 1 on a discrete
    VP network with interpolated timesteps; 'nearest' is the same algorithm with the network's t rounded."""
    eps_fn = RandomEps(1)
    scheduler = _linear(HeunDiscreteScheduler, use_karras_sigmas=True, clip_sample=clip_x0)
    scheduler.alphas_cumprod = SCHEDULE.alpha_bars.clone()
    scheduler.set_timesteps(steps)
    sigmas = karras_sigmas(LEVELS.sigma_min, LEVELS.sigma_max, steps)
    # diffusers lists each inner level twice (once per network call): s0, s1, s1, .., s_{N-1}, s_{N-1}, 0
    assert np.allclose(sigmas[:-1], scheduler.sigmas.double().numpy()[::2], rtol=1e-6)

    spec = SamplerSpec("heun", steps, timestep=timestep, clip_x0=clip_x0)
    seen: list[int] = []
    ours = sample(
        eps_fn, SCHEDULE, ImageNoise(2, 3), spec, image_shape=SHAPE, progress=lambda d, t: seen.append(d)
    )
    # diffusers' Heun starts from its own noise scale; ours is the VP starting noise every sampler shares
    start = ImageNoise(2, 3).draw(SHAPE) * math.sqrt(1 + LEVELS.sigma_max**2)
    rounding = (lambda t: t.round()) if timestep == "nearest" else (lambda t: t)
    reference = _run_diffusers(scheduler, eps_fn, start, scale_input=True, time=rounding)
    assert (ours - reference).abs().max().item() < REFERENCE_TOLERANCE
    assert seen == list(range(1, 2 * steps)) and nfe(spec) == 2 * steps - 1


@pytest.mark.parametrize("clip_x0", [True, False])
def test_ddim_matches_diffusers(clip_x0: bool) -> None:
    """The update, with and without clipping. At 1000 steps only: diffusers' DDIM takes the previous
    timestep as t - T // steps, which is its 'leading' spacing, not the even spacing ours (and its
    'linspace' option) lists; at 1000 steps the two agree."""
    steps = 1000
    eps_fn = RandomEps(2)
    scheduler = _linear(
        DDIMScheduler, timestep_spacing="linspace", set_alpha_to_one=True, clip_sample=clip_x0
    )
    scheduler.alphas_cumprod = SCHEDULE.alpha_bars.clone()
    scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    scheduler.set_timesteps(steps)
    ours = sample(
        eps_fn, SCHEDULE, ImageNoise(4, 3), SamplerSpec("ddim", steps, clip_x0=clip_x0), image_shape=SHAPE
    )
    reference = _run_diffusers(scheduler, eps_fn, ImageNoise(4, 3).draw(SHAPE))
    assert (ours - reference).abs().max().item() < REFERENCE_TOLERANCE


@pytest.mark.parametrize(
    "variance, clip_x0, variance_type", [("beta", False, "fixed_large"), ("beta_tilde", True, "fixed_small")]
)
def test_ddpm_matches_diffusers_with_the_same_noise(
    variance: str, clip_x0: bool, variance_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """diffusers' DDPMScheduler draws its own noise: it is handed the same per-image draws as ours."""
    eps_fn = RandomEps(3)
    streams = ImageNoise(5, 3)
    streams.draw(SHAPE)  # the starting noise; each later draw is a step's noise, in our order
    monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda shape, **_: streams.draw(SHAPE))
    scheduler = _linear(DDPMScheduler, variance_type=variance_type, clip_sample=clip_x0)
    scheduler.alphas_cumprod = SCHEDULE.alpha_bars.clone()
    scheduler.betas = SCHEDULE.betas.clone()
    scheduler.alphas = SCHEDULE.alphas.clone()
    scheduler.set_timesteps(1000)
    spec = SamplerSpec("ddpm", variance=variance, clip_x0=clip_x0)
    ours = sample(eps_fn, SCHEDULE, ImageNoise(5, 3), spec, image_shape=SHAPE)
    reference = _run_diffusers(scheduler, eps_fn, ImageNoise(5, 3).draw(SHAPE))
    assert (ours - reference).abs().max().item() < REFERENCE_TOLERANCE


def test_the_reports_ddpm_sampler_is_unchanged_bit_for_bit() -> None:
    """Defaults (variance beta, no clipping) are Ho et al.'s Algorithm 2 exactly as written before."""
    eps_fn = RandomEps(4)
    noise = ImageNoise(6, 2)
    x = noise.draw(SHAPE)
    for t in reversed(range(1000)):
        eps = eps_fn(x, torch.full((2,), t, dtype=torch.long)).float()
        alpha, beta, abar = (float(v[t]) for v in (SCHEDULE.alphas, SCHEDULE.betas, SCHEDULE.alpha_bars))
        x = (x - (beta / math.sqrt(1.0 - abar)) * eps) / math.sqrt(alpha)
        if t > 0:
            x = x + math.sqrt(beta) * noise.draw(SHAPE)
    assert torch.equal(sample(eps_fn, SCHEDULE, ImageNoise(6, 2), "ddpm", image_shape=SHAPE), x.clamp(-1, 1))


# --- options that change the path -------------------------------------------------------------------


def test_options_change_images_and_churn_draws_from_each_images_stream() -> None:
    eps_fn = RandomEps(5)

    def run(spec: SamplerSpec, seed: int = 0, n: int = 3) -> torch.Tensor:
        return sample(eps_fn, SCHEDULE, ImageNoise(seed, n), spec, image_shape=SHAPE)

    base = run(SamplerSpec("heun", 5))
    churned = run(SamplerSpec("heun", 5, churn=10.0))
    assert not torch.allclose(base, churned), "churn adds noise"
    assert torch.equal(churned, run(SamplerSpec("heun", 5, churn=10.0))), "and the same seed repeats it"
    assert torch.equal(run(SamplerSpec("heun", 5, churn=10.0), n=5)[:3], churned), "n does not matter"
    assert not torch.equal(run(SamplerSpec("heun", 5, churn=10.0), seed=1), churned)
    # churn confined to levels above sigma 200 touches none of ours (sigma_max ~ 157): no change
    assert torch.equal(run(SamplerSpec("heun", 5, churn=10.0, churn_tmin=200.0)), base)
    assert not torch.allclose(
        run(SamplerSpec("dpmpp_2m", 8, spacing="time")), run(SamplerSpec("dpmpp_2m", 8))
    )
    assert not torch.allclose(run(SamplerSpec("heun", 5, timestep="nearest")), base)
    assert not torch.allclose(run(SamplerSpec("ddpm", variance="beta_tilde")), run(SamplerSpec("ddpm")))
