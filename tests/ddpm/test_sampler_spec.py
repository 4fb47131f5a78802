"""SamplerSpec: validation before any job is queued, normalisation, and the params and cache-key contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ddpm import limits
from ddpm.errors import InvalidOption
from ddpm.sampler_spec import OPTION_NAMES, SamplerSpec, nfe

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_spec_loads_no_torch() -> None:
    """The API builds specs from requests; it must not pay for (or depend on) torch."""
    code = (
        "import sys, json; import ddpm.sampler_spec, ddpm.sampler_cli, ddpm.limits; "
        "print(json.dumps([m for m in ('torch', 'numpy', 'ddpm.samplers') if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"sampler": "ddpm"}, {"sampler": "ddpm", "steps": 1000, "variance": "beta", "clip_x0": False}),
        ({"sampler": "ddim"}, {"sampler": "ddim", "steps": 50, "eta": 0.0, "clip_x0": True}),
        (
            {"sampler": "dpmpp_2m"},
            {"sampler": "dpmpp_2m", "steps": 20, "spacing": "logsnr", "clip_x0": False},
        ),
        (
            {"sampler": "heun"},
            {"sampler": "heun", "steps": 18, "timestep": "interpolated", "clip_x0": False, "churn": 0.0},
        ),
        (
            {"sampler": "heun", "steps": 9, "churn": 30, "churn_tmax": 50},
            {
                "sampler": "heun",
                "steps": 9,
                "timestep": "interpolated",
                "clip_x0": False,
                "churn": 30.0,
                "churn_tmin": 0.0,
                "churn_tmax": 50.0,
                "churn_noise": 1.0,
            },
        ),
    ],
)
def test_defaults_are_filled_in_and_params_round_trip_through_json(given: dict, expected: dict) -> None:
    spec = SamplerSpec(**given)
    assert spec.to_params() == expected
    assert spec.cache_key() == expected
    assert SamplerSpec.from_params(json.loads(json.dumps(spec.to_params()))) == spec


@pytest.mark.parametrize(
    "first, second",
    [
        (SamplerSpec("ddim"), SamplerSpec("ddim", 50, 0, clip_x0=True)),
        (SamplerSpec("ddpm"), SamplerSpec("ddpm", 1000, 0.0, variance="beta", clip_x0=False)),
        (SamplerSpec("dpmpp_2m", 20), SamplerSpec("dpmpp_2m", spacing="logsnr")),
        # churn 0 is deterministic: the churn range and noise scale change no pixel, so they do not key
        (SamplerSpec("heun"), SamplerSpec("heun", churn=0, churn_tmin=0, churn_noise=1)),
        (SamplerSpec("heun", churn=2.0), SamplerSpec("heun", churn=2, churn_tmin=0.0, churn_noise=1.0)),
    ],
)
def test_equivalent_requests_are_one_spec_with_one_cache_key(first: SamplerSpec, second: SamplerSpec) -> None:
    assert first == second and hash(first) == hash(second)
    assert json.dumps(first.cache_key(), sort_keys=True) == json.dumps(second.cache_key(), sort_keys=True)


def test_every_option_that_changes_pixels_changes_the_cache_key() -> None:
    variants = [
        SamplerSpec("ddpm"),
        SamplerSpec("ddpm", variance="beta_tilde"),
        SamplerSpec("ddpm", clip_x0=True),
        SamplerSpec("ddim"),
        SamplerSpec("ddim", 49),
        SamplerSpec("ddim", eta=0.5),
        SamplerSpec("ddim", clip_x0=False),
        SamplerSpec("dpmpp_2m"),
        SamplerSpec("dpmpp_2m", 21),
        SamplerSpec("dpmpp_2m", spacing="time"),
        SamplerSpec("dpmpp_2m", clip_x0=True),
        SamplerSpec("heun"),
        SamplerSpec("heun", 10),
        SamplerSpec("heun", timestep="nearest"),
        SamplerSpec("heun", clip_x0=True),
        SamplerSpec("heun", churn=1.0),
        SamplerSpec("heun", churn=1.0, churn_tmin=0.05),
        SamplerSpec("heun", churn=1.0, churn_tmax=50.0),
        SamplerSpec("heun", churn=1.0, churn_noise=1.007),
    ]
    keys = {json.dumps(v.cache_key(), sort_keys=True) for v in variants}
    assert len(keys) == len(variants)
    covered = {name for v in variants for name in v.options()}
    assert covered == set(OPTION_NAMES), "a new option needs a line here"


@pytest.mark.parametrize(
    "given, message",
    [
        (
            {"sampler": "euler"},
            "sampler 'euler' is not valid; choose one of ['ddpm', 'ddim', 'dpmpp_2m', 'heun']",
        ),
        ({"sampler": "ddpm", "steps": 50}, "the ddpm sampler always runs 1000 steps, got steps=50"),
        ({"sampler": "ddim", "steps": 0}, "steps must be an integer in [1, 1000] for ddim, got 0"),
        ({"sampler": "dpmpp_2m", "steps": 501}, "steps must be an integer in [1, 500] for dpmpp_2m, got 501"),
        ({"sampler": "heun", "steps": 2.5}, "steps must be an integer in [1, 500] for heun, got 2.5"),
        ({"sampler": "ddim", "steps": True}, "steps must be an integer"),
        ({"sampler": "ddim", "eta": 1.5}, "eta must be in [0.0, 1.0], got 1.5"),
        ({"sampler": "ddim", "eta": float("nan")}, "eta must be a finite number, got nan"),
        (
            {"sampler": "heun", "eta": 0.5},
            "eta=0.5 does not apply to the heun sampler; it applies to ['ddim'] only",
        ),
        ({"sampler": "ddim", "spacing": "time"}, "spacing='time' does not apply to the ddim sampler"),
        (
            {"sampler": "ddpm", "churn": 1.0},
            "churn=1.0 does not apply to the ddpm sampler; it applies to ['heun']",
        ),
        ({"sampler": "dpmpp_2m", "variance": "beta"}, "it applies to ['ddpm'] only"),
        (
            {"sampler": "ddpm", "variance": "learned"},
            "variance 'learned' is not valid; choose one of ['beta', 'beta_tilde']",
        ),
        ({"sampler": "dpmpp_2m", "spacing": "quadratic"}, "choose one of ['time', 'logsnr']"),
        ({"sampler": "heun", "timestep": "floor"}, "choose one of ['nearest', 'interpolated']"),
        ({"sampler": "ddim", "clip_x0": "yes"}, "clip_x0 must be true or false, got 'yes'"),
        ({"sampler": "heun", "churn": -1}, "churn must be in [0.0, 1000.0], got -1"),
        ({"sampler": "heun", "churn": 1, "churn_noise": 0}, "churn_noise must be in (0.0, 2.0], got 0"),
        (
            {"sampler": "heun", "churn": 1, "churn_tmin": 5, "churn_tmax": 1},
            "churn_tmax must be greater than",
        ),
        ({"sampler": "heun", "churn_tmin": 0.05}, "churn_tmin=0.05 applies only with churn > 0"),
    ],
)
def test_bad_options_are_refused_naming_the_value_and_what_is_valid(given: dict, message: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        SamplerSpec(**given)
    assert message in str(caught.value)


def test_from_params_refuses_unknown_keys_and_of_refuses_options_beside_a_spec() -> None:
    with pytest.raises(
        InvalidOption, match=r"unknown sampler options \['order'\]; valid: \['sampler', 'steps'"
    ):
        SamplerSpec.from_params({"sampler": "dpmpp_2m", "order": 3})
    with pytest.raises(InvalidOption, match=r"give \['steps'\] inside the SamplerSpec"):
        SamplerSpec.of(SamplerSpec("ddim"), steps=10)
    assert SamplerSpec.of("ddim", 10, 0.0) == SamplerSpec("ddim", 10)
    assert SamplerSpec.of("ddpm", 1000, 0.0) == SamplerSpec("ddpm"), "what older callers pass for ddpm"


def test_network_calls_per_image() -> None:
    assert [nfe(SamplerSpec(s)) for s in limits.SAMPLERS] == [1000, 50, 20, 35]
    assert SamplerSpec("heun", 10).nfe == 19 and SamplerSpec("heun", 1).nfe == 1
    assert SamplerSpec("dpmpp_2m", 15).nfe == 15
    for sampler, (_, most) in limits.SAMPLER_STEPS.items():
        assert SamplerSpec(sampler, most).nfe <= limits.DDPM_STEPS, "no sampler costs more than ddpm"
    assert "35 network calls" in SamplerSpec("heun").describe()


def test_limits_describe_every_sampler_once() -> None:
    for table in (limits.SAMPLER_STEPS, limits.DEFAULT_STEPS, limits.SAMPLER_OPTIONS):
        assert tuple(table) == limits.SAMPLERS
    for sampler, options in limits.SAMPLER_OPTIONS.items():
        assert set(options) <= set(OPTION_NAMES), sampler
        low, high = limits.SAMPLER_STEPS[sampler]
        assert low <= limits.DEFAULT_STEPS[sampler] <= high


def test_sampler_lists_take_options_after_the_steps() -> None:
    """The sampler study's and the bench's lists: name[:steps][:option=value...]; each option typed and
    checked by SamplerSpec, an unknown one named with the valid ones."""
    from ddpm.sampler_cli import parse_sampler_list

    listed = parse_sampler_list("ddpm::clip_x0=true, dpmpp_2m:20:clip_x0=true:spacing=time,heun:18,ddpm")
    assert listed == [
        SamplerSpec("ddpm", clip_x0=True),
        SamplerSpec("dpmpp_2m", 20, clip_x0=True, spacing="time"),
        SamplerSpec("heun", 18),
        SamplerSpec("ddpm"),
    ]
    with pytest.raises(InvalidOption, match="'foo=1' is not option=value with an option of"):
        parse_sampler_list("ddim:5:foo=1")
    with pytest.raises(InvalidOption, match="eta"):
        parse_sampler_list("ddim:5:eta=fast")
