"""The variant library: every architecture of the report as a preset of one UNet skeleton.

    >>> import models
    >>> models.list_archs()[0]["name"]
    'baseline'
    >>> net = models.build_model("DDPM_BigGAN", width=0.125)   # tiny version for a notebook or a test

Importing this package does not import torch; `build_model` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from models.config import (
    ConfigError,
    HoUNetConfig,
    ModelConfig,
    RefineNetConfig,
    UNetConfig,
    config_from_dict,
)
from models.registry import (
    ARCHS,
    ArchSpec,
    UnknownArchError,
    arch_config,
    arch_names,
    closest_arch,
    get_arch,
    list_archs,
    resolve_arch,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "ARCHS",
    "ArchSpec",
    "ConfigError",
    "UNetConfig",
    "UnknownArchError",
    "arch_config",
    "arch_names",
    "closest_arch",
    "build_model",
    "build_from_config",
    "get_arch",
    "list_archs",
    "resolve_arch",
    "unet_attention_type",
]


def build_model(name: str, width: float = 1.0, **options: Any) -> torch.nn.Module:
    """The nn.Module of variant `name` (registry or report name), called as model(x, t).

    `width` scales every channel count; `channels=(...)`, `bottleneck=(...)` or any UNetConfig field
    overrides the preset.
    """
    return build_from_config(arch_config(name, width=width, **options))


def unet_attention_type() -> type:
    """The self-attention module class (lets tests count attention layers)."""
    from models.layers import SelfAttention

    return SelfAttention


def build_from_config(config: ModelConfig | dict[str, Any]) -> torch.nn.Module:
    """Rebuild a network from a stored config (as kept in every checkpoint)."""
    from models.ho_unet import HoUNet
    from models.refinenet import RefineNet
    from models.unet import UNet

    if isinstance(config, dict):
        config = config_from_dict(config)
    networks: dict[type, type[torch.nn.Module]] = {
        UNetConfig: UNet,
        HoUNetConfig: HoUNet,
        RefineNetConfig: RefineNet,
    }
    return networks[type(config)](config)
