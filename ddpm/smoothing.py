"""Loss smoothing shared by the service's loss plot and the study report. No torch, no numpy."""

from __future__ import annotations

import math
from collections.abc import Sequence


def smooth_ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's scalar smoothing: an exponential moving average, debiased so the first points are
    not pulled towards zero (each point divides by the weight the average has accumulated so far)."""
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out, average, accumulated = [], 0.0, 0.0
    for value in values:
        if math.isfinite(value):  # a diverged step (nan, inf) would poison every later point
            average = average * weight + (1 - weight) * value
            accumulated = accumulated * weight + (1 - weight)
        out.append(average / accumulated if accumulated else math.nan)
    return out
