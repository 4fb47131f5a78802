"""The sampler's command-line options, shared by `ddpm sample` and `ddpm fid`. No torch."""

from __future__ import annotations

import argparse
from typing import Any

from ddpm.errors import InvalidOption
from ddpm.limits import (
    DDPM_VARIANCES,
    DEFAULT_STEPS,
    DPM_SPACINGS,
    HEUN_TIMESTEPS,
    REPORT_SAMPLER,
    SAMPLER_OPTIONS,
    SAMPLER_STEPS,
    SAMPLERS,
)
from ddpm.sampler_spec import OPTION_NAMES, SamplerSpec


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each option's default, except unset ones (None: the help text says what applies) and
    ones whose help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _default(sampler: str, option: str) -> object:
    return SAMPLER_OPTIONS[sampler][option]


def add_sampler_arguments(parser: argparse.ArgumentParser, default: str = REPORT_SAMPLER) -> None:
    """--sampler (default `default`), --steps and every sampler option. Each option defaults to None
    ("the sampler's own"), so an option given to a sampler that does not read it is refused rather than
    ignored."""
    group = parser.add_argument_group(
        "sampler", "which sampler and its options; an option applies only to the samplers named in its help"
    )
    group.add_argument(
        "--sampler",
        default=default,
        choices=SAMPLERS,
        help="ddpm: the report's 1000-step ancestral sampler; ddim; dpmpp_2m: DPM-Solver++(2M); "
        "heun: Karras et al.'s second-order sampler",
    )
    ranges = ", ".join(
        f"{s} {DEFAULT_STEPS[s]} in [{SAMPLER_STEPS[s][0]}, {SAMPLER_STEPS[s][1]}]" for s in SAMPLERS[1:]
    )
    group.add_argument(
        "--steps",
        type=int,
        help=f"steps (default: {ranges}); ddpm always runs {DEFAULT_STEPS['ddpm']}; heun makes 2*steps-1 "
        "network calls, the others one per step",
    )
    group.add_argument(
        "--eta", type=float, help=f"ddim: 0 deterministic, 1 DDPM-like (default {_default('ddim', 'eta')})"
    )
    group.add_argument(
        "--clip-x0",
        action=argparse.BooleanOptionalAction,
        help="clamp each step's predicted x_0 to [-1, 1] (default: on for ddim, off for the others)",
    )
    group.add_argument(
        "--variance",
        choices=DDPM_VARIANCES,
        help=f"ddpm: sigma_t^2 = beta_t or the posterior's beta-tilde_t (default {_default('ddpm', 'variance')})",
    )
    group.add_argument(
        "--spacing",
        choices=DPM_SPACINGS,
        help=f"dpmpp_2m: steps uniform in time or in log-SNR (default {_default('dpmpp_2m', 'spacing')})",
    )
    group.add_argument(
        "--timestep",
        choices=HEUN_TIMESTEPS,
        help="heun: the network's t between two of its noise levels, fractional or rounded "
        f"(default {_default('heun', 'timestep')})",
    )
    group.add_argument(
        "--churn", type=float, help="heun: Karras et al.'s S_churn; 0 is deterministic (default 0)"
    )
    group.add_argument("--churn-tmin", type=float, help="heun: churn only at sigma >= this (default 0)")
    group.add_argument(
        "--churn-tmax", type=float, help="heun: churn only at sigma <= this (default: no bound)"
    )
    group.add_argument("--churn-noise", type=float, help="heun: S_noise, the churn noise's scale (default 1)")


def spec_from_args(args: argparse.Namespace) -> SamplerSpec:
    """The validated spec of what the command line asked for (InvalidOption names a bad value)."""
    options = {name: getattr(args, name) for name in OPTION_NAMES}
    return SamplerSpec(args.sampler, args.steps, **options)


def parse_sampler_list(text: str) -> list[SamplerSpec]:
    """'ddpm,ddim:50,dpmpp_2m:20:clip_x0=true,heun:18' (name[:steps][:option=value...], comma-separated;
    `ddpm::clip_x0=true` leaves the steps at their default) -> validated specs."""
    specs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, *rest = part.split(":")
        steps, pairs = (rest[0], rest[1:]) if rest else ("", [])
        try:
            count = int(steps) if steps else None
        except ValueError as err:
            raise InvalidOption(f"{part!r}: steps after ':' must be an integer, e.g. ddim:50") from err
        specs.append(SamplerSpec(name, count, **_sampler_options(part, pairs)))
    if not specs:
        raise InvalidOption(
            f"give samplers as name[:steps][:option=value], comma-separated, e.g. ddim:50,heun:18; got {text!r}"
        )
    return specs


def _sampler_options(part: str, pairs: list[str]) -> dict[str, Any]:
    """['clip_x0=true', 'spacing=time'] -> typed options for SamplerSpec (which checks their values)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in OPTION_NAMES:
            raise InvalidOption(
                f"{part!r}: {pair!r} is not option=value with an option of {list(OPTION_NAMES)}"
            )
        options[key] = _typed(value)
    return options


def _typed(value: str) -> Any:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(value)
    except ValueError:
        return value
