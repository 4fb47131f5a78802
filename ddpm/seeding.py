"""Deterministic seeds derived from a user's seed, one independent stream per purpose."""

from __future__ import annotations

import numpy as np

# Stream tags keep derived seeds of different purposes apart (image noise, epoch order, training draws).
STREAM_IMAGE_NOISE = 0
STREAM_EPOCH_ORDER = 1
STREAM_TRAINING = 2
STREAM_CLASSIFIER_SPLIT = 3  # a classifier's held-out split
STREAM_CLASSIFIER_TRAINING = 4  # a classifier's weight init and augmentation draws
STREAM_ANALYSIS = 5  # which real images an analysis of real data takes; the null distribution's draws
# Evaluation metrics (ddpm.fid.scoring): subsets, resamples and shuffles, one stream each.
STREAM_KID_SUBSETS = 6
STREAM_FID_BOOTSTRAP = 7
STREAM_FID_INFINITY = 8
STREAM_IS_SHUFFLE = 9


def derive_seed(seed: int, stream: int, index: int = 0) -> int:
    """A well-mixed 63-bit seed for (seed, stream, index); nearby inputs give unrelated seeds."""
    state = np.random.SeedSequence([seed, stream, index]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> 1)
