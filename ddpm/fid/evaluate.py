"""The evaluator: FID of a checkpoint's samples against reference statistics, for one or more N.

All N come from ONE sample set of max(N) images (a smaller N is a prefix: image i depends only on the
seed and i), as in the report's figure 9. Phases, each timed and reported through
progress(phase, done, total): "reference" (load or compute the dataset statistics, first, so a
missing dataset fails before any sampling), "sampling" (network calls), "features" (images).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ddpm.checkpoints import read_meta
from ddpm.data import check_dataset_name
from ddpm.device import resolve_device
from ddpm.errors import InvalidOption
from ddpm.fid.features import feature_statistics, frechet_distance, inception_features, load_inception
from ddpm.fid.options import check_n_samples, rank_warnings
from ddpm.fid.reference import ReferenceStats, dataset_reference, reference_size, user_reference
from ddpm.fid.results import FidResult
from ddpm.fid.weights import ensure_weights
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
) -> FidResult:
    """FID for every N in n_samples. Raises DdpmError subclasses; a progress callback may raise Cancelled.
    `sampler` is a SamplerSpec or a name with steps and eta beside it (ddpm.sampling)."""
    started = time.perf_counter()
    counts = check_options(n_samples, sampler, steps, eta, batch_size)
    spec = check_sample_options(max(counts), sampler, steps, eta)
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
    timings["weights"] = time.perf_counter() - clock

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
    timings["reference"] = time.perf_counter() - clock

    clock = time.perf_counter()
    images, sample_meta = sample_checkpoint(
        checkpoint, max(counts), seed, spec, None, None, device, batch_size, progress=report("sampling")
    )
    timings["sampling"] = time.perf_counter() - clock

    clock = time.perf_counter()
    features = inception_features(images, model(), batch_size, torch_device, report("features"))
    timings["features"] = time.perf_counter() - clock

    clock = time.perf_counter()
    warnings = rank_warnings(counts)
    if reference_npz is None and images.shape[-1] != reference_size(dataset, image_size):
        size = reference_size(dataset, image_size)
        warnings.append(f"samples are {images.shape[-1]}px but the {dataset} reference images are {size}px")
    scores: dict[int, float] = {}
    for n in counts:
        mu, sigma = feature_statistics(features[:n])
        scores[n], notes = frechet_distance(mu, sigma, reference.mu, reference.sigma)
        warnings += [f"N={n}: pytorch-fid: {note}" for note in notes]
    timings["frechet"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started

    return FidResult(
        fid=scores,
        warnings=warnings,
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
    )


def _checkpoint_info(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "checkpoint": str(path),
        "arch": meta.get("arch"),
        "run_id": meta.get("run_id"),
        "step": meta.get("step"),
        "epoch": meta.get("epoch"),
        "weights": meta.get("weights"),
    }
