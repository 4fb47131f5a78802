"""Classifier training: it learns, its file round-trips and loads without pickle, resume is exact."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from ddpm.classifier.checkpoint import FORMAT, load_classifier, load_classifier_file
from ddpm.classifier.config import ClassifierConfig
from ddpm.classifier.inference import class_probabilities
from ddpm.classifier.store import ClassifierDir, read_classifier
from ddpm.classifier.training import ClassifierHooks, train_classifier
from ddpm.data import load_digits
from ddpm.errors import CheckpointError, DatasetUnavailable, InvalidOption
from tests.classifier.conftest import CLASSIFIER, IMAGE_SIZE, TINY_CLASSIFIER
from tests.conftest import make_image_folder

# Two epochs of 23 steps (1438 training images, batch 64) on 8px digits at width 4: short, crosses an epoch.
SHORT = dataclasses.replace(TINY_CLASSIFIER, epochs=2, batch_size=64, width=4)


def test_the_tiny_classifier_learns_digits_and_records_itself(study_root: Path) -> None:
    record = read_classifier(study_root, CLASSIFIER)
    assert record["status"] == "succeeded" and record["ready"] is True
    assert record["accuracy"] > 0.8, "4 epochs at 8px learn digits far above chance (0.1)"
    low, high = record["accuracy_ci95"]
    assert low < record["accuracy"] < high
    assert record["class_names"] == [str(i) for i in range(10)]
    assert sum(record["class_counts"]) == 1797 and record["class_counts"][0] == 178
    split = record["split"]
    assert split["n_train"] + split["n_holdout"] == 1797 and split["n_holdout"] == 359
    assert split["stratified"] and split["seed"] == TINY_CLASSIFIER.seed
    assert [row["epoch"] for row in record["history"]] == [1, 2, 3, 4]
    assert record["history"][-1]["holdout_accuracy"] == pytest.approx(record["accuracy"])
    assert ClassifierConfig.from_dict(record["config"]) == TINY_CLASSIFIER


def test_the_classifier_file_rebuilds_the_network_and_its_accuracy(study_root: Path) -> None:
    folder = ClassifierDir.of(study_root, CLASSIFIER)
    net, meta = load_classifier(folder.weights_path)
    content = load_classifier_file(folder.weights_path)
    assert content.optimizer is None and content.holdout is not None
    data = load_digits(IMAGE_SIZE)
    held = content.holdout
    probabilities = class_probabilities(net, data.images[held])
    accuracy = float((probabilities.argmax(1) == data.labels[held]).double().mean())
    assert accuracy == pytest.approx(meta["accuracy"], abs=1e-12)
    assert meta["split"] == read_classifier(study_root, CLASSIFIER)["split"]


def test_probabilities_do_not_depend_on_the_batch_size(study_root: Path) -> None:
    net, _ = load_classifier(ClassifierDir.of(study_root, CLASSIFIER).weights_path)
    images = load_digits(IMAGE_SIZE).images[:37]
    whole = class_probabilities(net, images, batch_size=256)
    assert torch.equal(whole, class_probabilities(net, images, batch_size=5))
    assert torch.equal(whole[:3], class_probabilities(net, images[:3]))


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    """2 epochs straight vs cancelled mid-epoch 1 + resumed: identical weights, optimizer and generator."""
    straight = train_classifier(SHORT, tmp_path, name="straight", device="cpu")
    stop_after = 9  # of 23 steps per epoch: mid-epoch, so batch order and generator state must resume
    seen: list[int] = []
    hooks = ClassifierHooks(should_stop=lambda: len(seen) >= stop_after)
    hooks.on_progress.append(lambda progress: seen.append(progress.step))
    cancelled = train_classifier(SHORT, tmp_path, name="split", device="cpu", hooks=hooks)
    assert cancelled.status == "cancelled" and cancelled.step == stop_after
    assert read_classifier(tmp_path, "split")["status"] == "cancelled"
    resumed = train_classifier(SHORT, tmp_path, name="split", device="cpu")
    assert resumed.status == straight.status == "succeeded" and resumed.step == straight.step
    assert resumed.accuracy == straight.accuracy
    a, b = (
        load_classifier_file(ClassifierDir.of(tmp_path, name).latest_path, training_state=True)
        for name in ("straight", "split")
    )
    for part in ("weights", "rng"):
        left, right = getattr(a, part), getattr(b, part)
        assert left.keys() == right.keys() and left
        assert all(torch.equal(left[k], right[k]) for k in left), f"{part} differs after resume"
    assert a.optimizer is not None and b.optimizer is not None
    for index, state in a.optimizer["state"].items():
        assert all(torch.equal(state[k], b.optimizer["state"][index][k]) for k in ("exp_avg", "exp_avg_sq"))
    final_a, final_b = (
        load_classifier_file(ClassifierDir.of(tmp_path, name).weights_path) for name in ("straight", "split")
    )
    assert all(torch.equal(final_a.weights[k], final_b.weights[k]) for k in final_a.weights)


def test_resume_refuses_a_changed_recipe_but_takes_more_epochs(tmp_path: Path) -> None:
    one_epoch = dataclasses.replace(SHORT, epochs=1)
    train_classifier(one_epoch, tmp_path, name="c", device="cpu")
    with pytest.raises(InvalidOption, match=r"trained with different \['seed', 'width'\]"):
        train_classifier(dataclasses.replace(one_epoch, seed=5, width=8), tmp_path, name="c", device="cpu")
    longer = train_classifier(SHORT, tmp_path, name="c", device="cpu")
    record = read_classifier(tmp_path, "c")
    assert longer.epoch == 2 and [row["epoch"] for row in record["history"]] == [1, 2]
    assert record["status"] == "succeeded"  # the refused resume did not mark it failed for good
    with pytest.raises(InvalidOption, match=r"has trained 46 steps \(2 epochs\); 1 epochs are 23 steps"):
        train_classifier(one_epoch, tmp_path, name="c", device="cpu")


def test_corrupt_and_foreign_files_are_refused(tmp_path: Path, run_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="is not a classifier file of this project"):
        load_classifier(run_checkpoint)  # a diffusion checkpoint
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(b"\x10\x00\x00\x00")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_classifier(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "missing.safetensors")


def test_an_unlabelled_folder_fails_and_is_recorded(data_dir: Path) -> None:
    make_image_folder(data_dir / "datasets" / "flat", count=6, size=12)
    config = ClassifierConfig("folder:flat", image_size=8, epochs=1)
    with pytest.raises(DatasetUnavailable, match="needs one subfolder per class"):
        train_classifier(config, data_dir, name="flat", device="cpu")
    record = read_classifier(data_dir, "flat")
    assert record["status"] == "failed" and "subfolder per class" in record["error"]


def test_a_folder_with_class_subfolders_trains(data_dir: Path) -> None:
    make_image_folder(data_dir / "datasets" / "pets" / "cat", count=6, size=12, seed=1)
    make_image_folder(data_dir / "datasets" / "pets" / "dog", count=4, size=12, seed=2)
    config = ClassifierConfig("folder:pets", image_size=8, epochs=1, batch_size=4, width=4, blocks=1)
    result = train_classifier(config, data_dir, name="pets", device="cpu")
    record = read_classifier(data_dir, "pets")
    assert result.status == "succeeded" and record["class_names"] == ["cat", "dog"]
    assert record["class_counts"] == [6, 4] and record["split"]["n_holdout"] == 2  # round(1.2) + round(0.8)


def test_checkpoint_format_tag(study_root: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(ClassifierDir.of(study_root, CLASSIFIER).weights_path), "pt") as handle:
        assert handle.metadata()["format"] == FORMAT
        assert {key.split(".", 1)[0] for key in handle.keys()} == {"net", "split"}  # noqa: SIM118
