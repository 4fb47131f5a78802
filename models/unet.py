"""The one UNet skeleton every variant is built from: stem, down stages, bottleneck, up stages, 1x1 out.

Each stage is body (from models.blocks, chosen by config.block) -> + Linear(SiLU(temb)) broadcast over
H and W -> optional self-attention, as in the report's baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import BLOCKS
from models.config import UNetConfig
from models.layers import DoubleConv, SelfAttention, sinusoidal_embedding


class Stage(nn.Module):
    """body, then the time embedding added per channel, then self-attention if configured."""

    def __init__(self, body: nn.Module, c_out: int, config: UNetConfig) -> None:
        super().__init__()
        self.body = body
        self.time_proj = nn.Linear(config.time_embed_dim, c_out)
        self.attention = SelfAttention(c_out, config.attention_heads) if config.attention else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor, *skip: torch.Tensor) -> torch.Tensor:
        h = self.body(x, *skip)
        h = h + self.time_proj(temb)[:, :, None, None]
        return self.attention(h)


class UNet(nn.Module):
    """eps-predictor: model(x_t, t) -> eps_hat with x_t (B, C, H, W) and integer t of shape (B,)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        down_block, up_block = BLOCKS[config.block]
        if config.stem == "double_conv":
            self.stem: nn.Module = DoubleConv(
                config.in_channels, ch[0], residual=config.res_link_all, dropout=config.dropout
            )
        else:
            self.stem = nn.Conv2d(config.in_channels, ch[0], 1)
        self.downs = nn.ModuleList(
            Stage(down_block(ch[i], ch[i + 1], config), ch[i + 1], config) for i in range(config.levels)
        )
        widths = (ch[-1], *config.bottleneck, ch[-1])
        self.bottleneck = nn.Sequential(
            *(
                DoubleConv(a, b, residual=config.res_link_all, dropout=config.dropout)
                for a, b in zip(widths, widths[1:], strict=False)
            )
        )
        ups = []
        c_x = ch[-1]
        for level in reversed(range(config.levels)):  # skip levels, deepest first
            c_out = ch[max(level - 1, 0)]
            ups.append(Stage(up_block(c_x, ch[level], c_out, config), c_out, config))
            c_x = c_out
        self.ups = nn.ModuleList(ups)
        self.out = nn.Conv2d(ch[0], config.in_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._check_input(x, t)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        # SiLU of the embedding is shared by every stage's projection, so it is computed once.
        temb = F.silu(sinusoidal_embedding(t.to(x.device), self.config.time_embed_dim)).to(x.dtype)
        h = self.stem(x)
        skips = [h]
        for stage in self.downs:
            h = stage(h, temb)
            skips.append(h)
        skips.pop()  # the deepest output feeds the bottleneck, not a skip
        h = self.bottleneck(h)
        for stage in self.ups:
            h = stage(h, temb, skips.pop())
        return self.out(h)

    def _check_input(self, x: torch.Tensor, t: torch.Tensor) -> None:
        factor = 2**self.config.levels
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected x of shape (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(
                f"H and W must be divisible by {factor} ({self.config.levels} halvings), got {tuple(x.shape[2:])}"
            )
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != x.shape[0]):
            raise ValueError(f"expected t of shape ({x.shape[0]},) or a scalar, got {tuple(t.shape)}")
