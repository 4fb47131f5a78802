"""The CIFAR-10 denoiser of Ho et al. 2020 (diffusion_tf's unet), so variants can be tested against it.

Differences from the report's skeleton, all from the paper's code: residual blocks GroupNorm(32) ->
SiLU -> conv -> + Linear(SiLU(temb)) -> GroupNorm -> SiLU -> dropout -> conv, with a skip saved after
every block (not only per resolution); strided-conv downsampling, nearest+conv upsampling; single-head
attention at 16x16 only; a 2-layer MLP on the sinusoidal embedding; zero-initialised output convs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.config import NORM_GROUPS, HoUNetConfig


def _norm(channels: int) -> nn.GroupNorm:
    # 32 groups as in the paper; gcd keeps tiny test widths (8, 16, 40...) valid.
    return nn.GroupNorm(math.gcd(NORM_GROUPS, channels), channels)


def _zero(module: nn.Conv2d) -> nn.Conv2d:
    nn.init.zeros_(module.weight)
    nn.init.zeros_(module.bias)
    return module


def ho_timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """diffusion_tf's get_timestep_embedding: frequencies exp(-ln(1e4) i / (dim/2 - 1)), sin then cos."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1)
    )
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def time_mlp(ch: int) -> nn.Sequential:
    """Linear(ch, 4ch) -> SiLU -> Linear(4ch, 4ch) on the sinusoidal embedding (diffusion_tf's temb)."""
    return nn.Sequential(nn.Linear(ch, 4 * ch), nn.SiLU(), nn.Linear(4 * ch, 4 * ch))


def embed_time(mlp: nn.Sequential, x: torch.Tensor, t: torch.Tensor, ch: int, levels: int) -> torch.Tensor:
    """Check x's shape, then SiLU(MLP(sinusoidal(t))): computed once per forward, since every residual
    block applies SiLU before its own projection."""
    factor = 2**levels
    if x.ndim != 4 or x.shape[2] % factor or x.shape[3] % factor:
        raise ValueError(
            f"expected x of shape (B, C, H, W) with H, W divisible by {factor}, got {tuple(x.shape)}"
        )
    t = t.expand(x.shape[0]) if t.ndim == 0 else t
    return F.silu(mlp(ho_timestep_embedding(t.to(x.device), ch)).to(x.dtype))


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3 -> + Linear(temb) -> GroupNorm -> SiLU -> dropout -> conv3x3, plus a
    (1x1-projected) skip. `temb` arrives with SiLU already applied (computed once per forward)."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb_dim, c_out)
        self.norm2 = _norm(c_out)
        self.dropout = dropout
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = F.dropout(F.silu(self.norm2(h)), self.dropout, self.training)
        return self.skip(x) + self.conv2(h)


class AttnBlock(nn.Module):
    """Single-head self-attention over H*W with 1x1 q, k, v and a zero-initialised output projection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)  # (B, HW, C) each
        attended = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(attended.transpose(1, 2).reshape(b, c, h, w))


class HoUNet(nn.Module):
    """eps-predictor: model(x_t, t) -> eps_hat, as UNet."""

    def __init__(self, config: HoUNetConfig) -> None:
        super().__init__()
        self.config = config
        ch, temb_dim = config.ch, 4 * config.ch
        self.temb = time_mlp(ch)
        self.conv_in = nn.Conv2d(config.in_channels, ch, 3, padding=1)

        def block(c_in: int, c_out: int, level: int) -> nn.ModuleList:
            parts = [ResBlock(c_in, c_out, temb_dim, config.dropout)]
            if level in config.attn_levels:
                parts.append(AttnBlock(c_out))
            return nn.ModuleList(parts)

        self.down = nn.ModuleList()
        skip_widths, width = [ch], ch
        for level, mult in enumerate(config.ch_mult):
            for _ in range(config.num_res_blocks):
                self.down.append(block(width, ch * mult, level))
                width = ch * mult
                skip_widths.append(width)
            if level < config.levels:
                self.down.append(nn.ModuleList([nn.Conv2d(width, width, 3, stride=2, padding=1)]))
                skip_widths.append(width)
        self.mid = nn.ModuleList(
            [
                ResBlock(width, width, temb_dim, config.dropout),
                AttnBlock(width),
                ResBlock(width, width, temb_dim, config.dropout),
            ]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.ch_mult))):
            for _ in range(config.num_res_blocks + 1):
                self.up.append(block(width + skip_widths.pop(), ch * mult, level))
                width = ch * mult
            if level > 0:
                self.up.append(nn.ModuleList([nn.Conv2d(width, width, 3, padding=1)]))
        self.norm_out = _norm(width)
        self.conv_out = _zero(nn.Conv2d(width, config.in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = embed_time(self.temb, x, t, self.config.ch, self.config.levels)
        hs = [self.conv_in(x)]
        for parts in self.down:
            hs.append(self._run(parts, hs[-1], temb))
        h = self.mid[0](hs[-1], temb)
        h = self.mid[2](self.mid[1](h), temb)
        for parts in self.up:
            if isinstance(parts[0], ResBlock):
                h = self._run(parts, torch.cat([h, hs.pop()], dim=1), temb)
            else:  # nearest-neighbour x2, then conv
                h = parts[0](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))

    @staticmethod
    def _run(parts: nn.ModuleList, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        first = parts[0]
        h = first(h, temb) if isinstance(first, ResBlock) else first(h)
        return parts[1](h) if len(parts) > 1 else h
