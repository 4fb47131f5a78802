"""The UNet skeleton's configuration: one frozen dataclass that every variant is a preset of.

This module imports no torch, so the HTTP service can read the registry without loading the network code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

BlockKind = Literal["double_conv", "rdb", "convnext", "biggan"]
StemKind = Literal["double_conv", "conv1x1"]
PoolKind = Literal["max", "avg"]

BLOCK_KINDS: tuple[str, ...] = ("double_conv", "rdb", "convnext", "biggan")
STEM_KINDS: tuple[str, ...] = ("double_conv", "conv1x1")
POOL_KINDS: tuple[str, ...] = ("max", "avg")

# Channels are rounded to this multiple when a width multiplier scales them, so that 4 attention heads
# and GroupNorm always divide them evenly.
CHANNEL_MULTIPLE = 8
# ddpm_original and refinenet normalise with GroupNorm(gcd(NORM_GROUPS, channels)) (Ho et al.'s 32 groups).
NORM_GROUPS = 32
TIME_EMBED_DIM = 256


class ConfigError(ValueError):
    """A model option is invalid; the message names the bad value and what is valid."""


class _NetworkConfig:
    """Shared by every network's config: a `network` tag, so a stored dict rebuilds the right class."""

    network: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, **dataclasses.asdict(self)}  # type: ignore[call-overload]


class _ChannelMultConfig(_NetworkConfig):
    """Networks sized by a base width `ch` and per-level multipliers `ch_mult` (ddpm_original, refinenet)."""

    ch: int
    ch_mult: tuple[int, ...]

    def _check_channels(self) -> None:
        if not isinstance(self.ch, int) or self.ch <= 0 or self.ch % CHANNEL_MULTIPLE:
            raise ConfigError(f"ch must be a positive multiple of {CHANNEL_MULTIPLE}, got {self.ch!r}")
        if not self.ch_mult or any(not isinstance(m, int) or m <= 0 for m in self.ch_mult):
            raise ConfigError(f"ch_mult must be positive integers, got {self.ch_mult!r}")

    @property
    def levels(self) -> int:
        """Number of downsamplings; inputs must be divisible by 2**levels."""
        return len(self.ch_mult) - 1

    def with_width(self, width: float) -> Any:
        return dataclasses.replace(self, ch=scale_width(self.ch, width))  # type: ignore[type-var]

    @property
    def smallest_deepest_side(self) -> int:
        """Where GroupNorm(gcd(NORM_GROUPS, channels)) leaves one channel per group at the deepest level
        (tiny widths), a 1x1 map of one image has a single value per group, which GroupNorm refuses: the
        deepest level must then be at least 2x2."""
        return 2 if NORM_GROUPS % (self.ch * self.ch_mult[-1]) == 0 else 1


@dataclass(frozen=True)
class UNetConfig(_NetworkConfig):
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
    res_link_all: bool = False  # also give the stem and bottleneck DoubleConvs (projected) residual links
    dropout: float = 0.0  # inside every DoubleConv, before its second conv (Ho et al. use 0.1)
    attention: bool = True  # self-attention after every down and up stage
    attention_heads: int = 4
    anti_alias: bool = False  # [1,2,1]x[1,2,1]/16 per-channel blur before every downsampling
    pool: PoolKind = "max"
    in_channels: int = 3
    time_embed_dim: int = TIME_EMBED_DIM

    network: ClassVar[str] = "unet"

    def __post_init__(self) -> None:
        _check_choice("block", self.block, BLOCK_KINDS)
        _check_dropout(self.dropout)
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
        if self.block != "double_conv" and (self.extra_res_link or self.pre_blocks):
            raise ConfigError(
                f"extra_res_link and pre_blocks shape DoubleConv stages (block='double_conv'), not "
                f"block={self.block!r}; res_link_all adds residual links to the stem and bottleneck instead"
            )
        if not (0.0 < self.skip_scale <= 1.0):
            raise ConfigError(f"skip_scale must be in (0, 1], got {self.skip_scale}")
        if self.time_embed_dim <= 0 or self.time_embed_dim % 2:
            raise ConfigError(f"time_embed_dim must be a positive even number, got {self.time_embed_dim}")

    @property
    def levels(self) -> int:
        """Number of down (and up) stages; inputs must be divisible by 2**levels."""
        return len(self.channels) - 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        return _from_dict(cls, data, tuple_fields=("channels", "bottleneck"))

    def with_width(self, width: float) -> UNetConfig:
        return dataclasses.replace(
            self,
            channels=tuple(scale_width(c, width) for c in self.channels),
            bottleneck=tuple(scale_width(c, width) for c in self.bottleneck),
        )


