"""Analyses: reproducible to the byte, the grids' images, real held-out data near the data set's histogram."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.classifier.analysis import analyse_checkpoint, analyse_real
from ddpm.classifier.checkpoint import load_classifier
from ddpm.classifier.inference import class_probabilities
from ddpm.classifier.options import check_classifier_for_run
from ddpm.classifier.results import compare_records, list_analyses, save_analysis, stable_part
from ddpm.classifier.store import ClassifierDir, read_classifier
from ddpm.errors import InvalidOption
from ddpm.runs import RunDir
from ddpm.sampler_spec import SamplerSpec
from ddpm.sampling import GRID_PADDING, sample_checkpoint
from tests.ddpm.classifier.conftest import CLASSIFIER, IMAGE_SIZE, RUN

N = 24
SAMPLING = {"sampler": "ddim", "steps": 2, "device": "cpu"}


def _samples(study_root: Path, run_checkpoint: Path, **options) -> dict:
    result = analyse_checkpoint(
        run_checkpoint, CLASSIFIER, n=N, seed=3, data_dir=study_root, **SAMPLING, **options
    )
    return {"record": result.to_record(), "png": result.grid_png}


def test_the_same_analysis_twice_gives_identical_numbers_and_grid(
    study_root: Path, run_checkpoint: Path
) -> None:
    first, second = _samples(study_root, run_checkpoint), _samples(study_root, run_checkpoint)
    assert json.dumps(stable_part(first["record"]), sort_keys=True) == json.dumps(
        stable_part(second["record"]), sort_keys=True
    )
    assert first["png"] == second["png"]
    ids = [save_analysis(study_root, run["record"], run["png"]) for run in (first, second)]
    stored = {r["id"]: r for r in list_analyses(study_root)}
    assert stable_part(stored[ids[0]]) == stable_part(stored[ids[1]]) == stable_part(first["record"])


def test_samples_are_the_sampling_engines_images(study_root: Path, run_checkpoint: Path) -> None:
    """Image i of the analysis is image i of `ddpm sample` with the same seed: same classes, same pixels."""
    run = _samples(study_root, run_checkpoint, per_class=4)
    record = run["record"]
    images, meta = sample_checkpoint(run_checkpoint, N, 3, "ddim", 2, 0.0, "cpu")
    net, _ = load_classifier(ClassifierDir.of(study_root, CLASSIFIER).weights_path)
    probabilities = class_probabilities(net, images)
    assert record["counts"] == torch.bincount(probabilities.argmax(1), minlength=10).tolist()
    assert (record["arch"], record["run_id"], record["step"]) == ("baseline", "tiny-ddpm", meta["step"])
    assert (record["sampler"], record["steps"], record["seed"], record["n"]) == ("ddim", 2, 3, N)
    grid = np.asarray(Image.open(io.BytesIO(run["png"])).convert("RGB"))
    cell = IMAGE_SIZE + GRID_PADDING
    assert grid.shape == (10 * cell + GRID_PADDING, 4 * cell + GRID_PADDING, 3)
    for row, entries in enumerate(record["grid"]["rows"]):
        assert len(entries) == min(4, record["counts"][row])
        assert [e["confidence"] for e in entries] == sorted((e["confidence"] for e in entries), reverse=True)
        for column, entry in enumerate(entries):
            top, left = GRID_PADDING + row * cell, GRID_PADDING + column * cell
            pixels = grid[top : top + IMAGE_SIZE, left : left + IMAGE_SIZE].transpose(2, 0, 1)
            image = images[entry["index"]].numpy()  # grey digits: one channel, drawn as three equal ones
            assert np.array_equal(pixels, np.broadcast_to(image, pixels.shape))
            assert int(probabilities[entry["index"]].argmax()) == row


def test_any_sampler_spec_and_its_record(study_root: Path, run_checkpoint: Path) -> None:
    """A SamplerSpec (here Heun, 3 noise levels = 5 network calls) samples exactly as ddpm.sampling does."""
    spec = SamplerSpec("heun", 3)
    record = analyse_checkpoint(
        run_checkpoint, CLASSIFIER, n=N, seed=3, sampler=spec, data_dir=study_root, device="cpu"
    ).to_record()
    assert (record["sampler"], record["steps"], record["nfe"]) == ("heun", 3, 5)
    assert SamplerSpec.from_params(record["sampler_spec"]) == spec
    images, _ = sample_checkpoint(run_checkpoint, N, 3, spec, device="cpu")
    net, _ = load_classifier(ClassifierDir.of(study_root, CLASSIFIER).weights_path)
    assert (
        record["counts"] == torch.bincount(class_probabilities(net, images).argmax(1), minlength=10).tolist()
    )


def test_the_threshold_only_moves_the_confident_counts(study_root: Path, run_checkpoint: Path) -> None:
    loose = _samples(study_root, run_checkpoint, threshold=0.3)["record"]
    strict = _samples(study_root, run_checkpoint, threshold=0.99)["record"]
    assert loose["counts"] == strict["counts"] and loose["entropy"] == strict["entropy"]
    assert loose["confident"] >= strict["confident"]
    assert all(
        a["confident"] >= b["confident"] for a, b in zip(loose["classes"], strict["classes"], strict=True)
    )
    assert (loose["threshold"], strict["threshold"]) == (0.3, 0.99)


def test_real_held_out_digits_are_near_the_data_sets_histogram(
    study_root: Path, run_checkpoint: Path
) -> None:
    classifier = read_classifier(study_root, CLASSIFIER)
    n = classifier["split"]["n_holdout"]  # all of them: their labels have the data set's proportions
    real = analyse_real(CLASSIFIER, n, seed=0, data_dir=study_root, device="cpu")
    record = real.to_record()
    shares = np.array(record["label_counts"]) / n
    assert np.abs(shares - np.array(classifier["class_counts"]) / 1797).max() < 0.005  # stratified split
    assert record["label_accuracy"] == pytest.approx(classifier["accuracy"])
    divergence = record["divergence"]
    assert divergence["total_variation"] < divergence["null_total_variation_p95"], "within sampling noise"
    assert divergence["p_value"] > 0.05
    assert record["entropy"]["normalised"] > 0.98 and record["entropy"]["classes_present"] == 10
    # A 2-step diffusion model draws noise-like images: its histogram is far from the real one.
    untrained = analyse_checkpoint(
        run_checkpoint, CLASSIFIER, n=200, seed=0, data_dir=study_root, **SAMPLING
    ).to_record()
    assert untrained["divergence"]["total_variation"] > divergence["null_total_variation_p95"]
    assert untrained["divergence"]["total_variation"] > 3 * divergence["total_variation"]
    # The tiny classifier is unsure (about 0.7 mean confidence), yet surer of real digits than of noise.
    assert record["confident_share"] > untrained["confident_share"]
    assert record["mean_confidence"] > untrained["mean_confidence"] + 0.1
    comparison = compare_records({**record, "id": "real"}, {**untrained, "id": "untrained"})
    assert comparison["p_value"] < 1e-6


def test_real_analyses_are_seeded_subsets_of_the_held_out_split(study_root: Path) -> None:
    a = analyse_real(CLASSIFIER, 50, seed=1, data_dir=study_root, device="cpu").to_record()
    b = analyse_real(CLASSIFIER, 50, seed=1, data_dir=study_root, device="cpu").to_record()
    c = analyse_real(CLASSIFIER, 20, seed=1, data_dir=study_root, device="cpu").to_record()
    assert stable_part(a) == stable_part(b)
    assert c["image_indices"] == a["image_indices"][:20], "a smaller n is a prefix"
    assert len(set(a["image_indices"])) == 50 and a["n_available"] == 359


def test_a_classifier_of_another_image_size_is_refused_before_sampling(
    study_root: Path, run_checkpoint: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    shutil.copytree(study_root / "classifiers", root / "classifiers")
    other = ClassifierDir.of(root, "digits-16px")
    shutil.copytree(ClassifierDir.of(root, CLASSIFIER).path, other.path)
    other.write({**other.read(), "name": "digits-16px", "image_size": 16})
    with pytest.raises(InvalidOption) as caught:
        analyse_checkpoint(run_checkpoint, "digits-16px", n=N, data_dir=root, **SAMPLING)
    assert str(caught.value) == (
        f"classifier 'digits-16px' takes 16px images, not 8px; classifiers for digits at 8px: {CLASSIFIER}"
    )
    with pytest.raises(InvalidOption, match="takes 16px images, not 8px"):  # what the API calls
        check_classifier_for_run(root, "digits-16px", RunDir.of(study_root, RUN).read())
    assert check_classifier_for_run(root, None, RunDir.of(study_root, RUN).read())["name"] == CLASSIFIER
    with pytest.raises(InvalidOption, match=r"n must be an integer in \[10, 50000\], got 5"):
        analyse_checkpoint(run_checkpoint, CLASSIFIER, n=5, data_dir=root, **SAMPLING)
    with pytest.raises(InvalidOption, match="the ddpm sampler always runs 1000 steps"):
        analyse_checkpoint(run_checkpoint, CLASSIFIER, n=N, data_dir=root, sampler="ddpm", steps=10)
