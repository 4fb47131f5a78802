"""Request validation and the stored records: torch-free (the API imports them) and exact in their errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ddpm.classifier import (
    ClassifierConfig,
    check_analysis_options,
    check_classifier_for,
    check_real_analysis,
)
from ddpm.classifier.options import compatible_classifiers
from ddpm.classifier.results import (
    check_result_id,
    grid_path,
    list_analyses,
    read_analysis,
    results_dir,
    save_analysis,
    stable_part,
)
from ddpm.classifier.store import ClassifierDir, list_classifiers, read_classifier
from ddpm.errors import InvalidOption


def test_validation_results_and_store_import_no_torch() -> None:
    code = (
        "import sys, ddpm.classifier, ddpm.classifier.options, ddpm.classifier.results, "
        "ddpm.classifier.store, ddpm.classifier.config, ddpm.classifier.cli; "
        "from ddpm.classifier import check_classifier_for, list_analyses, ClassifierConfig; "
        "ClassifierConfig('digits'); "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'numpy' not in sys.modules, 'numpy imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_engine_functions_load_lazily() -> None:
    import ddpm.classifier

    assert callable(ddpm.classifier.analyse_checkpoint) and callable(ddpm.classifier.train_classifier)
    with pytest.raises(AttributeError):
        _ = ddpm.classifier.no_such_name


def _record(name: str, dataset: str = "digits", image_size: int = 32, **changes: Any) -> dict[str, Any]:
    """A record as training writes it (the fields validation reads)."""
    record = {
        "name": name,
        "arch": "resnet",
        "dataset": dataset,
        "image_size": image_size,
        "channels": 3,
        "class_names": [str(i) for i in range(10)],
        "status": "succeeded",
        "ready": True,
        "accuracy": 0.97,
        "split": {"n_holdout": 359, "digest": "0" * 16, "seed": 0, "fraction": 0.2},
    }
    record.update(changes)
    return record


@pytest.fixture
def classifiers(tmp_path: Path) -> Path:
    for record in (
        _record("digits-32"),
        _record("digits-16", image_size=16),
        _record("cifar", dataset="cifar10"),
        _record("half-done", status="running", ready=False),
    ):
        ClassifierDir.of(tmp_path, record["name"]).write(record)
    return tmp_path


@pytest.mark.parametrize(
    "n, threshold, per_class, message",
    [
        (9, 0.9, 8, "n must be an integer in [10, 50000], got 9"),
        (50_001, 0.9, 8, "n must be an integer in [10, 50000], got 50001"),
        (True, 0.9, 8, "n must be an integer in [10, 50000], got True"),
        (100, 1.0, 8, "threshold must be a probability in (0, 1) (default 0.9), got 1.0"),
        (100, 0, 8, "threshold must be a probability in (0, 1) (default 0.9), got 0"),
        (100, "high", 8, "threshold must be a probability in (0, 1)"),
        (100, 0.9, 0, "per_class must be an integer in [1, 32], got 0"),
    ],
)
def test_analysis_options_out_of_bounds(n: Any, threshold: Any, per_class: Any, message: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        check_analysis_options(n, threshold, per_class)
    assert message in str(caught.value)


def test_analysis_options_in_bounds() -> None:
    check_analysis_options(10, 0.5, 1)
    check_analysis_options(50_000, 0.999, 32)


def test_a_classifier_of_another_data_set_or_size_is_refused_naming_the_valid_ones(classifiers: Path) -> None:
    with pytest.raises(InvalidOption) as caught:
        check_classifier_for(classifiers, "cifar", "digits", 32)
    assert str(caught.value) == (
        "classifier 'cifar' was trained on cifar10, not digits; classifiers for digits at 32px: digits-32"
    )
    with pytest.raises(InvalidOption) as caught:
        check_classifier_for(classifiers, "digits-16", "digits", 32)
    assert "takes 16px images, not 32px; classifiers for digits at 32px: digits-32" in str(caught.value)
    with pytest.raises(InvalidOption) as caught:
        check_classifier_for(classifiers, "half-done", "digits", 32)
    assert "is not ready (status 'running')" in str(caught.value)
    assert check_classifier_for(classifiers, "digits-32", "digits", 32)["name"] == "digits-32"


def test_unknown_or_malformed_classifier_names(classifiers: Path) -> None:
    with pytest.raises(InvalidOption) as caught:
        check_classifier_for(classifiers, "densenet", "digits", 32)
    assert str(caught.value) == "no classifier 'densenet'; valid: cifar, digits-16, digits-32, half-done"
    with pytest.raises(InvalidOption, match="invalid classifier name '../etc'"):
        check_classifier_for(classifiers, "../etc", "digits", 32)
    with pytest.raises(InvalidOption, match="valid: none yet"):
        read_classifier(classifiers / "empty", "anything")


def test_no_name_picks_the_only_compatible_classifier(classifiers: Path) -> None:
    assert check_classifier_for(classifiers, None, "digits", 16)["name"] == "digits-16"
    assert compatible_classifiers(classifiers, "digits", 32) == ["digits-32"]
    with pytest.raises(InvalidOption) as caught:
        check_classifier_for(classifiers, None, "folder:faces", 64)
    assert "name a classifier for folder:faces at 64px; valid: none yet; train one: " in str(caught.value)
    assert "`ddpm classifier train --dataset folder:faces --image-size 64`" in str(caught.value)


def test_real_analysis_is_bounded_by_the_held_out_split(classifiers: Path) -> None:
    assert check_real_analysis(classifiers, "digits-32", 359)["name"] == "digits-32"
    with pytest.raises(InvalidOption, match=r"n must be an integer in \[10, 359\], got 360"):
        check_real_analysis(classifiers, "digits-32", 360)
    ClassifierDir.of(classifiers, "imported").write(_record("imported", split=None))
    with pytest.raises(InvalidOption, match="has no held-out split recorded"):
        check_real_analysis(classifiers, "imported", 100)


def test_list_classifiers_skips_unreadable_records(classifiers: Path) -> None:
    (classifiers / "classifiers" / "broken").mkdir()
    (classifiers / "classifiers" / "broken" / "classifier.json").write_text("{")
    names = [r["name"] for r in list_classifiers(classifiers)]
    assert names == ["cifar", "digits-16", "digits-32", "half-done"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"dataset": "mnist"}, "unknown dataset 'mnist'; valid: cifar10, digits, folder:<folder>"),
        ({"dataset": "cifar10", "image_size": 16}, "cifar10 images are 32x32 (got image_size=16)"),
        ({"image_size": 4}, "image_size must be an integer in [8, 256], got 4"),
        ({"epochs": 0}, "epochs must be an integer in [1, 1000], got 0"),
        ({"batch_size": 1}, "batch_size must be an integer in [2, 4096], got 1"),
        ({"holdout": 0.0}, "holdout must be in (0, 0.5], got 0.0"),
        ({"holdout": 0.6}, "holdout must be in (0, 0.5], got 0.6"),
        ({"lr": 0}, "lr must be in (0, 1.0], got 0"),
        ({"width": 2}, "width must be an integer in [4, 256], got 2"),
    ],
)
def test_bad_training_options_are_refused(changes: dict[str, Any], message: str) -> None:
    options = {"dataset": "digits", **changes}
    with pytest.raises(InvalidOption) as caught:
        ClassifierConfig(**options)
    assert message in str(caught.value)


def test_training_config_round_trips_and_names_resume_conflicts() -> None:
    config = ClassifierConfig("digits", epochs=3, seed=2)
    assert ClassifierConfig.from_dict(config.to_dict()) == config
    assert config.default_name() == "resnet-digits-32px"
    assert (
        ClassifierConfig("folder:My Faces/v2", image_size=64).default_name()
        == "resnet-folder-my-faces-v2-64px"
    )
    assert config.resume_conflicts({**config.to_dict(), "epochs": 9}) == []
    assert config.resume_conflicts({**config.to_dict(), "seed": 1, "width": 16}) == ["seed", "width"]
    with pytest.raises(InvalidOption, match=r"unknown classifier training options \['depth'\]"):
        ClassifierConfig.from_dict({"dataset": "digits", "depth": 3})


def test_results_round_trip_newest_first_with_grid(tmp_path: Path) -> None:
    first = save_analysis(tmp_path, {"kind": "real", "counts": [1, 2]}, b"png-1")
    second = save_analysis(tmp_path, {"kind": "samples", "counts": [3, 0]}, b"png-2")
    records = list_analyses(tmp_path)
    assert [r["id"] for r in records] == [second, first]
    assert read_analysis(tmp_path, first)["counts"] == [1, 2]
    assert grid_path(tmp_path, first).read_bytes() == b"png-1"
    assert records[0]["grid_file"] == f"{second}.png"
    assert stable_part(records[0]) == {"kind": "samples", "counts": [3, 0]}
    (results_dir(tmp_path) / ".partial.json.1.tmp").write_text("{")
    (results_dir(tmp_path) / "broken.json").write_text("{not json")
    assert len(list_analyses(tmp_path)) == 2
    with pytest.raises(InvalidOption, match="invalid analysis id '../x'"):
        check_result_id("../x")
    with pytest.raises(InvalidOption, match="no analysis '20250101-120000-a1b2c3d4'"):
        read_analysis(tmp_path, "20250101-120000-a1b2c3d4")


def test_an_unserialisable_record_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_analysis(tmp_path, {"bad": object()}, b"png")
    assert list_analyses(tmp_path) == []
    assert not results_dir(tmp_path).exists() or not any(results_dir(tmp_path).iterdir())
