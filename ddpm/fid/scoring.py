"""Every requested metric at every N, from the one set of generated Inception features.

The headline FID is pytorch-fid's own function on np.mean / np.cov of the first N rows (exactly
pytorch-fid's number). Beside it, from the same rows: the bootstrap interval and FID-infinity (fast
symmetric-eigenproblem distances, ddpm.fid.frechet), KID and precision/recall (against the reference's
cached feature set) and the Inception Score (from the classifier head, when the weights have one).
Each metric's random draws come from its own stream of the metrics seed and N, so adding a metric or
an N changes no other number.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ddpm.fid.bootstrap import bootstrap_interval
from ddpm.fid.features import feature_statistics, frechet_distance
from ddpm.fid.fid_infinity import fid_infinity
from ddpm.fid.frechet import FrechetReference, ProjectedFeatures
from ddpm.fid.metrics import inception_score, kid, precision_recall
from ddpm.fid.options import (
    FID,
    FID_INFINITY,
    FID_INTERVAL,
    INCEPTION_SCORE,
    IS_SPLITS,
    KID,
    PR_NEIGHBOURS,
    PRECISION_RECALL,
    MetricOptions,
    fid_infinity_warning,
    kid_subset_size,
    plan_metrics,
    rank_warnings,
)
from ddpm.fid.reference import ReferenceFeatures
from ddpm.fid.score_types import Scores
from ddpm.seeding import (
    STREAM_FID_BOOTSTRAP,
    STREAM_FID_INFINITY,
    STREAM_IS_SHUFFLE,
    STREAM_KID_SUBSETS,
    derive_seed,
)

T = TypeVar("T")
LEGACY_SEED_RANGE = 2**32  # numpy's RandomState (KID subsets and IS shuffles, as torch-fidelity draws them)


@dataclass
class Scoring:
    scores: dict[int, Scores]
    warnings: list[str]  # all of them; per-N ones start with "N=<n>"
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed at all
    timings: dict[str, float] = field(default_factory=dict)  # seconds per metric, summed over N


def score_features(
    features: np.ndarray,
    counts: Sequence[int],
    reference_mu: np.ndarray,
    reference_sigma: np.ndarray,
    options: MetricOptions,
    reference_features: ReferenceFeatures | None = None,
    classifier: np.ndarray | None = None,
    unavailable: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Scoring:
    """Scores per N (N ascending; each uses the first N rows of `features`).

    `unavailable` names metrics that cannot run here (no reference features, no classifier) with the
    reason; they are left out and the reasons kept in the result. `progress(done, total)` counts the
    steps of `scoring_steps` (a distance or one metric at one N).
    """
    unavailable = dict(unavailable or {})
    plan, skipped = plan_metrics(options, counts)
    planned = {metric for wanted in plan.values() for metric in wanted}
    needs = {
        KID: (reference_features, "no reference feature set was given"),
        PRECISION_RECALL: (reference_features, "no reference feature set was given"),
        INCEPTION_SCORE: (classifier, "no classifier head was given"),
    }
    for metric, (given, why) in needs.items():
        if metric in planned and given is None:
            unavailable.setdefault(metric, why)
    if PRECISION_RECALL in planned and reference_features is not None and reference_features.radii is None:
        unavailable.setdefault(
            PRECISION_RECALL,
            f"the reference feature set has {len(reference_features.features)} rows; precision/recall "
            f"needs more than k={PR_NEIGHBOURS}",
        )
    timings: dict[str, float] = {}
    steps_total = len(scoring_steps(plan, unavailable))
    steps_done = [0]

    def step_done() -> None:
        steps_done[0] += 1
        if progress is not None:
            progress(steps_done[0], steps_total)

    def timed(metric: str, compute: Callable[..., T], *args: Any) -> T:
        clock = time.perf_counter()
        value = compute(*args)
        timings[metric] = timings.get(metric, 0.0) + time.perf_counter() - clock
        if metric != "statistics":  # the statistics are part of the FID step
            step_done()
        return value

    if progress is not None:
        progress(0, steps_total)
    projected: ProjectedFeatures | None = None
    if _needs_projection(plan):
        clock = time.perf_counter()
        projected = FrechetReference(reference_mu, reference_sigma).project(features[: max(plan)])
        timings["fast_frechet_setup"] = time.perf_counter() - clock
        step_done()

    scores: dict[int, Scores] = {}
    for n, chosen in plan.items():
        rows = features[:n]
        wanted = tuple(m for m in chosen if m not in unavailable)
        warnings = rank_warnings([n]) + [note for note in skipped if note.startswith(f"N={n}:")]
        mu, sigma = timed("statistics", feature_statistics, rows)
        fid, notes = timed("frechet", frechet_distance, mu, sigma, reference_mu, reference_sigma)
        row = Scores(n, fid, warnings=warnings + [f"N={n}: pytorch-fid: {note}" for note in notes])
        if projected is not None and FID_INTERVAL in wanted:
            seed = derive_seed(options.seed, STREAM_FID_BOOTSTRAP, n)
            row.fid_interval = timed(
                FID_INTERVAL, bootstrap_interval, projected.distance, n, fid, options.bootstrap, seed
            )
        if projected is not None and FID_INFINITY in wanted:
            seed = derive_seed(options.seed, STREAM_FID_INFINITY, n)
            row.fid_inf = timed(
                FID_INFINITY, fid_infinity, projected.distance, n, options.fid_inf_points, seed
            )
            caveat = fid_infinity_warning(n, options.fid_inf_points)
            row.warnings += [caveat] if caveat else []
        if reference_features is not None and KID in wanted:
            reference = reference_features.features
            size = kid_subset_size(n, len(reference), options)
            seed = derive_seed(options.seed, STREAM_KID_SUBSETS, n) % LEGACY_SEED_RANGE
            row.kid = timed(KID, kid, rows, reference, options.kid_subsets, size, seed)
        if reference_features is not None and PRECISION_RECALL in wanted:
            row.precision_recall = timed(
                PRECISION_RECALL,
                precision_recall,
                rows,
                reference_features.features,
                PR_NEIGHBOURS,
                reference_features.radii,
            )
        if classifier is not None and INCEPTION_SCORE in wanted:
            seed = derive_seed(options.seed, STREAM_IS_SHUFFLE, n) % LEGACY_SEED_RANGE
            # pool3 features times the classifier weight: the logits without bias, as the original
            # Inception Score code and torch-fidelity take them; no second network pass.
            row.inception_score = timed(
                INCEPTION_SCORE, inception_score, rows @ classifier.T, IS_SPLITS, seed
            )
        scores[n] = row
    every = [w for row in scores.values() for w in row.warnings]
    return Scoring(scores, every, unavailable, timings)


def _needs_projection(plan: dict[int, tuple[str, ...]]) -> bool:
    return any(m in wanted for wanted in plan.values() for m in (FID_INTERVAL, FID_INFINITY))


def scoring_steps(plan: dict[int, tuple[str, ...]], unavailable: Mapping[str, str]) -> list[tuple[str, int]]:
    """(metric, N) of each step score_features runs, in its order: the fast distance's setup
    ("projection") when a bootstrap or FID-infinity needs it, then per N the FID and each metric beside
    it that can run. The evaluator plans its progress with the same list."""
    steps: list[tuple[str, int]] = [("projection", max(plan))] if _needs_projection(plan) else []
    for n, chosen in plan.items():
        steps.append((FID, n))
        steps += [(m, n) for m in chosen if m != FID and m not in unavailable]
    return steps
