"""What an FID evaluation is about to do and what each phase will cost, so its progress can be told in
proportion to the work instead of by fixed shares.

Costs are in Inception-image equivalents: one image through pytorch-fid's Inception counts 1. The other
phases are converted by counted work (GFLOP) and by how efficiently each kind of work runs (its fraction
of the machine's matmul rate), both measured:
- sampling: the UNet's GFLOP per network call (counted from the checkpoint's own config) times the
  network calls per image, against Inception's 11.4 GFLOP, scaled by the two phases' efficiency. The
  efficiencies are the last FID job's on this service (its `throughput`, kept in Redis for /metrics) or,
  without one, docs/performance.md's measured digits job (sampling 0.03, Inception 0.75 of the rate):
  small UNets are dominated by per-call overheads, so their work runs far below Inception's rate.
- the Frechet distances and the metrics beside FID: seconds measured on two quiet CPU cores
  (docs/fid.md: one pytorch-fid `sqrtm` 35 s, the fast distance's setup 7 s, a bootstrap resample
  0.03-2.7 s by N) over the Inception image's 0.5 s on the same cores.

The plan is an estimate: a job's progress moves in proportion to it, never backwards (the reporter
keeps the fraction monotone), and its phases' actual times are still recorded in the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ddpm.data import FOLDER_PREFIX, IMAGE_SUFFIXES
from ddpm.fid.options import (
    FID,
    FID_INFINITY,
    FID_INTERVAL,
    INCEPTION_SCORE,
    KID,
    KID_SUBSET_CAP,
    PRECISION_RECALL,
    MetricOptions,
)

INCEPTION_GFLOP = 11.42  # pytorch-fid's Inception per image, at 299x299 whatever the input size
# Fractions of the matmul rate from docs/performance.md's FID job (baseline width 0.25, digits, DDIM 50).
DEFAULT_SAMPLING_FRACTION = 0.03
DEFAULT_INCEPTION_FRACTION = 0.75
INCEPTION_IMAGE_S = 0.5  # docs/fid.md: 2.0 Inception images/s on two quiet CPU cores

# Seconds of each scoring step on the same cores (docs/fid.md, "Speed of one Frechet distance").
SQRTM_S = 35.0  # pytorch-fid's distance of a 2048x2048 covariance
PROJECTION_S = 7.2  # the fast distance's setup: the reference's square root (5.5 s) and one projection
FULL_GRAM_S = 2.7  # one fast distance of 2048 or more rows; fewer rows scale as rows^3 (a Gram matrix)
MIN_FAST_DISTANCE_S = 0.03
KID_SUBSET_S = 0.02  # one subset of 1000 rows against 1000 (three 1000x1000x2048 products)
PR_S_PER_MILLION_PAIRS = 1.0  # pairwise distances of 2048-d rows, by the pair
DIGITS_IMAGES = 1797  # scikit-learn's bundled digits
CIFAR10_IMAGES = 50_000

SAMPLING, FEATURES, REFERENCE, REFERENCE_FEATURES, SCORING, THROUGHPUT = (
    "sampling",
    "features",
    "reference",
    "reference_features",
    "scoring",
    "throughput",
)
MATMUL_MEASURE_S = (
    3.0  # the yardstick product the throughput record is measured against (ddpm.fid.throughput)
)


@dataclass(frozen=True)
class PhasePlan:
    """One phase: what its progress reports count (`units`: images, network calls or scoring steps),
    the images it handles (for messages) and its whole cost; scoring's steps carry their own cost."""

    name: str
    units: int
    images: int
    cost: float
    steps: tuple[tuple[str, float], ...] = ()  # scoring: (what the step computes, its cost)


@dataclass(frozen=True)
class WorkPlan:
    phases: tuple[PhasePlan, ...]
    efficiency: dict[str, float] = field(default_factory=dict)  # sampling / features fraction used

    @property
    def total_cost(self) -> float:
        return sum(phase.cost for phase in self.phases)

    def phase(self, name: str) -> PhasePlan | None:
        return next((phase for phase in self.phases if phase.name == name), None)


