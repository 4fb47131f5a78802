"""A study: several variants trained with one recipe, then sampled and scored the same way. Torch-free.

The API validates a study from here before queueing anything (a 422 names `StudySpecError.field`), and
`ddpm study --local` runs the same spec in one process. `to_dict` / `from_dict` are the JSON form that
crosses processes and is stored with a study; a spec from `from_dict` is normalised (canonical variant
names, every training field present with its default, the sampler's own options filled in), so two
requests for the same study give equal specs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ddpm.errors import DdpmError, InvalidOption
from ddpm.fid.options import MetricOptions, plan_metrics
from ddpm.limits import (
    BUILTIN_DATASETS,
    DEFAULT_FID_SAMPLES,
    FOLDER_PREFIX,
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_FID_SWEEP,
    MAX_IMAGE_SIZE,
    MAX_LR,
    MAX_NROW,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_TRAIN_STEPS,
    MAX_WIDTH,
    MIN_FID_SAMPLES,
    MIN_IMAGE_SIZE,
    RUN_ID_REGEX,
    SCHEDULES,
)
from ddpm.sampler_spec import SamplerSpec

MAX_NAME = 100
MAX_MEMBERS = 64  # variants x seeds: a study is a comparison, not a sweep of the whole registry
MEMBER_SEPARATOR = "@"  # member keys: "biggan@0"
PRESET_NAMES = ("report-table1", "digits-smoke")  # PRESETS, at the end of this module

# POST /train's fields without arch, seed, run_id and resume, with its defaults (the report's setup).
# Kept beside TrainConfig's own defaults by tests/ddpm/study/test_spec.py (TrainConfig imports torch).
TRAIN_DEFAULTS: dict[str, Any] = {
    "dataset": "cifar10",
    "epochs": 100,
    "max_steps": None,
    "batch_size": 128,
    "lr": 2e-4,
    "width": 1.0,
    "image_size": 32,
    "ema": False,
    "ema_decay": 0.9999,
    "ema_warmup": True,
    "schedule": "linear",
    "dropout": None,
    "checkpoint_every": 10,
    "bf16": False,
    "grayscale": None,  # None: the data set's own (grey for digits), as ddpm.training resolves it
}


class StudySpecError(InvalidOption, ValueError):
    """A study that cannot run. `field` is the dotted path of the value to change ("variants[2]",
    "train.image_size", "evaluation.fid_n"); the message says what is valid."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Member:
    """One training run of a study: a variant trained with one seed."""

    variant: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.variant}{MEMBER_SEPARATOR}{self.seed}"


