"""The classifier study (report section 3.3): what a checkpoint's samples are, per class, in numbers.

`analyse_checkpoint` samples N images exactly as `ddpm sample` and the service's grids do (same seed,
sampler and checkpoint: image i is the same image), classifies them and summarises (stats.summarise);
`analyse_real` does the same for N of the classifier's held-out real images, the baseline a perfect
generator would match. Phases reported through progress(phase, done, total): "sampling" (network
calls) or "loading", then "classifying" (images). Same inputs on the same machine: same numbers and
same PNG bytes (only ids and timings differ).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpm.checkpoints import read_meta
from ddpm.classifier.checkpoint import load_classifier, load_classifier_file
from ddpm.classifier.classes import KNOWN_CLASSES
from ddpm.classifier.grid import confident_rows, rows_png
from ddpm.classifier.inference import class_probabilities
from ddpm.classifier.options import check_analysis_options, check_classifier_for, check_real_analysis
from ddpm.classifier.split import holdout_split, indices_digest
from ddpm.classifier.stats import MIN_EXPECTED, summarise
from ddpm.classifier.store import ClassifierDir
from ddpm.data import load_dataset
from ddpm.device import resolve_device
from ddpm.errors import DatasetUnavailable
from ddpm.limits import DEFAULT_CONFIDENCE, DEFAULT_GRID_PER_CLASS
from ddpm.sampler_spec import SamplerSpec
from ddpm.sampling import check_sample_options, sample_checkpoint
from ddpm.seeding import STREAM_ANALYSIS, derive_seed
from ddpm.settings import data_dir as default_data_dir

PhaseProgress = Callable[[str, int, int], None]
SAMPLES, REAL = "samples", "real"
LOW_ACCURACY = 0.9  # below this held-out accuracy the histogram says as much about the classifier


@dataclass
class AnalysisResult:
    """What the analyses return; `to_record()` is what results.save_analysis stores beside `grid_png`."""

    kind: str  # "samples" (a checkpoint's) or "real" (held-out data)
    summary: dict[str, Any]  # stats.summarise: classes, counts, entropy, divergence, confident share
    rows: list[list[dict[str, Any]]]  # per class: the grid's images (index, confidence)
    grid_png: bytes
    source: dict[str, Any]  # samples: checkpoint, arch, run_id, step, epoch, weights; real: the split
    classifier: dict[str, Any]  # name, arch, accuracy, dataset, image_size
    options: dict[str, Any]  # n, seed, threshold, per_class (+ sampler, steps, eta for samples)
    class_names: list[str]
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # real: accuracy against the true labels

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            **self.source,
            **self.options,
            "classifier": self.classifier["name"],
            "classifier_info": self.classifier,
            "dataset": self.classifier["dataset"],
            "image_size": self.classifier["image_size"],
            "class_names": list(self.class_names),
            **self.summary,
            "grid": {"per_class": self.options["per_class"], "rows": self.rows},
            **self.extra,
            "warnings": list(self.warnings),
            "timings": dict(self.timings),
        }


def dataset_counts(record: dict[str, Any]) -> list[int]:
    """The data set's own class counts: recorded with the classifier, or known for built-in data sets."""
    counts = record.get("class_counts")
    if counts:
        return [int(c) for c in counts]
    if record.get("dataset") in KNOWN_CLASSES:
        return list(KNOWN_CLASSES[record["dataset"]][1])
    raise DatasetUnavailable(
        f"classifier {record.get('name')!r} has no class counts of {record.get('dataset')}"
    )


def _classifier_info(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "arch", "dataset", "image_size", "accuracy", "accuracy_ci95")
    return {key: record.get(key) for key in keys}


