"""Samplers against an analytic oracle, and the noise streams' determinism guarantees."""

from __future__ import annotations

import pytest
import torch

from ddpm.errors import InvalidOption
from ddpm.samplers import ImageNoise, ddim_sample, ddim_timesteps, ddpm_sample, sample
from ddpm.schedule import linear_schedule

SCHEDULE = linear_schedule()


def _one_image() -> torch.Tensor:
    """A single 'data set' image with values spread over [-0.9, 0.9]."""
    return torch.linspace(-0.9, 0.9, 3 * 8 * 8).reshape(3, 8, 8)


def _oracle(x0: torch.Tensor):
    """The optimal eps-predictor for a data set of one image x0: (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""
    abars = SCHEDULE.alpha_bars

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = abars[t].to(x.dtype)[:, None, None, None]
        return (x - abar.sqrt() * x0) / (1 - abar).sqrt()

    return eps_fn


def test_schedule_is_the_reports() -> None:
    assert SCHEDULE.timesteps == 1000
    assert SCHEDULE.betas[0].item() == pytest.approx(1e-4) and SCHEDULE.betas[-1].item() == pytest.approx(
        0.02
    )
    assert SCHEDULE.alpha_bars[0].item() == pytest.approx(1 - 1e-4)
    assert torch.allclose(SCHEDULE.alpha_bars, torch.cumprod(1 - SCHEDULE.betas, 0))


def test_forward_noising_matches_q_x_t_given_x0() -> None:
    x0 = _one_image().expand(4, -1, -1, -1)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 10, 500, 999])
    xt = SCHEDULE.noise(x0, t, eps)
    abar = SCHEDULE.alpha_bars[t].float()[:, None, None, None]
    assert torch.allclose(xt, abar.sqrt() * x0 + (1 - abar).sqrt() * eps)


def test_ddpm_with_the_oracle_returns_the_data_image() -> None:
    x0 = _one_image()
    out = ddpm_sample(_oracle(x0), SCHEDULE, ImageNoise(seed=3, n=4), image_shape=x0.shape)
    assert (out - x0).abs().max().item() < 1e-4


@pytest.mark.parametrize("steps, eta", [(50, 0.0), (50, 1.0), (10, 0.5), (1000, 0.0), (1, 0.0)])
def test_ddim_with_the_oracle_returns_the_data_image(steps: int, eta: float) -> None:
    x0 = _one_image()
    out = ddim_sample(
        _oracle(x0), SCHEDULE, ImageNoise(seed=5, n=4), image_shape=x0.shape, steps=steps, eta=eta
    )
    assert (out - x0).abs().max().item() < 1e-4


def test_the_oracle_check_is_not_vacuous() -> None:
    """An oracle for a slightly different image must land on that image, not on ours."""
    x0 = _one_image()
    out = ddpm_sample(_oracle(x0 + 0.05), SCHEDULE, ImageNoise(0, 1), image_shape=x0.shape)
    assert (out - x0).abs().max().item() > 0.04


def test_progress_is_reported_for_every_step() -> None:
    seen: list[tuple[int, int]] = []
    ddim_sample(
        _oracle(_one_image()),
        SCHEDULE,
        ImageNoise(0, 1),
        (3, 8, 8),
        steps=7,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen == [(i, 7) for i in range(1, 8)]


def test_ddim_timesteps_are_evenly_spread_and_start_from_pure_noise() -> None:
    steps = ddim_timesteps(1000, 50)
    assert len(steps) == 50 and steps[0] == 999 and steps[-1] == 0
    assert steps == sorted(set(steps), reverse=True)
    assert ddim_timesteps(1000, 1000) == list(range(999, -1, -1))
    assert ddim_timesteps(1000, 1) == [999]
    with pytest.raises(InvalidOption, match="between 1 and 1000"):
        ddim_timesteps(1000, 0)


def test_image_noise_depends_only_on_seed_and_index() -> None:
    shape = (3, 4, 4)
    whole = ImageNoise(seed=7, n=6).draw(shape)
    assert torch.equal(ImageNoise(seed=7, n=4).draw(shape), whole[:4]), "a smaller n is a prefix"
    assert torch.equal(ImageNoise(seed=7, n=2, first=4).draw(shape), whole[4:]), "batches can start anywhere"
    batched = ImageNoise.concat([ImageNoise(seed=7, n=3), ImageNoise(seed=8, n=2)]).draw(shape)
    assert torch.equal(batched[:3], whole[:3]) and torch.equal(
        batched[3:], ImageNoise(seed=8, n=2).draw(shape)
    )
    assert not torch.equal(ImageNoise(seed=8, n=6).draw(shape), whole)
    assert not torch.equal(whole[0], whole[1])


def test_sample_dispatch_rejects_bad_options() -> None:
    eps_fn = _oracle(_one_image())
    with pytest.raises(InvalidOption, match="ddpm sampler always runs 1000 steps"):
        sample(eps_fn, SCHEDULE, ImageNoise(0, 1), sampler="ddpm", steps=50, image_shape=(3, 8, 8))
    with pytest.raises(InvalidOption, match="choose one of"):
        sample(eps_fn, SCHEDULE, ImageNoise(0, 1), sampler="euler", image_shape=(3, 8, 8))
    with pytest.raises(InvalidOption, match="eta must be in"):
        sample(eps_fn, SCHEDULE, ImageNoise(0, 1), sampler="ddim", eta=2.0, image_shape=(3, 8, 8))
    with pytest.raises(InvalidOption, match="n must be >= 1"):
        ImageNoise(0, 0)


def test_ddim_clips_the_predicted_x0_to_the_data_range() -> None:
    """An imperfect predictor (eps = 0.9 x_t) overshoots x0; clipping keeps every x_t near the data range,
    and changes nothing for a predictor whose x0 is already in range (the oracle)."""

    def run(clip_x0: bool) -> tuple[torch.Tensor, float]:
        seen: list[float] = []

        def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            seen.append(x.abs().max().item())
            return 0.9 * x

        out = ddim_sample(eps_fn, SCHEDULE, ImageNoise(0, 2), (3, 8, 8), steps=10, clip_x0=clip_x0)
        return out, max(seen)

    (clipped, clipped_peak), (raw, raw_peak) = run(True), run(False)
    assert not torch.allclose(clipped, raw)
    assert clipped_peak < 0.7 * raw_peak
    x0 = _one_image()
    unclipped = ddim_sample(_oracle(x0), SCHEDULE, ImageNoise(0, 1), x0.shape, steps=10, clip_x0=False)
    assert torch.allclose(unclipped, ddim_sample(_oracle(x0), SCHEDULE, ImageNoise(0, 1), x0.shape, steps=10))


def test_cosine_schedule_follows_nichol_and_dhariwal() -> None:
    from ddpm.schedule import cosine_schedule, make_schedule

    cosine = cosine_schedule()
    steps = torch.arange(1, 1001, dtype=torch.float64) / 1000
    f = (
        torch.cos((steps + 0.008) / 1.008 * torch.pi / 2) ** 2
        / torch.cos(torch.tensor(0.008 / 1.008 * torch.pi / 2, dtype=torch.float64)) ** 2
    )
    assert torch.allclose(cosine.alpha_bars[:-1], f[:-1], rtol=1e-9), "exact until the beta clip at the end"
    assert cosine.betas.max().item() == pytest.approx(0.999)
    assert make_schedule("cosine").timesteps == 1000
    with pytest.raises(InvalidOption, match="choose one of"):
        make_schedule("sigmoid")


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_the_oracle_check_holds_on_the_cosine_schedule(sampler: str) -> None:
    from ddpm.schedule import cosine_schedule

    schedule = cosine_schedule()
    x0 = _one_image()

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = schedule.alpha_bars[t].to(x.dtype)[:, None, None, None]
        return (x - abar.sqrt() * x0) / (1 - abar).sqrt()

    out = sample(eps_fn, schedule, ImageNoise(1, 2), sampler=sampler, image_shape=x0.shape)
    assert (out - x0).abs().max().item() < 1e-4
