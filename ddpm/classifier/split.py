"""The held-out split: which images a classifier never trains on, seeded and recorded with it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from ddpm.errors import InvalidOption
from ddpm.seeding import STREAM_CLASSIFIER_SPLIT, derive_seed


def holdout_split(
    labels: Sequence[int] | np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices), each ascending.

    Stratified, so the held-out images have the data set's own class proportions (a real-data analysis
    compares with them): each class keeps round(fraction * its count) images out, at least one when it
    has two or more, chosen by a permutation seeded from (seed, class).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1 or len(labels) < 2:
        raise InvalidOption(f"a held-out split needs at least two labelled images, got {len(labels)}")
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(round(fraction * len(members)))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)  # every class both trained on and held out
        rng = np.random.default_rng(derive_seed(seed, STREAM_CLASSIFIER_SPLIT, int(label)))
        held.append(members[rng.permutation(len(members))[:count]])
    holdout = np.sort(np.concatenate(held))
    train = np.setdiff1d(np.arange(len(labels)), holdout)
    return train, holdout


def indices_digest(indices: np.ndarray) -> str:
    """A short fingerprint of a split (SHA-256 of the little-endian int64 indices), stored in the record."""
    return hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest()[:16]
