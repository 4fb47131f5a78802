"""The evaluator: FID and the other metrics of a checkpoint's samples, for one or more N.

All N come from ONE sample set of max(N) images (a smaller N is a prefix: image i depends only on the
seed and i), as in the report's figure 9. Phases, each timed and reported through
progress(phase, done, total): "reference" (load or compute the dataset statistics and, for KID and
precision/recall, its feature set, first, so a missing dataset fails before any sampling), "sampling"
(network calls), "features" (images). Every metric comes from the one feature pass (ddpm.fid.scoring).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ddpm.checkpoints import read_meta
from ddpm.data import check_dataset_name
from ddpm.device import resolve_device
from ddpm.errors import DdpmError, InvalidOption
from ddpm.fid.errors import FidUnavailable
from ddpm.fid.features import inception_features, load_inception
from ddpm.fid.options import (
    INCEPTION_SCORE,
    KID,
    REFERENCE_FEATURE_METRICS,
    MetricOptions,
    check_n_samples,
    kid_subset_size,
    plan_metrics,
)
from ddpm.fid.reference import (
    REFERENCE_FEATURES_MAX,
    ReferenceFeatures,
    ReferenceStats,
    dataset_reference,
    dataset_reference_features,
    load_npz,
    reference_features_path,
    reference_path,
    reference_size,
    user_reference,
)
from ddpm.fid.results import FidResult
from ddpm.fid.scoring import score_features, scoring_steps
from ddpm.fid.throughput import (
    PhaseWork,
    distance_gflop,
    inception_gflop,
    matmul_rate,
    phase_records,
    sampling_gflop,
    statistics_gflop,
)
from ddpm.fid.weights import classifier_head, ensure_weights
from ddpm.fid.work_plan import THROUGHPUT, WorkPlan, dataset_images, plan_work
from ddpm.sampling import Sampler, check_sample_options, sample_checkpoint
from ddpm.settings import data_dir as default_data_dir

PhaseProgress = Callable[[str, int, int], None]


def check_options(
    n_samples: int | Sequence[int],
    sampler: Sampler,
    steps: int | None = None,
    eta: float | None = None,
    batch_size: int = 128,
) -> list[int]:
    """Everything checkable before touching a file; the distinct N ascending."""
    counts = check_n_samples(n_samples)
    check_sample_options(max(counts), sampler, steps, eta)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidOption(f"batch_size must be a positive integer, got {batch_size!r}")
    return counts


def evaluate_checkpoint(
    checkpoint: Path,
    n_samples: Sequence[int],
    seed: int,
    sampler: Sampler = "ddpm",
    steps: int | None = None,
    eta: float | None = None,
    dataset: str = "cifar10",
    data_dir: Path | None = None,
    device: str = "auto",
    batch_size: int = 128,
    reference_npz: Path | None = None,
    progress: PhaseProgress | None = None,
    metrics: MetricOptions | None = None,
    measure_rate: bool = True,
    on_plan: Callable[[WorkPlan], None] | None = None,
    efficiency: Mapping[str, float] | None = None,
) -> FidResult:
    """FID and the requested metrics (default: all that N allows) for every N in n_samples.

    The result's `throughput` gives each phase's images/s and, with `measure_rate`, its fraction of the
    matmul rate measured right after the work (a few seconds; ddpm/fid/throughput.py).

    `sampler` is a SamplerSpec or a name with steps and eta beside it (ddpm.sampling). Raises DdpmError
    subclasses; a progress callback may raise Cancelled.

    `on_plan` is given the phases and their expected costs (ddpm.fid.work_plan) before the first of them
    starts, so a caller can tell progress in proportion to the work; `efficiency` (sampling and features
    fractions of the matmul rate, e.g. the last job's) refines the sampling cost. The scoring phase
    reports its steps as progress("scoring", done, total).
    """
    started = time.perf_counter()
    counts = check_options(n_samples, sampler, steps, eta, batch_size)
    spec = check_sample_options(max(counts), sampler, steps, eta)
    options = MetricOptions() if metrics is None else metrics
    plan, _ = plan_metrics(options, counts)  # InvalidOption for a named metric N cannot serve
    wanted = {metric for planned in plan.values() for metric in planned}
    if reference_npz is not None and options.explicit and wanted & set(REFERENCE_FEATURE_METRICS):
        raise InvalidOption(
            f"{', '.join(sorted(wanted & set(REFERENCE_FEATURE_METRICS)))} need the reference's features; a "
            "user .npz holds only mu and sigma: use a dataset reference or leave them out"
        )
    check_dataset_name(dataset)
    root = default_data_dir() if data_dir is None else Path(data_dir)
    checkpoint = Path(checkpoint)
    meta = read_meta(checkpoint)  # CheckpointError when missing, corrupt or not ours
    image_size = int(meta.get("train_config", {}).get("image_size", 32))
    torch_device = resolve_device(device)

    def report(phase: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(phase, done, total))

    timings: dict[str, float] = {}
    clock = time.perf_counter()
    ensure_weights()
    unavailable: dict[str, str] = {}
    classifier = None
    if INCEPTION_SCORE in wanted:
        classifier, why = classifier_head()
        if classifier is None:
            if options.explicit:
                raise FidUnavailable(f"{INCEPTION_SCORE}: {why}")
            unavailable[INCEPTION_SCORE] = str(why)
    timings["weights"] = time.perf_counter() - clock
    if on_plan is not None:
        on_plan(
            _plan(
                meta, counts, batch_size, spec.nfe, dataset, root, image_size, reference_npz, options,
                plan, wanted, unavailable, efficiency, measure_rate,
            )
        )  # fmt: skip

    inception: list[torch.nn.Module] = []  # loaded on first need, then shared by both phases

    def model() -> torch.nn.Module:
        if not inception:
            inception.append(load_inception(torch_device))
        return inception[0]

    clock = time.perf_counter()
    reference: ReferenceStats
    if reference_npz is not None:
        reference = user_reference(Path(reference_npz))
        if progress is not None:
            progress("reference", 1, 1)
    else:
        reference = dataset_reference(
            dataset, root, image_size, model, torch_device, batch_size, progress=report("reference")
        )
    reference_features: ReferenceFeatures | None = None
    if wanted & set(REFERENCE_FEATURE_METRICS):
        reference_features, why = _reference_features(
            dataset,
            root,
            image_size,
            model,
            torch_device,
            batch_size,
            report("reference_features"),
            reference_npz,
            options,
        )
        if reference_features is None:
            unavailable.update({m: why for m in REFERENCE_FEATURE_METRICS if m in wanted})
        elif KID in wanted:
            try:  # before sampling: an explicit subset size larger than the reference feature set
                kid_subset_size(max(counts), len(reference_features.features), options)
            except InvalidOption as err:
                if options.explicit:
                    raise
                unavailable[KID] = str(err)
    timings["reference"] = time.perf_counter() - clock

    clock = time.perf_counter()
    images, sample_meta = sample_checkpoint(
        checkpoint, max(counts), seed, spec, None, None, device, batch_size, progress=report("sampling")
    )
    timings["sampling"] = time.perf_counter() - clock

    clock = time.perf_counter()
    features = inception_features(images, model(), batch_size, torch_device, report("features"))
    timings["features"] = time.perf_counter() - clock

    warnings: list[str] = []
    if reference_npz is None and images.shape[-1] != reference_size(dataset, image_size):
        size = reference_size(dataset, image_size)
        warnings.append(f"samples are {images.shape[-1]}px but the {dataset} reference images are {size}px")
    scoring = score_features(
        features,
        counts,
        reference.mu,
        reference.sigma,
        options,
        reference_features,
        classifier,
        unavailable,
        report("scoring"),
    )
    timings.update(scoring.timings)
    timings["total"] = time.perf_counter() - started
    if progress is not None and measure_rate:
        progress(THROUGHPUT, 0, 1)
    throughput = _throughput(
        timings, counts, reference, sample_meta, spec.nfe, model(), torch_device, measure_rate
    )
    # Whether sampling ran compiled, and why (ddpm/compile_policy.py): part of how fast it was.
    throughput["sampling_compile"] = sample_meta.get("compile")
    if progress is not None and measure_rate:
        progress(THROUGHPUT, 1, 1)

    return FidResult(
        fid={n: row.fid for n, row in scoring.scores.items()},
        warnings=warnings + scoring.warnings,
        reference=reference.identity,
        timings=timings,
        checkpoint=_checkpoint_info(checkpoint, sample_meta),
        options={
            "seed": seed,
            "sampler": spec.sampler,
            "steps": spec.steps,
            "eta": spec.eta or 0.0,  # kept for readers of older records; sampler_spec has it all
            "nfe": spec.nfe,
            "sampler_spec": spec.to_params(),
            "dataset": dataset,
            "n_samples": counts,
            "device": str(torch_device),
        },
        reference_path=str(reference.path),
        scores=scoring.scores,
        metrics=list(options.requested),
        metric_options=options.to_params(),
        unavailable=scoring.unavailable,
        reference_features=None if reference_features is None else reference_features.summary(),
        throughput=throughput,
    )


def _plan(
    meta: dict[str, Any],
    counts: list[int],
    batch_size: int,
    nfe: int,
    dataset: str,
    root: Path,
    image_size: int,
    reference_npz: Path | None,
    options: MetricOptions,
    plan: dict[int, tuple[str, ...]],
    wanted: set[str],
    unavailable: dict[str, str],
    efficiency: Mapping[str, float] | None,
    measure_rate: bool,
) -> WorkPlan:
    """The evaluation's phases and costs, from what is cached now (ddpm.fid.work_plan)."""
    stats = reference_path(root, dataset, image_size)
    cached = reference_npz is not None or stats.is_file()
    total = dataset_images(dataset, root) if reference_npz is None else 0
    if cached and reference_npz is None:
        total = int(load_npz(stats)[2].get("n") or total)
    feature_rows = min(total, REFERENCE_FEATURES_MAX)
    separate_features = (
        cached
        and reference_npz is None
        and bool(wanted & set(REFERENCE_FEATURE_METRICS))
        and not reference_features_path(root, dataset, image_size).is_file()
    )
    try:  # counted once per process and cached; an unusual config only loses the refinement
        unet_gflop = sampling_gflop(meta, 1)
    except Exception:  # noqa: BLE001 (an estimate must never fail the evaluation)
        unet_gflop = None
    return plan_work(
        n=max(counts),
        batch_size=batch_size,
        nfe=nfe,
        unet_gflop_per_call=unet_gflop,
        reference_images=0 if cached else total,
        reference_feature_images=feature_rows if separate_features else 0,
        scoring_steps=scoring_steps(plan, unavailable),
        options=options,
        reference_rows=feature_rows,
        efficiency=efficiency,
        measure_rate=measure_rate,
    )


def _throughput(
    timings: dict[str, float],
    counts: list[int],
    reference: ReferenceStats,
    sample_meta: dict[str, Any],
    nfe: int,
    inception: torch.nn.Module,
    device: torch.device,
    measure_rate: bool,
) -> dict[str, Any]:
    """Images/s and fraction of the matmul rate (measured now, after the work) of each phase."""
    per_inception = inception_gflop(inception)
    rows = sum(counts)  # statistics and a distance per N
    phases = {
        "sampling": PhaseWork(max(counts), timings["sampling"], sampling_gflop(sample_meta, nfe)),
        "features": PhaseWork(max(counts), timings["features"], per_inception),
        "statistics": PhaseWork(rows, timings.get("statistics", 0.0), statistics_gflop()),
        "distance": PhaseWork(rows, timings.get("frechet", 0.0), len(counts) * distance_gflop(rows)),
    }
    if reference.computed and reference.n:  # this job ran the data set through Inception
        phases = {"reference": PhaseWork(reference.n, timings["reference"], per_inception), **phases}
    return phase_records(phases, matmul_rate(device) if measure_rate else None)


def _reference_features(
    dataset: str,
    root: Path,
    image_size: int,
    model: Callable[[], torch.nn.Module],
    device: torch.device,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    reference_npz: Path | None,
    options: MetricOptions,
) -> tuple[ReferenceFeatures | None, str]:
    """The dataset's cached (or now computed) feature set for KID and precision/recall, or why there is none.

    With the default metrics a missing feature set only makes those metrics unavailable; named explicitly,
    it is an error (raised here, before sampling).
    """
    if reference_npz is not None:
        return (
            None,
            "the reference is a user .npz with mu and sigma only; this metric needs the reference's features",
        )
    try:
        return dataset_reference_features(dataset, root, image_size, model, device, batch_size, progress), ""
    except DdpmError as err:  # e.g. the dataset was removed after its statistics were cached
        if options.explicit:
            raise
        return None, f"the reference feature set could not be computed: {err}"


def _checkpoint_info(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "checkpoint": str(path),
        "arch": meta.get("arch"),
        "run_id": meta.get("run_id"),
        "step": meta.get("step"),
        "epoch": meta.get("epoch"),
        "weights": meta.get("weights"),
    }