@dataclass(frozen=True)
class HoUNetConfig(_ChannelMultConfig):
    """The CIFAR-10 network of Ho et al. 2020 (their diffusion_tf unet, about 35.7M parameters).

    Levels run at 32, 16, 8, 4 for 32x32 inputs; attn_levels are level indices (1 = 16x16 there).
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_levels: tuple[int, ...] = (1,)
    dropout: float = 0.1
    in_channels: int = 3

    network: ClassVar[str] = "ho_unet"

    def __post_init__(self) -> None:
        self._check_channels()
        if self.num_res_blocks < 1:
            raise ConfigError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        bad = [level for level in self.attn_levels if not 0 <= level < len(self.ch_mult)]
        if bad:
            raise ConfigError(f"attn_levels {bad} out of range: levels are 0..{len(self.ch_mult) - 1}")
        _check_dropout(self.dropout)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HoUNetConfig:
        return _from_dict(cls, data, tuple_fields=("ch_mult", "attn_levels"))


@dataclass(frozen=True)
class RefineNetConfig(_ChannelMultConfig):
    """A RefineNet denoiser as NCSN uses it (Song & Ermon 2019), with the timestep in every residual unit.

    Encoder: residual units at widths ch * ch_mult (32, 16, 8, 4 for 32x32 inputs), average pooling
    between levels. Decoder: one RefineBlock per level, deepest first: residual conv units on each input,
    multi-resolution fusion, chained residual pooling (crp_stages), an output unit.
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    blocks_per_level: int = 2
    crp_stages: int = 2
    in_channels: int = 3

    network: ClassVar[str] = "refinenet"

    def __post_init__(self) -> None:
        self._check_channels()
        if self.blocks_per_level < 1 or self.crp_stages < 1:
            raise ConfigError(
                f"blocks_per_level and crp_stages must be >= 1, got {self.blocks_per_level}, {self.crp_stages}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefineNetConfig:
        return _from_dict(cls, data, tuple_fields=("ch_mult",))


ModelConfig = UNetConfig | HoUNetConfig | RefineNetConfig
CONFIG_CLASSES: dict[str, type[UNetConfig] | type[HoUNetConfig] | type[RefineNetConfig]] = {
    UNetConfig.network: UNetConfig,
    HoUNetConfig.network: HoUNetConfig,
    RefineNetConfig.network: RefineNetConfig,
}


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild any network's config from its to_dict() (checkpoints without 'network' are UNets)."""
    network = data.get("network", UNetConfig.network)
    if network not in CONFIG_CLASSES:
        raise ConfigError(f"unknown network {network!r}; valid: {sorted(CONFIG_CLASSES)}")
    return CONFIG_CLASSES[network].from_dict(data)


def _from_dict(cls: Any, data: dict[str, Any], tuple_fields: tuple[str, ...]) -> Any:
    values = {k: v for k, v in data.items() if k != "network"}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown model options {unknown}; valid: {sorted(known)}")
    for key in tuple_fields:
        if key in values:
            values[key] = tuple(values[key])
    return cls(**values)


def _check_dropout(dropout: float) -> None:
    if not isinstance(dropout, int | float) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {list(valid)}")


def scale_width(width: int, multiplier: float) -> int:
    """Scale one channel count, rounding to CHANNEL_MULTIPLE (never below it); 1.0 keeps it exact."""
    if multiplier == 1.0:
        return width
    return max(CHANNEL_MULTIPLE, CHANNEL_MULTIPLE * round(width * multiplier / CHANNEL_MULTIPLE))


def apply_width(config: ModelConfig, width: float) -> ModelConfig:
    """The same architecture with every channel count scaled by `width` (tiny test models use ~0.125)."""
    if (
        not isinstance(width, int | float)
        or isinstance(width, bool)
        or not math.isfinite(width)
        or width <= 0
    ):
        raise ConfigError(f"width must be a number > 0, got {width!r}")
    return config.with_width(width)


def valid_image_sizes(config: ModelConfig, smallest: int, largest: int) -> list[int]:
    """The image sizes in [smallest, largest] a network takes: it halves the image `levels` times, so a
    multiple of 2**levels, large enough that its deepest level is not smaller than it can normalise."""
    factor = 2**config.levels
    deepest = getattr(config, "smallest_deepest_side", 1)
    first = -(-max(smallest, factor * deepest) // factor) * factor
    return list(range(first, largest + 1, factor))