@dataclass(frozen=True)
class Evaluation:
    """How every member is judged: one seeded grid, and one FID job (an FID-vs-N sweep from one sample set)."""

    sampler: dict[str, Any]  # SamplerSpec.to_params(): normalised, the sampler's defaults filled in
    fid_n: tuple[int, ...]  # ascending, distinct; FID at each N from the first N of one set of max(N)
    fid_seed: int = 0
    metrics: tuple[str, ...] | None = None  # ddpm.fid.options.METRICS names; None: every metric N allows
    grid_seed: int = 0
    grid_n: int = 80
    grid_nrow: int = 10
    fid_dataset: str | None = None  # the reference; None: the training dataset
    batch_size: int = 128  # images per network call when sampling for FID

    def sampler_spec(self) -> SamplerSpec:
        return SamplerSpec.from_params(self.sampler)

    def metric_options(self) -> MetricOptions:
        return MetricOptions(metrics=self.metrics)

    def reference_dataset(self, train: Mapping[str, Any]) -> str:
        return self.fid_dataset or str(train["dataset"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "sampler": dict(self.sampler),
            "fid_n": list(self.fid_n),
            "fid_seed": self.fid_seed,
            "metrics": None if self.metrics is None else list(self.metrics),
            "grid_seed": self.grid_seed,
            "grid_n": self.grid_n,
            "grid_nrow": self.grid_nrow,
            "fid_dataset": self.fid_dataset,
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "evaluation") -> Evaluation:
        data = _mapping(data, where)
        _no_unknown(data, EVALUATION_FIELDS, where)
        if "fid_n" not in data:
            raise StudySpecError(f"{where}.fid_n", "required: the sample counts N of the FID-vs-N sweep")
        sampler = data.get("sampler", {"sampler": "ddpm"})
        if isinstance(sampler, str):  # "dpmpp_2m" alone: the sampler with its default steps
            sampler = {"sampler": sampler}
        sampler = _mapping(sampler, f"{where}.sampler")
        try:
            sampler = SamplerSpec.from_params(dict(sampler)).to_params()
        except DdpmError as err:
            raise StudySpecError(f"{where}.sampler", str(err)) from err
        metrics = data.get("metrics")
        if metrics is not None:
            if isinstance(metrics, str) or not isinstance(metrics, Sequence):
                raise StudySpecError(f"{where}.metrics", f"a list of metric names, got {metrics!r}")
            try:
                metrics = MetricOptions(metrics=tuple(metrics)).metrics
            except DdpmError as err:
                raise StudySpecError(f"{where}.metrics", str(err)) from err
        return cls(
            sampler=sampler,
            fid_n=_counts(data["fid_n"], f"{where}.fid_n"),
            fid_seed=_int(data.get("fid_seed", 0), f"{where}.fid_seed", 0, MAX_SEED),
            metrics=metrics,
            grid_seed=_int(data.get("grid_seed", 0), f"{where}.grid_seed", 0, MAX_SEED),
            grid_n=_int(data.get("grid_n", 80), f"{where}.grid_n", 1, MAX_SAMPLES),
            grid_nrow=_int(data.get("grid_nrow", 10), f"{where}.grid_nrow", 1, MAX_NROW),
            fid_dataset=None
            if data.get("fid_dataset") is None
            else _dataset(data["fid_dataset"], f"{where}.fid_dataset"),
            batch_size=_int(data.get("batch_size", 128), f"{where}.batch_size", 1, MAX_BATCH),
        )


EVALUATION_FIELDS = tuple(Evaluation.__dataclass_fields__)


@dataclass(frozen=True)
class StudySpec:
    """Which variants, trained how (one recipe, one or more seeds), judged how."""

    name: str
    variants: tuple[str, ...]  # canonical registry names (models.resolve_arch), in the order given
    train: dict[str, Any]  # TRAIN_DEFAULTS' keys, every one present
    evaluation: Evaluation
    seeds: tuple[int, ...] = (0,)  # training seeds
    preset: str | None = None  # the preset this spec started from, if any
    attach: dict[str, str] = field(default_factory=dict)  # member key -> an existing run to use instead

    def members(self) -> list[Member]:
        """Every (variant, seed), variants in the spec's order, then seeds: the report's row order."""
        return [Member(variant, seed) for variant in self.variants for seed in self.seeds]

    def train_config(self, member: Member) -> dict[str, Any]:
        """Keyword arguments of ddpm.training.TrainConfig (and the body of POST /train) for a member."""
        return {"arch": member.variant, "seed": member.seed, **self.train}

    def reference_dataset(self) -> str:
        return self.evaluation.reference_dataset(self.train)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "variants": list(self.variants),
            "train": dict(self.train),
            "seeds": list(self.seeds),
            "evaluation": self.evaluation.to_dict(),
            "preset": self.preset,
            "attach": dict(self.attach),
        }

    @classmethod
    def from_dict(cls, data: Any) -> StudySpec:
        """A normalised spec from its JSON form; StudySpecError names the first field that does not read.

        The recipe's fit to each variant is checked by `validate()`."""
        data = _mapping(data, "study")
        _no_unknown(data, SPEC_FIELDS, "study")
        for required in ("name", "variants", "evaluation"):
            if required not in data:
                raise StudySpecError(required, "required")
        name = data["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise StudySpecError("name", f"a non-empty string of at most {MAX_NAME} characters, got {name!r}")
        preset = data.get("preset")
        if preset is not None and preset not in PRESET_NAMES:
            raise StudySpecError("preset", f"unknown preset {preset!r}; valid: {', '.join(PRESET_NAMES)}")
        seeds = _seeds(data.get("seeds", [0]))
        spec = cls(
            name=name.strip(),
            variants=_variants(data["variants"]),
            train=_train(data.get("train", {})),
            evaluation=Evaluation.from_dict(data["evaluation"]),
            seeds=seeds,
            preset=preset,
            attach=_attach(data.get("attach") or {}),
        )
        if len(spec.members()) > MAX_MEMBERS:
            raise StudySpecError(
                "seeds",
                f"{len(spec.members())} members (variants x seeds); a study holds at most {MAX_MEMBERS}",
            )
        keys = {member.key for member in spec.members()}
        for key in spec.attach:
            if key not in keys:
                raise StudySpecError(f"attach.{key}", f"not a member of the study; members: {sorted(keys)}")
        return spec

    def validate(self) -> None:
        """Everything that can be known before anything runs: each variant's network at this width and
        image size, dropout where the network has none, N below a named metric's minimum, a reference
        data set of another image size. Raises StudySpecError naming the field."""
        from models import arch_config
        from models.config import ConfigError, valid_image_sizes

        train = self.train
        for index, variant in enumerate(self.variants):
            try:
                config = arch_config(variant, width=train["width"])
            except ConfigError as err:
                raise StudySpecError("train.width", f"{variant}: {err}") from err
            if train["dropout"] is not None and not hasattr(config, "dropout"):
                raise StudySpecError(
                    "train.dropout",
                    f"does not apply to {variant} (variants[{index}]): its network has no dropout; leave it out",
                )
            sizes = valid_image_sizes(config, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
            if train["image_size"] not in sizes:
                raise StudySpecError(
                    "train.image_size",
                    f"{train['image_size']} does not fit {variant} (variants[{index}]): its network halves the "
                    f"image {config.levels} times; sizes that fit: {sizes[:6]}{' ...' if len(sizes) > 6 else ''}",
                )
        if train["dataset"] == "cifar10" and train["image_size"] != 32:
            raise StudySpecError(
                "train.image_size",
                "CIFAR-10 images are 32x32; image_size applies to digits and folder data sets",
            )
        if self.reference_dataset() == "cifar10" and train["image_size"] != 32:
            raise StudySpecError(
                "evaluation.fid_dataset",
                f"the CIFAR-10 reference is 32x32 but the members make {train['image_size']}px images",
            )
        try:
            plan_metrics(self.evaluation.metric_options(), self.evaluation.fid_n)
        except DdpmError as err:
            raise StudySpecError("evaluation.fid_n", str(err)) from err


SPEC_FIELDS = tuple(StudySpec.__dataclass_fields__)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise StudySpecError(where, f"an object, got {type(value).__name__}")
    return value


def _no_unknown(data: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        prefix = "" if where == "study" else f"{where}."
        raise StudySpecError(f"{prefix}{unknown[0]}", f"unknown field; valid: {', '.join(known)}")


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise StudySpecError(where, f"an integer in [{low}, {high}], got {value!r}")
    return value


def _float(value: Any, where: str, low: float, high: float, low_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StudySpecError(where, f"a number, got {value!r}")
    if (value <= low if low_open else value < low) or value > high:
        raise StudySpecError(where, f"in {'(' if low_open else '['}{low}, {high}], got {value!r}")
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise StudySpecError(where, f"true or false, got {value!r}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise StudySpecError(where, f"a non-empty list, got {value!r}")
    return list(value)


def _variants(value: Any) -> tuple[str, ...]:
    from models import resolve_arch
    from models.config import ConfigError

    names: list[str] = []
    for index, name in enumerate(_list(value, "variants")):
        if not isinstance(name, str):
            raise StudySpecError(f"variants[{index}]", f"a variant name, got {name!r}")
        try:
            canonical = resolve_arch(name)
        except ConfigError as err:
            raise StudySpecError(f"variants[{index}]", str(err)) from err
        if canonical in names:
            raise StudySpecError(
                f"variants[{index}]", f"{name!r} is {canonical}, already variants[{names.index(canonical)}]"
            )
        names.append(canonical)
    return tuple(names)


def _seeds(value: Any) -> tuple[int, ...]:
    seeds: list[int] = []
    for index, seed in enumerate(_list(value, "seeds")):
        seed = _int(seed, f"seeds[{index}]", 0, MAX_SEED)
        if seed in seeds:
            raise StudySpecError(f"seeds[{index}]", f"seed {seed} is given twice")
        seeds.append(seed)
    return tuple(seeds)


def _counts(value: Any, where: str) -> tuple[int, ...]:
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else _list(value, where)
    counts = sorted({_int(n, f"{where}[{i}]", MIN_FID_SAMPLES, MAX_SAMPLES) for i, n in enumerate(values)})
    if len(counts) > MAX_FID_SWEEP:
        raise StudySpecError(where, f"at most {MAX_FID_SWEEP} sample counts, got {len(counts)}")
    return tuple(counts)


def _dataset(value: Any, where: str) -> str:
    """cifar10, digits, or folder:<relative path under DATA_DIR/datasets> (the API reads nothing else)."""
    if isinstance(value, str):
        if value in BUILTIN_DATASETS:
            return value
        if value.startswith(FOLDER_PREFIX):
            folder = PurePosixPath(value[len(FOLDER_PREFIX) :].strip())
            if str(folder) not in ("", ".") and not folder.is_absolute() and ".." not in folder.parts:
                return f"{FOLDER_PREFIX}{folder}"
    valid = ", ".join([*BUILTIN_DATASETS, f"{FOLDER_PREFIX}<folder under DATA_DIR/datasets>"])
    raise StudySpecError(where, f"unknown data set {value!r}; valid: {valid}")


def _train(value: Any) -> dict[str, Any]:
    data = _mapping(value, "train")
    _no_unknown(data, tuple(TRAIN_DEFAULTS), "train")
    merged = {**TRAIN_DEFAULTS, **data}
    train: dict[str, Any] = {
        "dataset": _dataset(merged["dataset"], "train.dataset"),
        "epochs": _int(merged["epochs"], "train.epochs", 1, MAX_EPOCHS),
        "max_steps": None
        if merged["max_steps"] is None
        else _int(merged["max_steps"], "train.max_steps", 1, MAX_TRAIN_STEPS),
        "batch_size": _int(merged["batch_size"], "train.batch_size", 1, MAX_BATCH),
        "lr": _float(merged["lr"], "train.lr", 0.0, MAX_LR),
        "width": _float(merged["width"], "train.width", 0.0, MAX_WIDTH),
        "image_size": _int(merged["image_size"], "train.image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
        "ema": _bool(merged["ema"], "train.ema"),
        "schedule": merged["schedule"],
        "dropout": None
        if merged["dropout"] is None
        else _float(merged["dropout"], "train.dropout", 0.0, 1.0, low_open=False),
        "checkpoint_every": _int(merged["checkpoint_every"], "train.checkpoint_every", 1, MAX_EPOCHS),
        "bf16": _bool(merged["bf16"], "train.bf16"),
        "ema_decay": _float(merged["ema_decay"], "train.ema_decay", 0.0, 1.0),
        "ema_warmup": _bool(merged["ema_warmup"], "train.ema_warmup"),
        "grayscale": None if merged["grayscale"] is None else _bool(merged["grayscale"], "train.grayscale"),
    }
    if train["ema_decay"] == 1.0:
        raise StudySpecError("train.ema_decay", "must be below 1 (1 would never move from the first weights)")
    if train["schedule"] not in SCHEDULES:
        raise StudySpecError(
            "train.schedule", f"{train['schedule']!r} is not valid; choose one of {list(SCHEDULES)}"
        )
    if train["dropout"] == 1.0:
        raise StudySpecError("train.dropout", "must be below 1")
    return train


_RUN_ID = re.compile(RUN_ID_REGEX)


def _attach(value: Any) -> dict[str, str]:
    data = _mapping(value, "attach")
    attach: dict[str, str] = {}
    for key, run_id in data.items():
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise StudySpecError(
                f"attach.{key}", f"a run id (lower-case letters, digits, '.', '_', '-'), got {run_id!r}"
            )
        if MEMBER_SEPARATOR not in str(key):
            raise StudySpecError(f"attach.{key}", "keys are members, 'variant@seed' (e.g. 'biggan@0')")
        attach[str(key)] = run_id
    return attach


# --- presets ---------------------------------------------------------------------------------------

# The report's Table 1 (section 3.4): the baseline, its seven variants and DDPM_PureUNet (section 2.6's
# baseline without attention, the network of figure 9), plus the BigGAN-without-attention ablation
# whose FID (75.941) the text gives beside the table.
REPORT_VARIANTS = (
    "baseline",
    "pure_unet",
    "res_link",
    "rdn",
    "deep",
    "convnext",
    "anti_aliasing",
    "four_double_conv",
    "biggan",
    "biggan_no_attention",
)
# FID at N = 4096 (Table 1) plus two prefixes of the same 4096-image set for figure 9's FID-vs-N shape:
# the sampling cost stays the report's. (The report's own figure 9 swept 2048 to 10240.)
REPORT_FID_N = (1024, 2048, DEFAULT_FID_SAMPLES)
# digits-smoke: a few minutes on a 2-core CPU. Its N are far below Inception's 2048 feature dimensions,
# so its FIDs are biased upward, rank-deficient and comparable only with each other at equal N (every
# row carries that warning); it shows the machinery working, not which variant is better.
SMOKE_FID_N = (50, 100, 200)
SMOKE_STEPS = 300


def _preset_data() -> dict[str, dict[str, Any]]:
    table1 = {
        "variants": list(REPORT_VARIANTS),
        "train": {"dataset": "cifar10", "epochs": 100, "batch_size": 128, "lr": 2e-4},
        "seeds": [0],
        "evaluation": {
            "sampler": {"sampler": "ddpm"},  # the report's 1000 ancestral steps
            "fid_n": list(REPORT_FID_N),
            "grid_seed": 0,
            "grid_n": 80,  # the report's seed-0 grids: 8 rows of 10
            "grid_nrow": 10,
        },
    }
    smoke = {
        "variants": ["baseline", "res_link", "biggan"],  # the baseline and the report's two best
        "train": {
            "dataset": "digits",
            "image_size": 16,
            "width": 0.125,
            "batch_size": 32,
            "max_steps": SMOKE_STEPS,
            "lr": 1e-3,  # a tiny network trained a few hundred steps learns faster at a higher rate
        },
        "seeds": [0],
        "evaluation": {
            "sampler": {"sampler": "dpmpp_2m", "steps": 10},
            "fid_n": list(SMOKE_FID_N),
            "grid_seed": 0,
            "grid_n": 40,
            "grid_nrow": 10,
            "batch_size": 100,
        },
    }
    return {"report-table1": table1, "digits-smoke": smoke}


PRESETS: dict[str, StudySpec] = {
    name: StudySpec.from_dict({"name": name, "preset": name, **data}) for name, data in _preset_data().items()
}


def preset(name: str, /, **overrides: Any) -> StudySpec:
    """A preset by name, optionally with top-level fields replaced ({"seeds": [0, 1]}, {"name": ...}) or
    `train` / `evaluation` fields merged in; StudySpecError lists the valid names."""
    if name not in PRESETS:
        raise StudySpecError("preset", f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    if not overrides:
        return PRESETS[name]
    data = PRESETS[name].to_dict()
    for key, value in overrides.items():
        if key in ("train", "evaluation") and isinstance(value, Mapping):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return StudySpec.from_dict(data)
