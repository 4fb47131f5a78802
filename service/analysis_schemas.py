"""Request models of the classifier study (POST /analysis, POST /classifiers). Bounds and defaults are the
engine's (ddpm.limits, ddpm.classifier.config); checks that need stored runs or classifiers are made by
the routes, before anything is queued."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, model_validator

from ddpm import limits
from ddpm.classifier.config import (
    MAX_CROP_PADDING,
    MAX_RESNET_BLOCKS,
    MAX_RESNET_WIDTH,
    ClassifierConfig,
)
from ddpm.errors import InvalidOption
from service.schemas import STRICT_BODY, ArchName, RunId, SamplerFields, Seed, check_dataset

# One home for the recipe's defaults: the engine's dataclass.
_RECIPE = {field.name: field.default for field in dataclasses.fields(ClassifierConfig)}
ClassifierName = Annotated[
    str,
    Field(
        pattern=limits.CLASSIFIER_NAME_REGEX,
        description="lower-case letters, digits, '.', '_', '-' (GET /classifiers lists them)",
    ),
]


class AnalysisRequest(SamplerFields):
    """N samples of a checkpoint (arch, or run and checkpoint, as POST /fid), or with `real` N of the
    classifier's held-out real images, classified (docs/analysis.md)."""

    model_config = STRICT_BODY

    real: bool = Field(False, description="analyse the classifier's held-out real images (the baseline)")
    arch: ArchName | None = None
    run: RunId | None = None
    checkpoint: int | None = Field(
        None, ge=0, le=limits.MAX_TRAIN_STEPS, description="a kept checkpoint's step (needs run)"
    )
    classifier: str | None = Field(
        None,
        max_length=128,
        description="a ready classifier of the checkpoint's data set and image size; default: the only one",
    )
    n: int = Field(
        limits.DEFAULT_ANALYSIS_SAMPLES,
        ge=limits.MIN_ANALYSIS_SAMPLES,
        le=limits.MAX_ANALYSIS_SAMPLES,
        description="images to classify (the report's 1000); real images: at most the held-out split",
    )
    seed: Seed = Field(0, description="sampling seed: image i is image i of GET /samples with this seed")
    threshold: float = Field(
        limits.DEFAULT_CONFIDENCE,
        gt=0.0,
        lt=1.0,
        description="a sample is confident (recognisable) when its top class probability is at least this",
    )
    per_class: int = Field(
        limits.DEFAULT_GRID_PER_CLASS,
        ge=1,
        le=limits.MAX_GRID_PER_CLASS,
        description="most confident images per class in the grid",
    )
    batch_size: int = Field(128, ge=1, le=limits.MAX_BATCH)

    @model_validator(mode="after")
    def _one_source(self) -> AnalysisRequest:
        if self.real:
            pinned = sorted({"arch", "run", "checkpoint"} & self.model_fields_set)
            sampler = sorted(set(SamplerFields.model_fields) & self.model_fields_set)
            if pinned or sampler:
                raise ValueError(
                    f"real: true analyses held-out real images, which have no checkpoint and are not "
                    f"sampled; leave out {pinned + sampler}"
                )
        elif self.arch is None and self.run is None:
            raise ValueError(
                'give arch (its newest checkpoint), run (+ checkpoint), or real: true, e.g. {"arch": "biggan"}'
            )
        return self


class ClassifierRequest(BaseModel):
    """Train a classifier (a small seeded ResNet) for the classifier study; every field but dataset has
    the recipe's default (docs/analysis.md). `resume` continues `name`: only `epochs` may change."""

    model_config = STRICT_BODY

    dataset: Annotated[str, Field(max_length=256), AfterValidator(check_dataset)] | None = Field(
        None,
        description="cifar10, digits, or folder:<path under DATA_DIR/datasets> with one subfolder per class",
    )
    name: ClassifierName | None = Field(None, description="default resnet-<dataset>-<size>px")
    resume: bool = Field(False, description="continue classifier `name` from its latest state")
    image_size: int = Field(
        _RECIPE["image_size"],
        ge=limits.MIN_IMAGE_SIZE,
        le=limits.MAX_IMAGE_SIZE,
        description="digits, folders",
    )
    epochs: int | None = Field(
        None,
        ge=1,
        le=limits.MAX_CLASSIFIER_EPOCHS,
        description=f"default {_RECIPE['epochs']}; with resume, the stored number",
    )
    batch_size: int = Field(_RECIPE["batch_size"], ge=2, le=limits.MAX_BATCH)
    lr: float = Field(_RECIPE["lr"], gt=0, le=limits.MAX_LR, description="AdamW peak (cosine decay to 0)")
    weight_decay: float = Field(_RECIPE["weight_decay"], ge=0, lt=1)
    seed: Seed = Field(_RECIPE["seed"], description="weight init, batch order, augmentation, split")
    width: int = Field(_RECIPE["width"], ge=4, le=MAX_RESNET_WIDTH, description="first stage's channels")
    blocks: int = Field(
        _RECIPE["blocks"], ge=1, le=MAX_RESNET_BLOCKS, description="residual blocks per stage"
    )
    holdout: float = Field(
        _RECIPE["holdout"], gt=0, le=limits.MAX_HOLDOUT_FRACTION, description="share of each class held out"
    )
    crop_padding: int = Field(_RECIPE["crop_padding"], ge=0, le=MAX_CROP_PADDING)
    flip: bool | None = Field(None, description="horizontal flips; default: on for cifar10 and folders")

    @model_validator(mode="after")
    def _consistent(self) -> ClassifierRequest:
        if self.resume:
            if self.name is None:
                raise ValueError("resume needs name: the classifier to continue (GET /classifiers)")
            return self
        if self.dataset is None:
            valid = ", ".join([*limits.BUILTIN_DATASETS, f"{limits.FOLDER_PREFIX}<folder>"])
            raise ValueError(f"dataset is required ({valid}), or name and resume: true")
        try:
            self.engine_config()
        except InvalidOption as err:  # checks across fields: CIFAR-10's size
            raise ValueError(str(err)) from err
        return self

    def recipe(self) -> dict[str, Any]:
        """The ClassifierConfig fields the request gives (epochs at its default when left out)."""
        fields = self.model_dump(exclude={"name", "resume"})
        if fields["epochs"] is None:
            fields["epochs"] = _RECIPE["epochs"]
        return fields

    def engine_config(self) -> ClassifierConfig:
        return ClassifierConfig(**self.recipe())
