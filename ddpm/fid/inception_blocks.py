"""pytorch-fid's Inception blocks rebuilt as branches of fused convolutions, for the FID fast path.

The network computes the same function (features within 1e-5 of pytorch-fid's; tests/ddpm/fid/
test_features.py), with three changes in how it is computed, each measured on a 2-core CPU at batch 50
(a call of about 3.7 s before them, of which 0.65 s were not convolutions):
- **relu inside the convolution** (`ConvRelu`): on the CPU oneDNN applies it as it writes the output,
  where a separate relu pass read and wrote every activation again (about 0.05 s a call).
- **Average pool after the pool branch's 1x1 projection** (`PooledProjection`): Mixed_5b-d, 6b-e and 7b
  average-pool their whole input (up to 1,280 channels) and then project it to 32-192 channels. A 1x1
  convolution and a per-channel average over valid pixels (`count_include_pad=False`) are both linear and
  the bias survives averaging, so projecting first and pooling the few channels after gives the same
  values (rounding aside) for a fraction of the pooling (about 0.1 s a call). The relu comes after the pool.
- **One concatenation per block**: the 7b/7c blocks' inner concatenations (1x3 beside 3x1) are flattened
  into the block's single one, so those activations are copied once, not twice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
from torch import nn
from torch.utils.flop_counter import conv_flop_count, register_flop_formula
from torchvision.models.inception import BasicConv2d, InceptionB, InceptionD

# oneDNN's convolution with a fused element-wise op (what torch.compile's CPU backend calls); absent from
# a build without oneDNN, where the plain conv + relu runs instead.
_CONV_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)

if _CONV_POINTWISE is not None:
    # Counted as the convolution it is, so the work of an image (ddpm/fid/throughput.py) is the same on the
    # fast path as on pytorch-fid's module.
    @register_flop_formula(_CONV_POINTWISE)
    def _conv_pointwise_flop(
        x_shape: list[int], w_shape: list[int], *args: object, out_shape: list[int], **kwargs: object
    ) -> int:
        return conv_flop_count(x_shape, w_shape, out_shape)


class ConvRelu(nn.Module):
    """One BasicConv2d whose batch norm is already folded into its convolution: relu(conv(x) + bias), or
    without the relu where a pool must come between (`relu=False`)."""

    def __init__(self, basic: BasicConv2d, relu: bool = True) -> None:
        super().__init__()
        if not isinstance(basic.bn, nn.Identity):
            raise ValueError("fold the batch norms (ddpm.fid.inception.fold_batch_norms) before fusing")
        self.conv = basic.conv
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if x.device.type == "cpu" and _CONV_POINTWISE is not None and not torch.is_grad_enabled():
            return _CONV_POINTWISE(
                x,
                conv.weight,
                conv.bias,
                list(conv.padding),
                list(conv.stride),
                list(conv.dilation),
                conv.groups,
                "relu" if self.relu else "none",
                [],
                "",
            )
        y = conv(x)
        return F.relu(y, inplace=True) if self.relu else y


class Chain(nn.Sequential):
    """Convolutions one after another; one output."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return [super().forward(x)]


class Fork(nn.Module):
    """A stem, then two convolutions side by side on its output (the 1x3 and 3x1 of Mixed_7b/7c)."""

    def __init__(self, stem: Chain, left: ConvRelu, right: ConvRelu) -> None:
        super().__init__()
        self.stem, self.left, self.right = stem, left, right

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        (y,) = self.stem(x)
        return [self.left(y), self.right(y)]


class PooledProjection(nn.Module):
    """pytorch-fid's avg_pool2d(3, 1, 1, count_include_pad=False) -> 1x1 conv -> relu, computed as
    1x1 conv -> the same pool -> relu (see the module docstring)."""

    def __init__(self, projection: BasicConv2d) -> None:
        super().__init__()
        if projection.conv.kernel_size != (1, 1):
            raise ValueError("only a 1x1 projection commutes with the pool")
        self.projection = ConvRelu(projection, relu=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        pooled = F.avg_pool2d(self.projection(x), kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return [F.relu(pooled, inplace=True)]


class MaxPooled(nn.Module):
    """max_pool2d(3, stride, padding), then optionally a projection (Mixed_7c's pool branch)."""

    def __init__(self, stride: int, padding: int, projection: ConvRelu | None = None) -> None:
        super().__init__()
        self.stride, self.padding, self.projection = stride, padding, projection

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        pooled = F.max_pool2d(x, kernel_size=3, stride=self.stride, padding=self.padding)
        return [pooled if self.projection is None else self.projection(pooled)]


class Branches(nn.Module):
    """An Inception block: its branches' outputs concatenated along channels, in pytorch-fid's order."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([out for branch in self.branches for out in branch(x)], 1)


def chain(*convs: BasicConv2d) -> Chain:
    return Chain(*(ConvRelu(conv) for conv in convs))


def rebuild_block(block: nn.Module) -> nn.Module:
    """Our form of one of pytorch-fid's blocks (batch norms already folded); other modules as they are,
    except BasicConv2d, which becomes a ConvRelu."""
    b = block
    kind = type(block)
    if kind is FIDInceptionA:
        return Branches(
            [
                chain(b.branch1x1),
                chain(b.branch5x5_1, b.branch5x5_2),
                chain(b.branch3x3dbl_1, b.branch3x3dbl_2, b.branch3x3dbl_3),
                PooledProjection(b.branch_pool),
            ]
        )
    if kind is InceptionB:
        return Branches(
            [
                chain(b.branch3x3),
                chain(b.branch3x3dbl_1, b.branch3x3dbl_2, b.branch3x3dbl_3),
                MaxPooled(stride=2, padding=0),
            ]
        )
    if kind is FIDInceptionC:
        return Branches(
            [
                chain(b.branch1x1),
                chain(b.branch7x7_1, b.branch7x7_2, b.branch7x7_3),
                chain(
                    b.branch7x7dbl_1, b.branch7x7dbl_2, b.branch7x7dbl_3, b.branch7x7dbl_4, b.branch7x7dbl_5
                ),
                PooledProjection(b.branch_pool),
            ]
        )
    if kind is InceptionD:
        return Branches(
            [
                chain(b.branch3x3_1, b.branch3x3_2),
                chain(b.branch7x7x3_1, b.branch7x7x3_2, b.branch7x7x3_3, b.branch7x7x3_4),
                MaxPooled(stride=2, padding=0),
            ]
        )
    if kind in (FIDInceptionE_1, FIDInceptionE_2):
        pool: nn.Module = (
            PooledProjection(b.branch_pool)
            if kind is FIDInceptionE_1
            else MaxPooled(stride=1, padding=1, projection=ConvRelu(b.branch_pool))
        )
        return Branches(
            [
                chain(b.branch1x1),
                Fork(chain(b.branch3x3_1), ConvRelu(b.branch3x3_2a), ConvRelu(b.branch3x3_2b)),
                Fork(
                    chain(b.branch3x3dbl_1, b.branch3x3dbl_2),
                    ConvRelu(b.branch3x3dbl_3a),
                    ConvRelu(b.branch3x3dbl_3b),
                ),
                pool,
            ]
        )
    if isinstance(block, BasicConv2d):
        return ConvRelu(block)
    if isinstance(block, nn.Sequential):
        return nn.Sequential(*(rebuild_block(child) for child in block))
    if any(isinstance(m, BasicConv2d) for m in block.modules()):
        raise ValueError(f"no fast form of pytorch-fid's {type(block).__name__}: its version changed?")
    return block
