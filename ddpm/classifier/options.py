"""Validation of classifier-study requests, torch-free so the API can answer 422 before queueing a job.

Every check raises InvalidOption naming the bad value and what is valid. The API calls
`check_analysis_options` and `check_classifier_for` (samples of a checkpoint) or `check_real_analysis`
(held-out real images); the engine calls the same functions again before it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddpm.classifier.store import check_classifier_name, is_ready, list_classifiers, read_classifier
from ddpm.errors import InvalidOption
from ddpm.limits import (
    BUILTIN_DATASETS,
    DEFAULT_CONFIDENCE,
    DEFAULT_GRID_PER_CLASS,
    FOLDER_PREFIX,
    MAX_ANALYSIS_SAMPLES,
    MAX_GRID_PER_CLASS,
    MIN_ANALYSIS_SAMPLES,
)


def check_int(name: str, value: Any, low: int, high: int) -> int:
    # bool is an int subclass; True as a count is surely a mistake
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOption(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def check_dataset_spec(spec: Any) -> str:
    """cifar10, digits or folder:<path>, checked by name only (ddpm.data.check_dataset_name without torch)."""
    if isinstance(spec, str) and (
        spec in BUILTIN_DATASETS or (spec.startswith(FOLDER_PREFIX) and spec[len(FOLDER_PREFIX) :].strip())
    ):
        return spec
    raise InvalidOption(
        f"unknown dataset {spec!r}; valid: {', '.join(BUILTIN_DATASETS)}, {FOLDER_PREFIX}<folder>"
    )


def check_threshold(threshold: Any) -> float:
    """The confidence a sample needs to count as recognisable: a probability strictly inside (0, 1)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold < 1.0:
        raise InvalidOption(
            f"threshold must be a probability in (0, 1) (default {DEFAULT_CONFIDENCE}), got {threshold!r}"
        )
    return float(threshold)


def check_analysis_options(
    n: Any, threshold: Any = DEFAULT_CONFIDENCE, per_class: Any = DEFAULT_GRID_PER_CLASS
) -> None:
    """The sample count, the confidence threshold and the grid's images per class."""
    check_int("n", n, MIN_ANALYSIS_SAMPLES, MAX_ANALYSIS_SAMPLES)
    check_threshold(threshold)
    check_int("per_class", per_class, 1, MAX_GRID_PER_CLASS)


def describe(record: dict[str, Any]) -> str:
    return f"{record.get('dataset')} at {record.get('image_size')}px"


def mismatch(record: dict[str, Any], dataset: str, image_size: int, channels: int = 3) -> str | None:
    """Why a classifier cannot judge images of (dataset, image_size, channels); None when it can."""
    if not is_ready(record):
        return f"classifier {record.get('name')!r} is not ready (status {record.get('status')!r})"
    if record.get("dataset") != dataset:
        return f"classifier {record.get('name')!r} was trained on {record.get('dataset')}, not {dataset}"
    if record.get("image_size") != image_size:
        return (
            f"classifier {record.get('name')!r} takes {record.get('image_size')}px images, not {image_size}px"
        )
    # Grey images are what a three-channel classifier of the same data set sees with equal channels.
    if record.get("channels", 3) != channels and not (channels == 1 and record.get("channels", 3) == 3):
        return (
            f"classifier {record.get('name')!r} takes {record.get('channels')}-channel images, not {channels}"
        )
    return None


def compatible_classifiers(data_dir: Path, dataset: str, image_size: int, channels: int = 3) -> list[str]:
    return [
        str(r["name"])
        for r in list_classifiers(data_dir)
        if mismatch(r, dataset, image_size, channels) is None
    ]


def check_classifier_for(
    data_dir: Path, name: str | None, dataset: str, image_size: int, channels: int = 3
) -> dict[str, Any]:
    """The record of the classifier that judges a checkpoint's samples (its training data set, image size
    and channels, from run.json's train_config). With name None, the only compatible classifier."""
    valid = compatible_classifiers(data_dir, dataset, image_size, channels)
    how = (
        f"{', '.join(valid)}"
        if valid
        else f"none yet; train one: `ddpm classifier train --dataset {dataset} --image-size {image_size}`"
    )
    if name is None:
        if len(valid) == 1:
            return read_classifier(data_dir, valid[0])
        raise InvalidOption(f"name a classifier for {dataset} at {image_size}px; valid: {how}")
    record = read_classifier(data_dir, check_classifier_name(name))
    reason = mismatch(record, dataset, image_size, channels)
    if reason is not None:
        raise InvalidOption(f"{reason}; classifiers for {dataset} at {image_size}px: {how}")
    return record


def check_classifier_for_run(data_dir: Path, name: str | None, run_record: dict[str, Any]) -> dict[str, Any]:
    """check_classifier_for with the data a run was trained on, read from its run.json record."""
    train_config = run_record.get("train_config") or {}
    return check_classifier_for(
        data_dir,
        name,
        str(train_config.get("dataset", "cifar10")),
        int(train_config.get("image_size", 32)),
        int((run_record.get("model_config") or {}).get("in_channels", 3)),
    )


def check_real_analysis(data_dir: Path, name: str, n: int) -> dict[str, Any]:
    """The classifier whose held-out images an analysis of real data takes; n may not exceed them."""
    record = read_classifier(data_dir, check_classifier_name(name))
    if not is_ready(record):
        raise InvalidOption(f"classifier {name!r} is not ready (status {record.get('status')!r})")
    split = record.get("split") or {}
    available = split.get("n_holdout")
    if not available:
        raise InvalidOption(
            f"classifier {name!r} has no held-out split recorded (imported without its data set); "
            "analyse real images with a classifier trained by `ddpm classifier train`, or re-import it "
            "where its data set is present"
        )
    if int(available) < MIN_ANALYSIS_SAMPLES:
        raise InvalidOption(
            f"classifier {name!r} holds out only {available} images; an analysis needs {MIN_ANALYSIS_SAMPLES}"
        )
    check_int("n", n, MIN_ANALYSIS_SAMPLES, min(MAX_ANALYSIS_SAMPLES, int(available)))
    return record
