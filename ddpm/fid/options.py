"""Validation of FID requests, torch-free so the API can reject bad input before queueing a job."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ddpm.errors import InvalidOption
from ddpm.limits import DEFAULT_FID_SAMPLES
from ddpm.limits import MAX_SAMPLES as MAX_N
from ddpm.limits import MIN_FID_SAMPLES as MIN_N

FEATURE_DIMS = 2048  # pool3 features: fewer samples than this give a rank-deficient covariance
DEFAULT_N = DEFAULT_FID_SAMPLES  # the report's choice (section 2.6, figure 9)


def check_n_samples(n_samples: int | Sequence[int]) -> list[int]:
    """The distinct sample counts, ascending; raises InvalidOption naming the bad value and the range."""
    if isinstance(n_samples, Sequence) and not isinstance(n_samples, str):
        values = list(n_samples)
    else:
        values = [n_samples]
    if not values:
        raise InvalidOption(f"give at least one sample count N in [{MIN_N}, {MAX_N}]")
    for n in values:
        # bool is an int subclass; True as "N" is surely a mistake
        if isinstance(n, bool) or not isinstance(n, int) or not MIN_N <= n <= MAX_N:
            raise InvalidOption(f"sample count N must be an integer in [{MIN_N}, {MAX_N}], got {n!r}")
    return sorted(set(values))


def parse_n_list(text: str) -> list[int]:
    """'4096' or '256,512,1024' (the CLI's --n) -> validated counts."""
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as err:
        raise InvalidOption(
            f"--n must be an integer or a comma-separated list of integers, got {text!r}"
        ) from err
    return check_n_samples(values)


def rank_warnings(n_samples: Sequence[int]) -> list[str]:
    """A warning per N below the feature dimension (pytorch-fid's README advises N >= 2048)."""
    return [
        f"N={n} < {FEATURE_DIMS}: the sample covariance is rank-deficient, so FID is biased upward and "
        f"not comparable with FIDs at other N; use N >= {FEATURE_DIMS} (the report used 4096)"
        for n in n_samples
        if n < FEATURE_DIMS
    ]


# Metrics. All come from the one Inception feature pass that FID makes (no second network pass).
FID = "fid"  # pytorch-fid's number: always computed, the headline
FID_INTERVAL = "fid_interval"  # bootstrap over the generated features
FID_INFINITY = "fid_inf"  # Chong & Forsyth 2020: FID at several N, extrapolated to 1/N = 0
KID = "kid"  # Binkowski et al. 2018: unbiased MMD^2, cubic polynomial kernel
PRECISION_RECALL = "precision_recall"  # Kynkaanniemi et al. 2019, k-NN manifolds
INCEPTION_SCORE = "inception_score"  # needs the classifier head of pytorch-fid's original weights
METRICS = (FID, FID_INTERVAL, FID_INFINITY, KID, PRECISION_RECALL, INCEPTION_SCORE)
DEFAULT_METRICS = METRICS  # the default asks for all; each runs where its N allows and says why not
REFERENCE_FEATURE_METRICS = (KID, PRECISION_RECALL)  # need the reference's features, not only mu, sigma

PR_NEIGHBOURS = 3  # k of the k-NN manifolds (the paper's choice)
DEFAULT_KID_SUBSETS = 100  # torch-fidelity's and clean-fid's default
MAX_KID_SUBSETS = 10_000
# Default KID subset size: min(1000, half of N, half of the reference rows), at least 2. 1000 is
# torch-fidelity's and clean-fid's size; the halves are ours: with subsets as large as the set, every
# subset holds nearly the same rows and the std over subsets collapses (real digits, N = 898: a std of
# 5e-6 around a KID of -6e-5), while half-size subsets differ on both sides (docs/fid.md).
KID_SUBSET_CAP = 1000
DEFAULT_BOOTSTRAP = 50  # replicates; the standard error's own relative error is about 1/sqrt(2B) = 10%
MAX_BOOTSTRAP = 10_000
DEFAULT_FID_INF_POINTS = 15  # Chong & Forsyth's choice
MAX_FID_INF_POINTS = 100
# FID-infinity's smallest N is this fraction of the largest (Chong & Forsyth: 5,000 of 50,000).
FID_INF_LOW_FRACTION = 0.1
IS_SPLITS = 10  # the Inception Score's customary splits
MAX_METRIC_SEED = 2**63 - 1


@dataclass(frozen=True)
class MetricOptions:
    """Which metrics to compute beside FID, and their options; `to_params`/`from_params` for job records.

    `metrics=None` means DEFAULT_METRICS, each computed at the N where it can be and skipped with a note
    elsewhere; naming metrics asks for exactly those, and an N too small for one of them is an error.
    """

    metrics: tuple[str, ...] | None = None
    kid_subsets: int = DEFAULT_KID_SUBSETS
    kid_subset_size: int | None = None  # None: min(1000, N // 2, reference rows // 2), at least 2, per N
    bootstrap: int = DEFAULT_BOOTSTRAP
    fid_inf_points: int = DEFAULT_FID_INF_POINTS
    seed: int = 0  # subsets, resamples and shuffles; independent of the sampling seed

    def __post_init__(self) -> None:
        if self.metrics is not None:
            if isinstance(self.metrics, str) or not all(isinstance(m, str) for m in self.metrics):
                raise InvalidOption(
                    f"metrics must be a list of names from {list(METRICS)}, got {self.metrics!r}"
                )
            unknown = [m for m in self.metrics if m not in METRICS]
            if unknown:
                raise InvalidOption(f"unknown metric {unknown[0]!r}; valid metrics are {', '.join(METRICS)}")
            object.__setattr__(self, "metrics", tuple(m for m in METRICS if m in self.metrics))
        _check_int("kid_subsets", self.kid_subsets, 1, MAX_KID_SUBSETS)
        if self.kid_subset_size is not None:
            _check_int("kid_subset_size", self.kid_subset_size, 2, MAX_N)
        _check_int("bootstrap", self.bootstrap, 2, MAX_BOOTSTRAP)
        _check_int("fid_inf_points", self.fid_inf_points, 2, MAX_FID_INF_POINTS)
        _check_int("metrics_seed", self.seed, 0, MAX_METRIC_SEED)

    @property
    def explicit(self) -> bool:
        return self.metrics is not None

    @property
    def requested(self) -> tuple[str, ...]:
        """The metrics asked for; FID always."""
        chosen = DEFAULT_METRICS if self.metrics is None else self.metrics
        return tuple(m for m in METRICS if m == FID or m in chosen)

    def to_params(self) -> dict[str, Any]:
        return {
            "metrics": None if self.metrics is None else list(self.metrics),
            "kid_subsets": self.kid_subsets,
            "kid_subset_size": self.kid_subset_size,
            "bootstrap": self.bootstrap,
            "fid_inf_points": self.fid_inf_points,
            "metrics_seed": self.seed,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MetricOptions:
        """The options from a job's parameters (absent keys take their defaults: older jobs)."""
        metrics = params.get("metrics")
        if isinstance(metrics, list):
            metrics = tuple(metrics)
        return cls(
            metrics=metrics,
            kid_subsets=params.get("kid_subsets", DEFAULT_KID_SUBSETS),
            kid_subset_size=params.get("kid_subset_size"),
            bootstrap=params.get("bootstrap", DEFAULT_BOOTSTRAP),
            fid_inf_points=params.get("fid_inf_points", DEFAULT_FID_INF_POINTS),
            seed=params.get("metrics_seed", 0),
        )


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOption(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def fid_infinity_sizes(n: int, points: int) -> list[int]:
    """The N_i FID-infinity fits at, evenly spaced from FID_INF_LOW_FRACTION * n up to n, distinct."""
    low = max(MIN_N, math.ceil(n * FID_INF_LOW_FRACTION))
    if n - low < points - 1:
        raise InvalidOption(
            f"FID-infinity with {points} points needs N >= {_smallest_fid_infinity_n(points)}, got {n}"
        )
    step = (n - low) / (points - 1)  # >= 1, so the rounded sizes are distinct
    return [round(low + i * step) for i in range(points)]


def fid_infinity_warning(n: int, points: int) -> str | None:
    """A warning when FID-infinity's points lie below the feature dimension, where its 1/N law fails."""
    lowest = fid_infinity_sizes(n, points)[0]
    if lowest >= FEATURE_DIMS:
        return None
    return (
        f"N={n}: FID-infinity's smallest sample count {lowest} is below the {FEATURE_DIMS} feature "
        f"dimensions; the 1/N law it extrapolates holds only well above them (Chong & Forsyth fit 5,000 "
        f"to 50,000), so here it removes only part of FID's small-N bias (N >= "
        f"{math.ceil(FEATURE_DIMS / FID_INF_LOW_FRACTION)} for points above {FEATURE_DIMS})"
    )


def _smallest_fid_infinity_n(points: int) -> int:
    n = MIN_N
    while n - max(MIN_N, math.ceil(n * FID_INF_LOW_FRACTION)) < points - 1:
        n += 1
    return n


def minimum_n(metric: str, options: MetricOptions) -> int:
    """The smallest sample count at which `metric` is defined with these options."""
    if metric in (FID, FID_INTERVAL):
        return MIN_N  # a covariance needs two rows (below 2048 FID is marked: rank_warnings)
    if metric == KID:
        return max(MIN_N, options.kid_subset_size or MIN_N)  # subsets are drawn without replacement
    if metric == PRECISION_RECALL:
        return PR_NEIGHBOURS + 1  # each point needs k neighbours other than itself
    if metric == FID_INFINITY:
        return _smallest_fid_infinity_n(options.fid_inf_points)
    if metric == INCEPTION_SCORE:
        return IS_SPLITS
    raise InvalidOption(f"unknown metric {metric!r}; valid metrics are {', '.join(METRICS)}")


def plan_metrics(
    options: MetricOptions, counts: Sequence[int]
) -> tuple[dict[int, tuple[str, ...]], list[str]]:
    """Which metrics run at each N, and a note for each one skipped because N is below its minimum.

    With metrics named explicitly, an N below a named metric's minimum raises InvalidOption (the API
    answers 422 before queueing); with the default set the metric is skipped at that N only.
    """
    counts = check_n_samples(list(counts))
    plan: dict[int, tuple[str, ...]] = {}
    notes: list[str] = []
    for metric in options.requested:
        lowest = minimum_n(metric, options)
        too_small = [n for n in counts if n < lowest]
        if too_small and options.explicit:
            raise InvalidOption(
                f"{metric} needs N >= {lowest}{_why(metric, options)}; N={too_small[0]} is too small "
                f"(ask for larger n_samples or leave {metric} out)"
            )
        notes += [
            f"N={n}: {metric} skipped: it needs N >= {lowest}{_why(metric, options)}" for n in too_small
        ]
    for n in counts:
        plan[n] = tuple(m for m in options.requested if n >= minimum_n(m, options))
    return plan, notes


def _why(metric: str, options: MetricOptions) -> str:
    return {
        KID: " (its subset size)" if options.kid_subset_size else "",
        PRECISION_RECALL: f" (k={PR_NEIGHBOURS} neighbours besides itself)",
        FID_INFINITY: f" ({options.fid_inf_points} distinct sample counts from {FID_INF_LOW_FRACTION:g} N to N)",
        INCEPTION_SCORE: f" ({IS_SPLITS} splits)",
    }.get(metric, "")


def kid_subset_size(n: int, reference_rows: int, options: MetricOptions) -> int:
    """The KID subset size at this N: the option, or min(1000, N // 2, reference rows // 2), at least 2."""
    size = options.kid_subset_size or max(MIN_N, min(KID_SUBSET_CAP, n // 2, reference_rows // 2))
    if size > min(n, reference_rows):
        raise InvalidOption(
            f"KID's subset size {size} is larger than N={n} or the reference feature set ({reference_rows} rows)"
        )
    return size


def check_metric_request(n_samples: int | Sequence[int], params: Mapping[str, Any]) -> MetricOptions:
    """The API's and the worker's one call: options from request/job parameters, checked against N.

    Raises InvalidOption (the API answers 422) for an unknown metric, an option out of range, or an N
    below a named metric's minimum; reads the keys of MetricOptions.to_params and ignores the rest.
    """
    options = MetricOptions.from_params(params)
    plan_metrics(options, check_n_samples(n_samples))
    return options
