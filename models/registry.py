"""The variant registry: every architecture is a short preset of the one UNet skeleton.

Torch-free on purpose: the API process lists and validates architectures from here without loading
the network code. Parameter counts are recorded (and checked by a test against the built networks),
so `GET /archs` can report them without building a model.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from models.config import ConfigError, HoUNetConfig, ModelConfig, RefineNetConfig, UNetConfig, apply_width

BASELINE = UNetConfig()


@dataclass(frozen=True)
class ArchSpec:
    name: str
    report_name: str
    description: str
    config: ModelConfig
    params: int | None  # at the default (report) size, verified by tests; None for ad-hoc combinations
    report_fid: float | None = None  # Table 1 of the report: CIFAR-10, 100 epochs, 4096 samples
    aliases: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "report_name": self.report_name,
            "description": self.description,
            "params": self.params,
            "report_fid": self.report_fid,
        }


def _preset(**changes: Any) -> UNetConfig:
    return dataclasses.replace(BASELINE, **changes)


_SPECS: tuple[ArchSpec, ...] = (
    ArchSpec(
        name="baseline",
        report_name="DDPM_Baseline",
        description="The report's UNet (adapted from dome272): DoubleConv residual blocks, max-pool down, "
        "bilinear up, self-attention after every stage, time embedding added after each stage.",
        config=BASELINE,
        params=23_332_739,
        report_fid=75.538,
    ),
    ArchSpec(
        name="pure_unet",
        report_name="DDPM_PureUNet",
        description="The baseline without its six self-attention layers (report section 2.6).",
        config=_preset(attention=False),
        params=22_291_587,
    ),
    ArchSpec(
        name="res_link",
        report_name="DDPM_AdditionalResLink",
        description="Baseline plus a residual link (1x1-projected when widths differ) on the second "
        "DoubleConv of every stage.",
        config=_preset(extra_res_link=True),
        params=23_464_451,
        report_fid=55.932,
    ),
    ArchSpec(
        name="rdn",
        report_name="DDPM_RDN",
        description="Each stage's residual block replaced by a Residual Dense Block (4 conv3x3 + ReLU, "
        "growth = stage width, 1x1 fusion, local residual).",
        config=_preset(block="rdb"),
        params=28_731_139,
        report_fid=60.524,
    ),
    ArchSpec(
        name="deep",
        report_name="DDPM_Deep",
        description="One more resolution (32 -> 2), stage widths (32, 64, 128, 256, 256).",
        config=_preset(channels=(32, 64, 128, 256, 256)),
        params=23_490_755,
        report_fid=67.579,
    ),
    ArchSpec(
        name="convnext",
        report_name="DDPM_ConvNeXt",
        description="ConvNeXt blocks (dw7x7, LayerNorm, 4x MLP, layer scale) in every stage, 1x1 stem, "
        "widths (96, 192, 384, 768), no self-attention.",
        config=_preset(stem="conv1x1", channels=(96, 192, 384, 768), block="convnext", attention=False),
        params=22_633_315,
        report_fid=69.575,
    ),
    ArchSpec(
        name="anti_aliasing",
        report_name="DDPM_Anti_aliasing",
        description="Baseline with a per-channel [1,2,1]x[1,2,1]/16 blur before every max-pool.",
        config=_preset(anti_alias=True),
        params=23_332_739,
        report_fid=71.902,
    ),
    ArchSpec(
        name="four_double_conv",
        report_name="DDPM_4DoubleConvBlocks",
        description="Four DoubleConvs per stage (two extra residual ones first), residual sums scaled "
        "by 1/sqrt(2).",
        config=_preset(pre_blocks=2, skip_scale=1 / math.sqrt(2)),
        params=38_826_371,
        report_fid=70.211,
        aliases=("DDPM_4ResBlocks",),
    ),
    ArchSpec(
        name="biggan",
        report_name="DDPM_BigGAN",
        description="BigGAN residual blocks (discriminator block down, generator block up, ReLU, "
        "average pooling, GroupNorm), with the baseline's attention.",
        config=_preset(block="biggan", pool="avg"),
        params=14_861_059,
        report_fid=53.096,
    ),
    # --- rows the report never filled -------------------------------------------------------------
    ArchSpec(
        name="biggan_no_attention",
        report_name="DDPM_BigGAN_NoAttention",
        description="The report's ablation: BigGAN blocks without self-attention (same as biggan+pure_unet).",
        config=_preset(block="biggan", pool="avg", attention=False),
        params=13_819_907,
        report_fid=75.941,
    ),
    ArchSpec(
        name="biggan_res_link",
        report_name="DDPM_BigGAN_ResLink",
        description="The report's two best ingredients combined: BigGAN blocks plus residual links on "
        "every remaining DoubleConv (stem and bottleneck).",
        config=_preset(block="biggan", pool="avg", res_link_all=True),
        params=15_124_227,
    ),
    ArchSpec(
        name="biggan_res_link_aa",
        report_name="DDPM_BigGAN_ResLink_AntiAliasing",
        description="biggan_res_link with the [1,2,1] blur before every (average) pooling.",
        config=_preset(block="biggan", pool="avg", res_link_all=True, anti_alias=True),
        params=15_124_227,
    ),
    ArchSpec(
        name="refinenet",
        report_name="DDPM_RefineNet",
        description="RefineNet as in NCSN: residual encoder at 32/16/8/4, RefineBlocks with residual conv "
        "units, multi-resolution fusion and chained residual pooling; the timestep enters every residual unit.",
        config=RefineNetConfig(),
        params=37_392_899,
    ),
    ArchSpec(
        name="ddpm_original",
        report_name="DDPM_Original",
        description="The CIFAR-10 network of Ho et al. 2020: 128 x (1, 2, 2, 2) channels, two residual "
        "blocks per resolution, attention at 16x16, GroupNorm(32), SiLU, dropout 0.1.",
        config=HoUNetConfig(),
        params=35_746_307,
        report_fid=3.17,
        aliases=("DDPM", "Ho2020"),
    ),
)

ARCHS: dict[str, ArchSpec] = {spec.name: spec for spec in _SPECS}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


_LOOKUP: dict[str, str] = {}
for _spec in _SPECS:
    for _alias in (_spec.name, _spec.report_name, *_spec.aliases):
        _LOOKUP[_normalise(_alias)] = _spec.name


class UnknownArchError(ConfigError):
    """The architecture name is not in the registry. `name` is the part that is unknown, so a caller
    can word its own message (the API's is one line: service/schemas.py)."""

    def __init__(self, message: str, name: object) -> None:
        super().__init__(message)
        self.name = name


def arch_names() -> list[str]:
    return list(ARCHS)


def closest_arch(name: object) -> str | None:
    """The registry name `name` most likely meant (a typo of a registry, report or alias name), or None."""
    if not isinstance(name, str):
        return None
    match = difflib.get_close_matches(_normalise(name), list(_LOOKUP), n=1, cutoff=0.75)
    return _LOOKUP[match[0]] if match else None


COMBINE = "+"


def resolve_arch(name: str) -> str:
    """Canonical name for `name`: registry or report names, case-insensitive (DDPM_BigGAN), or a
    combination of skeleton presets joined by '+' ("biggan+anti_aliasing", "biggan+pure_unet"),
    returned in registry order. A combination whose parts disagree, or that the blocks do not allow,
    raises ConfigError naming the clash."""
    # Spaces separate parts too: an unencoded '+' in a URL query arrives as a space.
    parts = re.split(r"[+\s]+", name.strip()) if isinstance(name, str) else [name]
    canonical = []
    for part in parts:
        if not isinstance(part, str) or _normalise(part) not in _LOOKUP:
            valid = ", ".join(f"{s.name} ({s.report_name})" for s in _SPECS)
            raise UnknownArchError(
                f"unknown arch {part!r}; valid: {valid}; or a combination joined by '+', e.g. biggan+anti_aliasing",
                part,
            )
        canonical.append(_LOOKUP[_normalise(part)])
    ordered = [arch for arch in ARCHS if arch in canonical]
    if len(ordered) == 1:
        return ordered[0]
    _combined_config(ordered)  # validate now, so a bad combination fails at the edge
    return COMBINE.join(ordered)


def _combined_config(names: list[str]) -> UNetConfig:
    """Merge each preset's changes from the baseline; two presets setting one field differently clash."""
    changes: dict[str, tuple[str, Any]] = {}
    for name in names:
        config = ARCHS[name].config
        if not isinstance(config, UNetConfig):
            raise ConfigError(f"{name} is its own network and cannot be combined with skeleton presets")
        for field in dataclasses.fields(UNetConfig):
            value = getattr(config, field.name)
            if value == getattr(BASELINE, field.name):
                continue
            if field.name in changes and changes[field.name][1] != value:
                other = changes[field.name][0]
                raise ConfigError(
                    f"{other} and {name} disagree on {field.name} ({changes[field.name][1]!r} vs {value!r})"
                )
            changes[field.name] = (name, value)
    return dataclasses.replace(BASELINE, **{key: value for key, (_, value) in changes.items()})


def get_arch(name: str) -> ArchSpec:
    canonical = resolve_arch(name)
    if canonical in ARCHS:
        return ARCHS[canonical]
    parts = canonical.split(COMBINE)
    return ArchSpec(
        name=canonical,
        report_name=COMBINE.join(ARCHS[p].report_name for p in parts),
        description="combination of " + ", ".join(parts),
        config=_combined_config(parts),
        params=None,
    )


def list_archs() -> list[dict[str, Any]]:
    """One dict per variant: name, report name, description, parameter count, report FID."""
    return [spec.summary() for spec in _SPECS]


def arch_config(
    name: str,
    width: float = 1.0,
    channels: tuple[int, ...] | None = None,
    bottleneck: tuple[int, ...] | None = None,
    **overrides: Any,
) -> ModelConfig:
    """The resolved config of a variant: preset, then explicit overrides, then the width multiplier.

    Explicit `channels`/`bottleneck` are taken as given (the multiplier scales only preset widths).
    """
    config = get_arch(name).config
    if not isinstance(config, UNetConfig) and (channels is not None or bottleneck is not None):
        raise ConfigError(f"{name} is not built from the UNet skeleton: channels/bottleneck do not apply")
    known = {f.name for f in dataclasses.fields(type(config))}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown model options {unknown}; valid: {sorted(known | {'width'})}")
    config = dataclasses.replace(config, **overrides)
    config = apply_width(config, width)
    if channels is not None:
        config = dataclasses.replace(config, channels=tuple(channels))
    if bottleneck is not None:
        config = dataclasses.replace(config, bottleneck=tuple(bottleneck))
    return config
