"""Deterministic seeds derived from a user's seed, one independent stream per purpose."""

from __future__ import annotations

import numpy as np

# Stream tags keep derived seeds of different purposes apart (image noise, epoch order, training draws).
STREAM_IMAGE_NOISE = 0
STREAM_EPOCH_ORDER = 1
STREAM_TRAINING = 2
# Evaluation metrics (ddpm.fid.scoring): subsets, resamples and shuffles, one stream each.
STREAM_KID_SUBSETS = 3
STREAM_FID_BOOTSTRAP = 4
STREAM_FID_INFINITY = 5
STREAM_IS_SHUFFLE = 6


def derive_seed(seed: int, stream: int, index: int = 0) -> int:
    """A well-mixed 63-bit seed for (seed, stream, index); nearby inputs give unrelated seeds."""
    state = np.random.SeedSequence([seed, stream, index]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> 1)
