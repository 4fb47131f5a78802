"""The UNet skeleton's configuration: one frozen dataclass that every variant is a preset of.

This module imports no torch, so the HTTP service can read the registry without loading the network code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

BlockKind = Literal["double_conv", "rdb", "convnext", "biggan"]
StemKind = Literal["double_conv", "conv1x1"]
PoolKind = Literal["max", "avg"]

BLOCK_KINDS: tuple[str, ...] = ("double_conv", "rdb", "convnext", "biggan")
STEM_KINDS: tuple[str, ...] = ("double_conv", "conv1x1")
POOL_KINDS: tuple[str, ...] = ("max", "avg")

# Channels are rounded to this multiple when a width multiplier scales them, so that 4 attention heads
# and GroupNorm always divide them evenly.
CHANNEL_MULTIPLE = 8
TIME_EMBED_DIM = 256


class ConfigError(ValueError):
    """A model option is invalid; the message names the bad value and what is valid."""


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a network; stored verbatim in every checkpoint.

    channels[0] is the stem's output (the 32x32 skip); each further entry is one down stage's output,
    so len(channels) - 1 is the number of halvings. The decoder mirrors it: the up stage that consumes
    skip level k outputs channels[max(k - 1, 0)], and its second DoubleConv's middle width is half its
    (concatenated) input, as in the report's baseline.
    """

    channels: tuple[int, ...] = (64, 128, 256, 256)
    bottleneck: tuple[int, ...] = (512, 512)
    stem: StemKind = "double_conv"
    block: BlockKind = "double_conv"
    # DoubleConv-family options (block == "double_conv").
    extra_res_link: bool = False  # res_link: the second DoubleConv of each stage gets a (projected) skip
    pre_blocks: int = 0  # four_double_conv: extra residual DoubleConv(C_in, C_in) before the first one
    skip_scale: float = 1.0  # every residual sum is multiplied by this (four_double_conv: 1/sqrt(2))
    attention: bool = True  # self-attention after every down and up stage
    attention_heads: int = 4
    anti_alias: bool = False  # [1,2,1]x[1,2,1]/16 per-channel blur before every downsampling
    pool: PoolKind = "max"
    in_channels: int = 3
    time_embed_dim: int = TIME_EMBED_DIM

    def __post_init__(self) -> None:
        _check_choice("block", self.block, BLOCK_KINDS)
        _check_choice("stem", self.stem, STEM_KINDS)
        _check_choice("pool", self.pool, POOL_KINDS)
        if len(self.channels) < 2:
            raise ConfigError(
                f"channels must list at least 2 widths (stem + one down stage), got {self.channels!r}"
            )
        if len(self.bottleneck) < 1:
            raise ConfigError(f"bottleneck must list at least one width, got {self.bottleneck!r}")
        for name, widths in (("channels", self.channels), ("bottleneck", self.bottleneck)):
            for width in widths:
                if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
                    raise ConfigError(f"{name} must be positive integers, got {widths!r}")
        if self.attention:
            bad = [c for c in self.channels if c % self.attention_heads]
            if bad:
                raise ConfigError(
                    f"with attention, every channel count must be divisible by attention_heads="
                    f"{self.attention_heads}; {bad} are not"
                )
        if self.pre_blocks < 0:
            raise ConfigError(f"pre_blocks must be >= 0, got {self.pre_blocks}")
        if not (0.0 < self.skip_scale <= 1.0):
            raise ConfigError(f"skip_scale must be in (0, 1], got {self.skip_scale}")
        if self.time_embed_dim <= 0 or self.time_embed_dim % 2:
            raise ConfigError(f"time_embed_dim must be a positive even number, got {self.time_embed_dim}")

    @property
    def levels(self) -> int:
        """Number of down (and up) stages; inputs must be divisible by 2**levels."""
        return len(self.channels) - 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model options {unknown}; valid: {sorted(known)}")
        values = dict(data)
        for key in ("channels", "bottleneck"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {list(valid)}")


def scale_width(width: int, multiplier: float) -> int:
    """Scale one channel count, rounding to CHANNEL_MULTIPLE (never below it); 1.0 keeps it exact."""
    if multiplier == 1.0:
        return width
    return max(CHANNEL_MULTIPLE, CHANNEL_MULTIPLE * round(width * multiplier / CHANNEL_MULTIPLE))


def apply_width(config: UNetConfig, width: float) -> UNetConfig:
    """The same architecture with every channel count scaled by `width` (tiny test models use ~0.125)."""
    if (
        not isinstance(width, int | float)
        or isinstance(width, bool)
        or not math.isfinite(width)
        or width <= 0
    ):
        raise ConfigError(f"width must be a number > 0, got {width!r}")
    return dataclasses.replace(
        config,
        channels=tuple(scale_width(c, width) for c in config.channels),
        bottleneck=tuple(scale_width(c, width) for c in config.bottleneck),
    )
