"""FID-infinity (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to find them").

FID_N, computed from N samples, is biased upward by a term that falls like 1/N. Drawing random subsets
of sizes N_1 < ... < N_k from the one sample set, computing FID at each and fitting the line
FID = a + b / N by least squares gives a, the extrapolation to infinitely many samples: an estimate
that does not depend on N. The paper draws 15 sizes evenly from 5,000 to 50,000 (a tenth of N to N);
we keep that shape (ddpm.fid.options.fid_infinity_sizes). The points and the fit are kept so a figure
can show them; the intercept's standard error comes from the fit's residuals.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ddpm.fid.options import fid_infinity_sizes
from ddpm.fid.score_types import FidInfinity

RowsDistance = Callable[[np.ndarray], float]  # FID of the chosen feature rows


def fit_inverse_n(points: list[tuple[int, float]]) -> FidInfinity:
    """Least-squares line FID = a + b / N through the points; a's standard error from the residuals."""
    sizes = np.array([n for n, _ in points], dtype=np.float64)
    values = np.array([value for _, value in points], dtype=np.float64)
    design = np.column_stack([np.ones_like(sizes), 1.0 / sizes])
    (intercept, slope), *_ = np.linalg.lstsq(design, values, rcond=None)
    se = None
    if len(points) > 2:
        residuals = values - design @ np.array([intercept, slope])
        variance = residuals @ residuals / (len(points) - 2)
        se = float(np.sqrt(variance * np.linalg.inv(design.T @ design)[0, 0]))
    return FidInfinity(float(intercept), se, float(slope), tuple((int(n), float(v)) for n, v in points))


def fid_infinity(distance: RowsDistance, n: int, points: int, seed: int) -> FidInfinity:
    """FID-infinity from the first n feature rows: a fresh random subset (seeded) per size, then the fit."""
    rng = np.random.default_rng(seed)
    measured = [(size, distance(rng.permutation(n)[:size])) for size in fid_infinity_sizes(n, points)]
    return fit_inverse_n(measured)