def _warnings(record: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    notes = []
    accuracy = record.get("accuracy")
    if accuracy is None:
        notes.append(f"classifier {record['name']!r} has no measured held-out accuracy")
    elif accuracy < LOW_ACCURACY:
        notes.append(
            f"classifier {record['name']!r} has held-out accuracy {accuracy:.3f} < {LOW_ACCURACY}: its errors "
            "show in the histogram"
        )
    if summary["divergence"]["min_expected"] < MIN_EXPECTED:
        notes.append(
            f"some class expects fewer than {MIN_EXPECTED:g} of the {summary['n']} images: the chi-square "
            "p-value is approximate; use a larger n"
        )
    return notes


def _phase(progress: PhaseProgress | None, phase: str) -> Callable[[int, int], None] | None:
    return None if progress is None else (lambda done, total: progress(phase, done, total))


def _classify(
    record: dict[str, Any],
    images: torch.Tensor,
    data_dir: Path,
    device: torch.device,
    batch_size: int,
    threshold: float,
    per_class: int,
    progress: PhaseProgress | None,
) -> tuple[torch.Tensor, dict[str, Any], list[list[dict[str, Any]]], bytes]:
    net, meta = load_classifier(ClassifierDir.of(data_dir, record["name"]).weights_path, device)
    # A grey model's samples for a classifier of three equal channels (options.mismatch allows it).
    wanted = int(record.get("channels", 3))
    shown = images.expand(-1, wanted, -1, -1) if images.shape[1] == 1 and wanted != 1 else images
    probabilities = class_probabilities(net, shown, batch_size, device, _phase(progress, "classifying"))
    summary = summarise(probabilities.numpy(), meta["class_names"], dataset_counts(record), threshold)
    rows = confident_rows(probabilities, per_class)
    return probabilities, summary, rows, rows_png(images, rows, per_class)


def sample_images(
    checkpoint: Path,
    n: int,
    seed: int,
    spec: SamplerSpec,
    device: str,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The checkpoint's images 0..n-1 of `seed`, through the sampling engine's public entry point (the
    one `ddpm sample` and the service's grids use), so image i is the grid's image i."""
    return sample_checkpoint(
        checkpoint, n, seed, spec, device=device, batch_size=batch_size, progress=progress
    )


def analyse_checkpoint(
    checkpoint: Path,
    classifier: str | None = None,
    n: int = 1000,
    seed: int = 0,
    sampler: str | SamplerSpec = "ddpm",
    steps: int | None = None,
    eta: float | None = None,
    threshold: float = DEFAULT_CONFIDENCE,
    per_class: int = DEFAULT_GRID_PER_CLASS,
    data_dir: Path | None = None,
    device: str = "auto",
    batch_size: int = 128,
    progress: PhaseProgress | None = None,
) -> AnalysisResult:
    """Classify n samples of a checkpoint. The sampler is a SamplerSpec or, as in ddpm.sampling, a name
    with steps and eta beside it. `classifier` None: the one classifier of the checkpoint's data set and
    size. Raises DdpmError subclasses; a progress callback may raise Cancelled."""
    started = time.perf_counter()
    check_analysis_options(n, threshold, per_class)
    spec = check_sample_options(n, sampler, steps, eta)
    root = default_data_dir() if data_dir is None else Path(data_dir)
    checkpoint = Path(checkpoint)
    meta = read_meta(checkpoint)  # CheckpointError when missing, corrupt or not ours
    train_config = meta.get("train_config", {})
    record = check_classifier_for(
        root,
        classifier,
        str(train_config.get("dataset", "cifar10")),
        int(train_config.get("image_size", 32)),
        int(meta.get("model_config", {}).get("in_channels", 3)),
    )
    torch_device = resolve_device(device)

    timings: dict[str, float] = {}
    clock = time.perf_counter()
    images, sample_meta = sample_images(
        checkpoint, n, seed, spec, device, batch_size, _phase(progress, "sampling")
    )
    timings["sampling"] = time.perf_counter() - clock
    clock = time.perf_counter()
    _, summary, rows, png = _classify(
        record, images, root, torch_device, batch_size, threshold, per_class, progress
    )
    timings["classifying"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    return AnalysisResult(
        kind=SAMPLES,
        summary=summary,
        rows=rows,
        grid_png=png,
        source={
            "checkpoint": str(checkpoint),
            "arch": sample_meta.get("arch"),
            "run_id": sample_meta.get("run_id"),
            "step": sample_meta.get("step"),
            "epoch": sample_meta.get("epoch"),
            "weights": sample_meta.get("weights"),
        },
        classifier=_classifier_info(record),
        options={
            "n": n,
            "seed": seed,
            "sampler": spec.sampler,
            "steps": spec.steps,
            "eta": spec.eta or 0.0,  # as FID records keep it; sampler_spec has every option
            "nfe": spec.nfe,
            "sampler_spec": spec.to_params(),
            "threshold": threshold,
            "per_class": per_class,
            "device": str(torch_device),
        },
        class_names=list(summary_names(summary)),
        warnings=_warnings(record, summary),
        timings=timings,
    )


def summary_names(summary: dict[str, Any]) -> list[str]:
    return [entry["name"] for entry in summary["classes"]]


def holdout_indices(record: dict[str, Any], data_dir: Path, labels: torch.Tensor) -> torch.Tensor:
    """The classifier's held-out indices, as stored in its file, checked against the data set here:
    the split recomputed from today's labels must be the stored one (else the data set changed)."""
    stored = load_classifier_file(ClassifierDir.of(data_dir, record["name"]).weights_path).holdout
    split = record["split"]
    _, recomputed = holdout_split(labels.numpy(), split["fraction"], split["seed"])
    if (
        stored is None
        or indices_digest(recomputed) != split["digest"]
        or not np.array_equal(stored.numpy(), recomputed)
    ):
        raise DatasetUnavailable(
            f"the {record['dataset']} images here are not the ones classifier {record['name']!r} was split on "
            f"(held-out split {split['digest']}); retrain the classifier on this data set"
        )
    return stored


def analyse_real(
    classifier: str,
    n: int,
    seed: int = 0,
    threshold: float = DEFAULT_CONFIDENCE,
    per_class: int = DEFAULT_GRID_PER_CLASS,
    data_dir: Path | None = None,
    device: str = "auto",
    batch_size: int = 128,
    progress: PhaseProgress | None = None,
) -> AnalysisResult:
    """Classify n of the classifier's held-out real images as if they were samples: the baseline. Which
    n is a seeded permutation of the held-out split (image i is its i-th image for this seed)."""
    started = time.perf_counter()
    check_analysis_options(n, threshold, per_class)
    root = default_data_dir() if data_dir is None else Path(data_dir)
    record = check_real_analysis(root, classifier, n)
    torch_device = resolve_device(device)

    timings: dict[str, float] = {}
    clock = time.perf_counter()
    data = load_dataset(record["dataset"], root, int(record["image_size"]))
    if data.labels is None:
        raise DatasetUnavailable(f"data set {record['dataset']} has no class labels here")
    holdout = holdout_indices(record, root, data.labels)
    order = torch.from_numpy(
        np.random.default_rng(derive_seed(seed, STREAM_ANALYSIS, 0)).permutation(len(holdout))
    )
    chosen = holdout[order[:n]]
    images, labels = data.images[chosen], data.labels[chosen]
    if progress is not None:
        progress("loading", 1, 1)
    timings["loading"] = time.perf_counter() - clock
    clock = time.perf_counter()
    probabilities, summary, rows, png = _classify(
        record, images, root, torch_device, batch_size, threshold, per_class, progress
    )
    timings["classifying"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    k = len(record["class_names"])
    correct = int((probabilities.argmax(dim=1) == labels).sum())
    return AnalysisResult(
        kind=REAL,
        summary=summary,
        rows=rows,
        grid_png=png,
        source={"split": "held-out", "split_digest": record["split"]["digest"], "n_available": len(holdout)},
        classifier=_classifier_info(record),
        options={
            "n": n,
            "seed": seed,
            "threshold": threshold,
            "per_class": per_class,
            "device": str(torch_device),
        },
        class_names=summary_names(summary),
        warnings=_warnings(record, summary),
        timings=timings,
        extra={
            "label_counts": torch.bincount(labels, minlength=k).tolist(),
            "label_accuracy": correct / n,
            "image_indices": chosen.tolist(),
        },
    )
