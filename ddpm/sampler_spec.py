"""Which sampler, with which options: a small frozen value that crosses process boundaries. No torch.

The API builds one from a request and validates it before queueing anything; a worker rebuilds it from
the job's parameters (`to_params` / `from_params`); the engine runs it (`ddpm.samplers.sample`). Names,
bounds and defaults live in `ddpm.limits`.

A spec is normalised on construction: the sampler's own options get their defaults, options it does not
read are left unset (None), so two requests that give the same pixels give equal specs and equal cache
keys ("ddim" and "ddim, 50 steps, eta 0" are one spec). An option given to a sampler that does not read
it is refused, except the values that mean "off" for it (eta 0, the ddpm sampler's own 1000 steps), which
older callers pass to every sampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from ddpm.errors import InvalidOption
from ddpm.limits import (
    DDPM_VARIANCES,
    DEFAULT_STEPS,
    DPM_SPACINGS,
    HEUN_TIMESTEPS,
    MAX_CHURN,
    MAX_CHURN_NOISE,
    MAX_SIGMA,
    SAMPLER_OPTIONS,
    SAMPLER_STEPS,
    SAMPLERS,
)

CHOICES = {"variance": DDPM_VARIANCES, "spacing": DPM_SPACINGS, "timestep": HEUN_TIMESTEPS}
CHURN_DETAILS = ("churn_tmin", "churn_tmax", "churn_noise")  # read only when churn > 0


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler and its options, normalised. Leave an option None for the sampler's default.

    - steps: ddpm always T; ddim, dpmpp_2m: network calls; heun: noise levels (2 * steps - 1 calls).
    - eta (ddim): 0 deterministic, 1 the DDPM posterior variance.
    - clip_x0 (all): clamp each step's predicted x_0 to [-1, 1]; default on for ddim only.
    - variance (ddpm): "beta" (the report's sigma_t^2 = beta_t) or "beta_tilde" (the posterior's).
    - spacing (dpmpp_2m): "time" (uniform in t) or "logsnr" (uniform in log-SNR).
    - timestep (heun): "interpolated" (fractional t between the network's two nearest noise levels)
      or "nearest" (the nearest integer t).
    - churn, churn_tmin, churn_tmax, churn_noise (heun): Karras et al.'s S_churn, S_tmin, S_tmax, S_noise;
      churn 0 (the default) is their deterministic Algorithm 1.
    """

    sampler: str = "ddpm"
    steps: int | None = None
    eta: float | None = None
    clip_x0: bool | None = None
    variance: str | None = None
    spacing: str | None = None
    timestep: str | None = None
    churn: float | None = None
    churn_tmin: float | None = None
    churn_tmax: float | None = None
    churn_noise: float | None = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise InvalidOption(f"sampler {self.sampler!r} is not valid; choose one of {list(SAMPLERS)}")
        own = SAMPLER_OPTIONS[self.sampler]
        self._set("steps", _steps(self.sampler, self.steps))
        for name in OPTION_NAMES:
            value = getattr(self, name)
            if name not in own:
                self._refuse_foreign(name, value)
                continue
            self._set(name, _checked(name, own[name] if value is None else value))
        if self.sampler == "heun":
            self._check_churn()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _refuse_foreign(self, name: str, value: Any) -> None:
        if value is None or (name == "eta" and _is_zero(value)):
            self._set(name, None)
            return
        users = [s for s in SAMPLERS if name in SAMPLER_OPTIONS[s]]
        raise InvalidOption(
            f"{name}={value!r} does not apply to the {self.sampler} sampler; it applies to {users} only"
        )

    def _check_churn(self) -> None:
        if self.churn_tmax is not None and self.churn_tmax <= self.churn_tmin:
            raise InvalidOption(
                f"churn_tmax must be greater than churn_tmin ({self.churn_tmin}), got {self.churn_tmax}"
            )
        if self.churn == 0:  # deterministic: the churn range and noise scale change nothing
            defaults = SAMPLER_OPTIONS["heun"]
            for name in CHURN_DETAILS:
                if getattr(self, name) != defaults[name]:
                    raise InvalidOption(
                        f"{name}={getattr(self, name)!r} applies only with churn > 0 (churn is 0)"
                    )
                self._set(name, None)

    @property
    def nfe(self) -> int:
        """Network calls per image (number of function evaluations)."""
        return nfe(self)

    def options(self) -> dict[str, Any]:
        """The options this sampler reads (steps excluded), as set; unset ones are left out."""
        return {name: getattr(self, name) for name in OPTION_NAMES if getattr(self, name) is not None}

    def to_params(self) -> dict[str, Any]:
        """A JSON-able dict; `from_params` of it gives an equal spec."""
        return {"sampler": self.sampler, "steps": self.steps, **self.options()}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SamplerSpec:
        unknown = sorted(set(params) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidOption(
                f"unknown sampler options {unknown}; valid: {['sampler', 'steps', *OPTION_NAMES]}"
            )
        return cls(**params)

    def cache_key(self) -> dict[str, Any]:
        """Every option that changes pixels, with defaults filled in: equal for equivalent requests.
        (Today the same dict as to_params: a spec holds nothing that leaves pixels unchanged.)"""
        return self.to_params()

    def describe(self) -> str:
        """One line for people: 'dpmpp_2m 20 steps (20 network calls), spacing logsnr'."""
        extra = ", ".join(f"{k} {v}" for k, v in self.options().items())
        return f"{self.sampler} {self.steps} steps ({self.nfe} network calls)" + (
            f", {extra}" if extra else ""
        )

    @classmethod
    def of(
        cls, sampler: str | SamplerSpec, steps: int | None = None, eta: float | None = None, **options: Any
    ) -> SamplerSpec:
        """A spec from either a spec (then nothing else may be given) or a name and options: what the
        engine's functions accept as their `sampler` argument, with the old `steps` and `eta` beside it."""
        if isinstance(sampler, SamplerSpec):
            given = {"steps": steps, "eta": eta, **options}
            extra = sorted(k for k, v in given.items() if v is not None)
            if extra:
                raise InvalidOption(f"give {extra} inside the SamplerSpec, not beside it")
            return sampler
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise InvalidOption(f"unknown sampler options {unknown}; valid: {list(OPTION_NAMES)}")
        return cls(sampler, steps, eta, **options)


OPTION_NAMES = tuple(f.name for f in fields(SamplerSpec) if f.name not in ("sampler", "steps"))


def nfe(spec: SamplerSpec) -> int:
    """Network calls per image: Heun evaluates twice per step except the last (Euler, to sigma 0)."""
    return 2 * spec.steps - 1 if spec.sampler == "heun" else spec.steps


def _steps(sampler: str, steps: Any) -> int:
    low, high = SAMPLER_STEPS[sampler]
    if steps is None:
        return DEFAULT_STEPS[sampler]
    if isinstance(steps, bool) or not isinstance(steps, int) or not low <= steps <= high:
        if low == high:
            raise InvalidOption(
                f"the {sampler} sampler always runs {low} steps, got steps={steps!r}; for fewer network "
                f"calls choose one of {[s for s in SAMPLERS if SAMPLER_STEPS[s][0] != SAMPLER_STEPS[s][1]]}"
            )
        raise InvalidOption(f"steps must be an integer in [{low}, {high}] for {sampler}, got {steps!r}")
    return steps


def _is_zero(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


def _number(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidOption(f"{name} must be a finite number, got {value!r}")
    if not (low < value if low_open else low <= value) or value > high:
        bracket = "(" if low_open else "["
        raise InvalidOption(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def _checked(name: str, value: Any) -> Any:
    """The option's value, validated and in its canonical type (floats as float, so 0 and 0.0 key alike)."""
    if value is None and name == "churn_tmax":  # no upper bound
        return None
    if name in CHOICES:
        if value not in CHOICES[name]:
            raise InvalidOption(f"{name} {value!r} is not valid; choose one of {list(CHOICES[name])}")
        return value
    if name == "clip_x0":
        if not isinstance(value, bool):
            raise InvalidOption(f"clip_x0 must be true or false, got {value!r}")
        return value
    if name == "eta":
        return _number(name, value, 0.0, 1.0)
    if name == "churn":
        return _number(name, value, 0.0, MAX_CHURN)
    if name == "churn_noise":
        return _number(name, value, 0.0, MAX_CHURN_NOISE, low_open=True)
    if name in ("churn_tmin", "churn_tmax"):
        return _number(name, value, 0.0, MAX_SIGMA)
    raise AssertionError(f"no check for option {name}")  # a new field without a check is a bug here
