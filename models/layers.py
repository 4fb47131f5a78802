"""Small shared layers: time embedding, DoubleConv, self-attention, resampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer position encoding of integer timesteps: cat(sin(t f), cos(t f)), f = 1e4^(-2i/dim)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=t.device, dtype=torch.float32) / dim))
    angles = t.float()[:, None] * inv_freq[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class DoubleConv(nn.Module):
    """conv3x3 -> GroupNorm(1) -> GELU -> conv3x3 -> GroupNorm(1), optionally residual.

    residual=True gives gelu(skip_scale * (proj(x) + f(x))) where proj is identity when widths match
    and a 1x1 conv otherwise (the report's AdditionalResLink).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        c_mid: int | None = None,
        residual: bool = False,
        skip_scale: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c_mid = c_out if c_mid is None else c_mid
        self.residual = residual
        self.skip_scale = skip_scale
        self.dropout = dropout
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_mid, 3, padding=1, bias=False),
            nn.GroupNorm(1, c_mid),
            nn.GELU(),
            nn.Conv2d(c_mid, c_out, 3, padding=1, bias=False),
            nn.GroupNorm(1, c_out),
        )
        self.proj = nn.Conv2d(c_in, c_out, 1) if residual and c_in != c_out else nn.Identity()

    def _convs(self, x: torch.Tensor) -> torch.Tensor:
        conv1, norm1, act, conv2, norm2 = self.body
        h = act(norm1(conv1(x)))
        if self.dropout:  # where Ho et al. put it: before the second conv (no module, so keys stay put)
            h = F.dropout(h, self.dropout, self.training)
        return norm2(conv2(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.residual:
            return self._convs(x)
        total = self.proj(x) + self._convs(x)
        if self.skip_scale != 1.0:
            total = total * self.skip_scale
        return F.gelu(total)


class SelfAttention(nn.Module):
    """Pre-LN transformer layer over the H*W positions: h = x + MHA(LN(x)); out = h + MLP(LN(h)).

    Same parameters as the report's nn.MultiheadAttention version (fused qkv projection + output
    projection), computed with scaled_dot_product_attention so no score matrix is kept for backward
    when a fused kernel is available. Works for any H and W.
    """

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm_attn = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        self.mlp = nn.Sequential(
            nn.LayerNorm(channels),
            nn.Linear(channels, channels),
            nn.GELU(),
            nn.Linear(channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = self.qkv(self.norm_attn(tokens)).chunk(3, dim=-1)
        q, k, v = (z.unflatten(-1, (self.heads, c // self.heads)).transpose(1, 2) for z in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
        tokens = tokens + self.out(attended)
        tokens = tokens + self.mlp(tokens)
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class Blur(nn.Module):
    """Per-channel [1,2,1]x[1,2,1]/16 low-pass filter with zero 'same' padding (anti-aliasing).

    The kernel is a non-trainable buffer shared by all channels (depthwise), so one module serves any
    width; the report's snippet summed over channels, which is not a blur.
    """

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (taps[:, None] * taps[None, :] / 16.0)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.kernel.to(x.dtype).expand(channels, 1, 3, 3)
        return F.conv2d(x, weight, padding=1, groups=channels)


class Downsample(nn.Sequential):
    """Halve H and W: optional blur, then max or average pooling."""

    def __init__(self, pool: str, anti_alias: bool) -> None:
        layers: list[nn.Module] = [Blur()] if anti_alias else []
        layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
        super().__init__(*layers)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """The skeleton's upsampler: bilinear x2 with align_corners=True (as the report's baseline)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
