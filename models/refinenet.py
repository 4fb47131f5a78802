"""DDPM_RefineNet: the RefineNet denoiser of NCSN (Song & Ermon 2019), made a DDPM eps-predictor.

Where the timestep goes (the question the report left open): NCSN conditions every normalisation on the
noise level; here every residual unit, in the encoder and in each RefineBlock's residual conv units,
adds Linear(SiLU(temb)) after its first convolution, exactly as Ho et al.'s residual blocks do. So
every path through the network, including each fusion input, sees t before it is combined. The
chained-residual-pooling and fusion convolutions carry no time term: they mix features already
conditioned on t. GroupNorm replaces NCSN's conditional instance norm (t enters through the units).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.config import RefineNetConfig
from models.ho_unet import ResBlock, _norm, embed_time, time_mlp


class ChainedResidualPooling(nn.Module):
    """x = act(x); path = x; repeat: path = conv3x3(maxpool5x5(path)); x = x + path."""

    def __init__(self, channels: int, stages: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(stages)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(x)
        path = x
        for conv in self.convs:
            path = conv(F.max_pool2d(path, 5, stride=1, padding=2))
            x = x + path
        return x


class RefineBlock(nn.Module):
    """Lin et al. 2017: 2 residual conv units per input, multi-resolution fusion (conv3x3 each input to
    c_out, upsample to the finest input, sum), chained residual pooling, then output units."""

    def __init__(
        self, in_channels: list[int], c_out: int, temb_dim: int, crp_stages: int, output_units: int
    ) -> None:
        super().__init__()
        self.adapt = nn.ModuleList(
            nn.ModuleList([ResBlock(c, c, temb_dim, 0.0), ResBlock(c, c, temb_dim, 0.0)]) for c in in_channels
        )
        self.fuse = nn.ModuleList(nn.Conv2d(c, c_out, 3, padding=1) for c in in_channels)
        self.crp = ChainedResidualPooling(c_out, crp_stages)
        self.out = nn.ModuleList(ResBlock(c_out, c_out, temb_dim, 0.0) for _ in range(output_units))

    def forward(self, inputs: list[torch.Tensor], temb: torch.Tensor) -> torch.Tensor:
        size = max((x.shape[-2:] for x in inputs), key=lambda s: s[0] * s[1])
        fused = None
        for x, units, conv in zip(inputs, self.adapt, self.fuse, strict=True):
            for unit in units:
                x = unit(x, temb)
            x = conv(x)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            fused = x if fused is None else fused + x
        h = self.crp(fused)
        for unit in self.out:
            h = unit(h, temb)
        return h


class RefineNet(nn.Module):
    """eps-predictor: model(x_t, t) -> eps_hat, as UNet."""

    def __init__(self, config: RefineNetConfig) -> None:
        super().__init__()
        self.config = config
        ch, temb_dim = config.ch, 4 * config.ch
        widths = [ch * m for m in config.ch_mult]
        self.temb = time_mlp(ch)
        self.conv_in = nn.Conv2d(config.in_channels, ch, 3, padding=1)
        self.encoder = nn.ModuleList()
        width = ch
        for level_width in widths:
            units = [ResBlock(width, level_width, temb_dim, 0.0)]
            units += [
                ResBlock(level_width, level_width, temb_dim, 0.0) for _ in range(config.blocks_per_level - 1)
            ]
            self.encoder.append(nn.ModuleList(units))
            width = level_width
        # Deepest first: RefineBlock(encoder feature [+ the deeper RefineBlock's output]) at each level.
        self.refine = nn.ModuleList()
        for level in reversed(range(len(widths))):
            inputs = [widths[level]] if level == len(widths) - 1 else [widths[level], widths[level + 1]]
            self.refine.append(
                RefineBlock(
                    inputs, widths[level], temb_dim, config.crp_stages, output_units=3 if level == 0 else 1
                )
            )
        self.norm_out = _norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], config.in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = embed_time(self.temb, x, t, self.config.ch, self.config.levels)
        h = self.conv_in(x)
        features = []
        for level, units in enumerate(self.encoder):
            if level > 0:
                h = F.avg_pool2d(h, 2)
            for unit in units:
                h = unit(h, temb)
            features.append(h)
        refined = self.refine[0]([features[-1]], temb)
        for block, feature in zip(self.refine[1:], reversed(features[:-1]), strict=True):
            refined = block([feature, refined], temb)
        return self.conv_out(F.silu(self.norm_out(refined)))
