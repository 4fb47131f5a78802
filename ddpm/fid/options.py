"""Validation of FID requests, torch-free so the API can reject bad input before queueing a job."""

from __future__ import annotations

from collections.abc import Sequence

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
