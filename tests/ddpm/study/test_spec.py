"""Study specs: normalised JSON round trip, presets, and every refusal naming its field."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest

from ddpm.study.spec import (
    PRESET_NAMES,
    PRESETS,
    REPORT_VARIANTS,
    TRAIN_DEFAULTS,
    Member,
    StudySpec,
    StudySpecError,
    preset,
)


def _spec(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "mine",
        "variants": ["DDPM_BigGAN", "baseline"],
        "train": {"dataset": "digits", "image_size": 16, "width": 0.125, "max_steps": 5},
        "evaluation": {"sampler": "ddim", "fid_n": [8, 4]},
    }
    for key, value in changes.items():
        if key in ("train", "evaluation"):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def _error(data: dict[str, Any], validate: bool = False) -> StudySpecError:
    with pytest.raises(StudySpecError) as caught:
        spec = StudySpec.from_dict(data)
        if validate:
            spec.validate()
    return caught.value


def test_from_dict_normalises_and_round_trips_through_json() -> None:
    spec = StudySpec.from_dict(_spec(seeds=[3, 1]))
    assert spec.variants == ("biggan", "baseline")  # canonical names, the order given
    assert set(spec.train) == set(TRAIN_DEFAULTS) and spec.train["lr"] == 2e-4 and spec.train["epochs"] == 100
    assert spec.evaluation.fid_n == (4, 8)
    assert spec.evaluation.sampler == {"sampler": "ddim", "steps": 50, "eta": 0.0, "clip_x0": True}
    assert [m.key for m in spec.members()] == ["biggan@3", "biggan@1", "baseline@3", "baseline@1"]
    again = StudySpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.to_dict() == spec.to_dict()
    assert spec.train_config(Member("biggan", 1)) == {"arch": "biggan", "seed": 1, **spec.train}
    assert spec.reference_dataset() == "digits"


def test_train_defaults_are_train_configs() -> None:
    from ddpm.training import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name in TRAIN_DEFAULTS}
    assert defaults == TRAIN_DEFAULTS


def test_spec_module_loads_no_torch() -> None:
    code = "import sys, ddpm.study.spec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_presets() -> None:
    assert tuple(PRESETS) == PRESET_NAMES
    table1 = preset("report-table1")
    assert table1.variants == REPORT_VARIANTS and len(table1.members()) == 10
    assert table1.train["dataset"] == "cifar10" and table1.train["epochs"] == 100
    assert (
        table1.train["batch_size"] == 128 and table1.train["lr"] == 2e-4 and table1.train["max_steps"] is None
    )
    assert table1.evaluation.sampler["sampler"] == "ddpm" and table1.evaluation.sampler["steps"] == 1000
    assert max(table1.evaluation.fid_n) == 4096
    assert (table1.evaluation.grid_seed, table1.evaluation.grid_n) == (0, 80)
    smoke = preset("digits-smoke")
    assert len(smoke.variants) == 3 and smoke.train["dataset"] == "digits" and smoke.train["image_size"] == 16
    assert smoke.evaluation.sampler["sampler"] == "dpmpp_2m"
    for spec in PRESETS.values():
        spec.validate()
        assert spec.preset == spec.name and StudySpec.from_dict(spec.to_dict()) == spec
    more = preset("digits-smoke", name="two seeds", seeds=[0, 1], train={"max_steps": 20})
    assert len(more.members()) == 6 and more.train["max_steps"] == 20 and more.train["width"] == 0.125
    assert more.name == "two seeds" and more.preset == "digits-smoke"
    err = _error({**_spec(), "preset": "nope"})
    assert err.field == "preset" and "report-table1" in err.message
    with pytest.raises(StudySpecError, match="digits-smoke"):
        preset("table1")


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (_spec(variants=["biggan", "nonet"]), "variants[1]", "unknown arch"),
        (_spec(variants=["biggan", "DDPM_BigGAN"]), "variants[1]", "already variants[0]"),
        (_spec(variants=[]), "variants", "non-empty"),
        (_spec(variants=["biggan+convnext"]), "variants[0]", "disagree"),
        (_spec(train={"lr": 0}), "train.lr", "(0.0, 1.0]"),
        (_spec(train={"epochs": "3"}), "train.epochs", "integer"),
        (_spec(train={"arch": "biggan"}), "train.arch", "unknown field"),
        (_spec(train={"dataset": "imagenet"}), "train.dataset", "cifar10, digits"),
        (_spec(train={"dataset": "folder:../etc"}), "train.dataset", "folder"),
        (_spec(train={"schedule": "quadratic"}), "train.schedule", "linear"),
        (_spec(evaluation={"fid_n": [1]}), "evaluation.fid_n[0]", "[2, 50000]"),
        (_spec(evaluation={"sampler": {"sampler": "ddim", "steps": 0}}), "evaluation.sampler", "steps"),
        (_spec(evaluation={"metrics": ["fid", "clip"]}), "evaluation.metrics", "unknown metric"),
        (_spec(evaluation={"grid_n": 0}), "evaluation.grid_n", "integer"),
        (_spec(seeds=[0, 0]), "seeds[1]", "twice"),
        (_spec(seeds=[-1]), "seeds[0]", "integer"),
        (_spec(attach={"convnext@0": "r1"}), "attach.convnext@0", "not a member"),
        (_spec(attach={"biggan@0": "Bad Id"}), "attach.biggan@0", "run id"),
        ({**_spec(), "colour": 1}, "colour", "unknown field"),
        ({"variants": ["biggan"], "evaluation": {"fid_n": 4}}, "name", "required"),
    ],
)
def test_bad_specs_name_their_field(data: dict[str, Any], field: str, words: str) -> None:
    err = _error(data)
    assert err.field == field and words in err.message, str(err)
    assert str(err).startswith(field)


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (_spec(train={"image_size": 12}), "train.image_size", "does not fit biggan"),
        (_spec(variants=["deep"], train={"image_size": 8}), "train.image_size", "does not fit deep"),
        (_spec(variants=["refinenet"], train={"dropout": 0.1}), "train.dropout", "no dropout"),
        (_spec(train={"dataset": "cifar10", "image_size": 16}), "train.image_size", "32x32"),
        (_spec(evaluation={"fid_dataset": "cifar10"}), "evaluation.fid_dataset", "32x32"),
        (_spec(evaluation={"metrics": ["fid_inf"], "fid_n": [8]}), "evaluation.fid_n", "fid_inf needs N >="),
    ],
)
def test_impossible_recipes_fail_validate_naming_the_field(
    data: dict[str, Any], field: str, words: str
) -> None:
    err = _error(data, validate=True)
    assert err.field == field and words in err.message, str(err)


def test_ddpm_original_takes_dropout() -> None:
    StudySpec.from_dict(
        _spec(variants=["ddpm_original"], train={"dropout": 0.1, "image_size": 16})
    ).validate()
