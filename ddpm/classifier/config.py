"""How a classifier is trained, torch-free (the API validates a training request with it before queueing).

The network is a small ResNet: a 3x3 stem, three stages of `blocks` residual blocks at widths
(width, 2*width, 4*width), the last two halving the resolution, global average pooling, one linear layer.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from ddpm.classifier.options import check_dataset_spec, check_int
from ddpm.errors import InvalidOption
from ddpm.limits import (
    MAX_BATCH,
    MAX_CLASSIFIER_EPOCHS,
    MAX_HOLDOUT_FRACTION,
    MAX_IMAGE_SIZE,
    MAX_LR,
    MAX_SEED,
    MIN_IMAGE_SIZE,
)

MAX_RESNET_WIDTH = 256
MAX_RESNET_BLOCKS = 8
MAX_CROP_PADDING = 16
# What a resume may change: everything else (data, split, network, optimiser) is the classifier's identity.
RESUMABLE_CHANGES = ("epochs",)


@dataclass(frozen=True)
class ResNetSpec:
    """The small ResNet's shape; stored in every checkpoint so the network is rebuilt from the file."""

    num_classes: int
    in_channels: int = 3
    width: int = 32
    blocks: int = 2

    def __post_init__(self) -> None:
        check_int("num_classes", self.num_classes, 2, 100_000)
        check_int("in_channels", self.in_channels, 1, 4)
        check_int("width", self.width, 4, MAX_RESNET_WIDTH)
        check_int("blocks", self.blocks, 1, MAX_RESNET_BLOCKS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResNetSpec:
        return cls(**data)


@dataclass(frozen=True)
class ClassifierConfig:
    """A classifier's training recipe. AdamW with a cosine learning-rate decay to zero over the run;
    random crops (zero padding) and, where the data set's default says so, horizontal flips."""

    dataset: str
    image_size: int = 32
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 5e-4
    seed: int = 0
    width: int = 32
    blocks: int = 2
    holdout: float = 0.2  # the share of each class kept out of training, for the held-out accuracy
    crop_padding: int = 4  # random crops of the image padded by this many pixels (0: none)
    flip: bool | None = None  # None: the data set's default (on for CIFAR-10 and folders, off for digits)

    def __post_init__(self) -> None:
        check_dataset_spec(self.dataset)
        check_int("image_size", self.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        if self.dataset == "cifar10" and self.image_size != 32:
            raise InvalidOption(
                f"cifar10 images are 32x32 (got image_size={self.image_size}); image_size applies to digits "
                "and folder datasets"
            )
        check_int("epochs", self.epochs, 1, MAX_CLASSIFIER_EPOCHS)
        check_int("batch_size", self.batch_size, 2, MAX_BATCH)  # batch norm needs two images
        check_int("seed", self.seed, 0, MAX_SEED)
        check_int("width", self.width, 4, MAX_RESNET_WIDTH)
        check_int("blocks", self.blocks, 1, MAX_RESNET_BLOCKS)
        check_int("crop_padding", self.crop_padding, 0, MAX_CROP_PADDING)
        if not 0 < self.lr <= MAX_LR:
            raise InvalidOption(f"lr must be in (0, {MAX_LR}], got {self.lr!r}")
        if not 0 <= self.weight_decay < 1:
            raise InvalidOption(f"weight_decay must be in [0, 1), got {self.weight_decay!r}")
        if not 0 < self.holdout <= MAX_HOLDOUT_FRACTION:
            raise InvalidOption(f"holdout must be in (0, {MAX_HOLDOUT_FRACTION}], got {self.holdout!r}")
        if self.flip is not None and not isinstance(self.flip, bool):
            raise InvalidOption(
                f"flip must be true, false or null (the data set's default), got {self.flip!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidOption(f"unknown classifier training options {unknown}; valid: {sorted(known)}")
        return cls(**data)

    def default_name(self) -> str:
        """resnet-<dataset>-<size>px: the classifier's folder name when none is given."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.dataset.lower()).strip("-")
        return f"resnet-{slug}-{self.image_size}px"[:128]

    def network(self, num_classes: int, in_channels: int = 3) -> ResNetSpec:
        return ResNetSpec(num_classes, in_channels, self.width, self.blocks)

    def resume_conflicts(self, stored: dict[str, Any]) -> list[str]:
        """The settings that differ from a stored config and may not change on resume."""
        mine = self.to_dict()
        return sorted(k for k in mine if k not in RESUMABLE_CHANGES and stored.get(k) != mine[k])
