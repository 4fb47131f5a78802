"""An interval for FID: the bootstrap over the generated features' rows (Efron's nonparametric bootstrap).

Each replicate resamples the N rows with replacement (seeded) and recomputes FID against the same
reference statistics with the fast symmetric-eigenproblem distance. Their standard deviation estimates
FID's standard error at this N from this one sample set (the reference's own sampling error is not
included: its statistics are fixed). The interval is FID +- z * se. A resample repeats rows, which
acts like fewer samples, so the replicates' mean lies above FID by about FID's own small-N bias; that
is why the interval is centred on FID rather than on the replicates (their mean is reported too).
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from ddpm.fid.fid_infinity import RowsDistance
from ddpm.fid.score_types import FidInterval

LEVEL = 0.95


def bootstrap_interval(
    distance: RowsDistance, n: int, fid: float, replicates: int, seed: int, level: float = LEVEL
) -> FidInterval:
    """FID +- z * (std of `replicates` bootstrap FIDs of the first n rows)."""
    rng = np.random.default_rng(seed)
    values = np.array([distance(rng.integers(0, n, size=n)) for _ in range(replicates)])
    se = float(values.std(ddof=1))
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return FidInterval(fid - z * se, fid + z * se, se, level, replicates, float(values.mean()))