def dataset_images(dataset: str, data_dir: Path) -> int:
    """How many images the data set has, without loading it (a folder is counted by file name)."""
    if dataset == "digits":
        return DIGITS_IMAGES
    if dataset == "cifar10":
        return CIFAR10_IMAGES
    folder = Path(dataset[len(FOLDER_PREFIX) :])
    folder = folder if folder.is_absolute() else data_dir / "datasets" / folder
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def sampling_call_cost(unet_gflop_per_call: float | None, efficiency: Mapping[str, float]) -> float:
    """Inception-image equivalents of one network call on one image."""
    sampling = efficiency.get(SAMPLING) or DEFAULT_SAMPLING_FRACTION
    inception = efficiency.get(FEATURES) or DEFAULT_INCEPTION_FRACTION
    gflop = unet_gflop_per_call if unet_gflop_per_call else INCEPTION_GFLOP / 50  # uncounted: a small UNet
    return gflop / INCEPTION_GFLOP * inception / sampling


def fast_distance_s(rows: int) -> float:
    return max(MIN_FAST_DISTANCE_S, FULL_GRAM_S * (min(rows, 2048) / 2048) ** 3)


def scoring_step_cost(metric: str, n: int, options: MetricOptions, reference_rows: int) -> float:
    """Inception-image equivalents of one scoring step (`projection` is the fast distance's setup)."""
    if metric == FID:
        seconds = SQRTM_S
    elif metric == "projection":
        seconds = PROJECTION_S
    elif metric == FID_INTERVAL:
        seconds = options.bootstrap * fast_distance_s(n)
    elif metric == FID_INFINITY:
        seconds = options.fid_inf_points * fast_distance_s(n) / 2  # subsets from a fraction of N to N
    elif metric == KID:
        size = options.kid_subset_size or min(KID_SUBSET_CAP, n // 2, max(reference_rows // 2, 2))
        seconds = options.kid_subsets * KID_SUBSET_S * (size / 1000) ** 2
    elif metric == PRECISION_RECALL:
        seconds = PR_S_PER_MILLION_PAIRS * (n + reference_rows) ** 2 / 1e6
    else:  # the Inception Score: one small product per N
        seconds = 0.1
    return seconds / INCEPTION_IMAGE_S


STEP_NAMES = {
    FID: "FID",
    "projection": "fast-distance setup",
    FID_INTERVAL: "bootstrap interval",
    FID_INFINITY: "FID-infinity",
    KID: "KID",
    PRECISION_RECALL: "precision/recall",
    INCEPTION_SCORE: "Inception Score",
}


def step_label(metric: str, n: int) -> str:
    name = STEP_NAMES.get(metric, metric)
    return name if metric == "projection" else f"{name} at N={n}"


def plan_work(
    *,
    n: int,
    batch_size: int,
    nfe: int,
    unet_gflop_per_call: float | None,
    reference_images: int,
    reference_feature_images: int,
    scoring_steps: Sequence[tuple[str, int]],
    options: MetricOptions,
    reference_rows: int,
    efficiency: Mapping[str, float] | None = None,
    measure_rate: bool = True,
) -> WorkPlan:
    """The phases in the order the evaluator runs them.

    `reference_images`: images the reference statistics still need through Inception (0: cached);
    `reference_feature_images`: the same for the KID / precision-recall feature set when it is computed
    on its own (statistics cached, feature set missing); `scoring_steps`: (metric, N) in the order the
    scoring runs them (ddpm.fid.scoring.scoring_steps).
    """
    efficiency = dict(efficiency or {})
    batches = -(-n // batch_size)
    call_cost = sampling_call_cost(unet_gflop_per_call, efficiency)
    steps = tuple(
        (step_label(metric, rows), scoring_step_cost(metric, rows, options, reference_rows))
        for metric, rows in scoring_steps
    )
    phases = [
        # A cached reference is a file read: a token cost, so the phase is still named when it passes.
        PhasePlan(REFERENCE, max(reference_images, 1), reference_images, max(reference_images, 1.0)),
        *(
            [
                PhasePlan(
                    REFERENCE_FEATURES,
                    reference_feature_images,
                    reference_feature_images,
                    float(reference_feature_images),
                )
            ]
            if reference_feature_images
            else []
        ),  # fmt: skip
        PhasePlan(SAMPLING, nfe * batches, n, n * nfe * call_cost),
        PhasePlan(FEATURES, n, n, float(n)),
        PhasePlan(SCORING, len(steps), n, sum(cost for _, cost in steps), steps),
        *([PhasePlan(THROUGHPUT, 1, 0, MATMUL_MEASURE_S / INCEPTION_IMAGE_S)] if measure_rate else []),
    ]
    return WorkPlan(tuple(phases), efficiency)
