"""Stage bodies: the part of a down/up stage that the report's variants swap out.

A down body maps x (C_in, H, W) to (C_out, H/2, W/2), doing its own downsampling; an up body maps
(x: C_x at H/2, skip: C_skip at H) to (C_out, H, W), doing its own upsampling and concatenation.
Each block family is one (down, up) pair of factories in BLOCKS; the skeleton picks by config.block.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from models.config import UNetConfig
from models.layers import DoubleConv, Downsample, upsample


def _cat_skip(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    # Skip first, as in the report's baseline (torch.cat([skip_x, x])): channel order matters for weights.
    return torch.cat([skip, upsample(x)], dim=1)


# --- DoubleConv family: baseline, pure_unet, res_link, anti_aliasing, four_double_conv -----------------


def _double_conv_chain(c_in: int, c_out: int, c_mid: int, config: UNetConfig) -> nn.Sequential:
    """The report's 'residual block': (1 + pre_blocks) residual DoubleConv(C_in, C_in), then
    DoubleConv(C_in, C_out), itself residual only with extra_res_link."""
    layers = [
        DoubleConv(c_in, c_in, residual=True, skip_scale=config.skip_scale, dropout=config.dropout)
        for _ in range(1 + config.pre_blocks)
    ]
    layers.append(
        DoubleConv(
            c_in,
            c_out,
            c_mid,
            residual=config.extra_res_link or config.res_link_all,
            skip_scale=config.skip_scale,
            dropout=config.dropout,
        )
    )
    return nn.Sequential(*layers)


class DoubleConvDown(nn.Module):
    def __init__(self, c_in: int, c_out: int, config: UNetConfig) -> None:
        super().__init__()
        self.pool = Downsample(config.pool, config.anti_alias)
        self.chain = _double_conv_chain(c_in, c_out, c_out, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.chain(self.pool(x))


class DoubleConvUp(nn.Module):
    def __init__(self, c_x: int, c_skip: int, c_out: int, config: UNetConfig) -> None:
        super().__init__()
        c_cat = c_x + c_skip
        self.chain = _double_conv_chain(c_cat, c_out, c_cat // 2, config)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.chain(_cat_skip(x, skip))


# --- Residual Dense Block (rdn) -----------------------------------------------------------------------

RDB_LAYERS = 4  # the RDN paper's 8, halved by the report


class ResidualDenseBlock(nn.Module):
    """Zhang et al. 2018: densely connected conv3x3+ReLU layers, 1x1 local feature fusion, local residual.

    Growth rate = C_out (the report adapts it to each resolution's width); the residual is projected
    by a 1x1 conv when C_in != C_out.
    """

    def __init__(self, c_in: int, c_out: int, layers: int = RDB_LAYERS) -> None:
        super().__init__()
        growth = c_out
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in + k * growth, growth, 3, padding=1), nn.ReLU())
            for k in range(layers)
        )
        self.fusion = nn.Conv2d(c_in + layers * growth, c_out, 1)
        self.proj = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return self.proj(x) + self.fusion(torch.cat(features, dim=1))


class RDBDown(nn.Module):
    def __init__(self, c_in: int, c_out: int, config: UNetConfig) -> None:
        super().__init__()
        self.pool = Downsample(config.pool, config.anti_alias)
        self.block = ResidualDenseBlock(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.pool(x))


class RDBUp(nn.Module):
    def __init__(self, c_x: int, c_skip: int, c_out: int, config: UNetConfig) -> None:
        super().__init__()
        self.block = ResidualDenseBlock(c_x + c_skip, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(_cat_skip(x, skip))


# --- ConvNeXt (convnext) ------------------------------------------------------------------------------

LAYER_SCALE_INIT = 1e-6


class ConvNeXtBlock(nn.Module):
    """Liu et al. 2022: dw conv7x7 -> LayerNorm(C) -> Linear(C, 4C) -> GELU -> Linear(4C, C) -> layer
    scale -> + input. Width-preserving."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels)
        )
        self.gamma = nn.Parameter(torch.full((channels,), LAYER_SCALE_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).permute(0, 2, 3, 1)  # channels last for LayerNorm and the Linears
        h = self.mlp(self.norm(h)) * self.gamma
        return x + h.permute(0, 3, 1, 2)


def _project(c_in: int, c_out: int) -> nn.Module:
    return nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()


class ConvNeXtDown(nn.Module):
    """pool -> ConvNeXt block at C_in -> 1x1 projection to C_out."""

    def __init__(self, c_in: int, c_out: int, config: UNetConfig) -> None:
        super().__init__()
        self.pool = Downsample(config.pool, config.anti_alias)
        self.block = ConvNeXtBlock(c_in)
        self.proj = _project(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.block(self.pool(x)))


class ConvNeXtUp(nn.Module):
    """upsample + concat -> 1x1 projection to C_out -> ConvNeXt block at C_out."""

    def __init__(self, c_x: int, c_skip: int, c_out: int, config: UNetConfig) -> None:
        super().__init__()
        self.proj = _project(c_x + c_skip, c_out)
        self.block = ConvNeXtBlock(c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(self.proj(_cat_skip(x, skip)))


# --- BigGAN residual blocks (biggan) ------------------------------------------------------------------


class BigGANDown(nn.Module):
    """BigGAN discriminator block: main = ReLU, conv3x3, ReLU, conv3x3, pool; shortcut = conv1x1, pool."""

    def __init__(self, c_in: int, c_out: int, config: UNetConfig) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.shortcut = nn.Conv2d(c_in, c_out, 1)
        self.pool = Downsample(config.pool, config.anti_alias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.main(x)) + self.pool(self.shortcut(x))


class BigGANUp(nn.Module):
    """BigGAN generator block without class conditioning, with the UNet skip concatenated after the
    upsampling: main = GN, ReLU, up, cat, conv3x3, GN, ReLU, conv3x3; shortcut = up, cat, conv1x1.

    GroupNorm(1, C) replaces BigGAN's batch norm: one diffusion batch mixes noise levels, so batch
    statistics would couple unrelated samples.
    """

    def __init__(self, c_x: int, c_skip: int, c_out: int, config: UNetConfig) -> None:
        super().__init__()
        c_cat = c_x + c_skip
        self.pre = nn.Sequential(nn.GroupNorm(1, c_x), nn.ReLU())
        self.main = nn.Sequential(
            nn.Conv2d(c_cat, c_out, 3, padding=1),
            nn.GroupNorm(1, c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.shortcut = nn.Conv2d(c_cat, c_out, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.main(_cat_skip(self.pre(x), skip)) + self.shortcut(_cat_skip(x, skip))


DownFactory = Callable[[int, int, UNetConfig], nn.Module]
UpFactory = Callable[[int, int, int, UNetConfig], nn.Module]

BLOCKS: dict[str, tuple[DownFactory, UpFactory]] = {
    "double_conv": (DoubleConvDown, DoubleConvUp),
    "rdb": (RDBDown, RDBUp),
    "convnext": (ConvNeXtDown, ConvNeXtUp),
    "biggan": (BigGANDown, BigGANUp),
}
