"""pytorch-fid's InceptionV3 run at the machine's rate, with its features kept within 1e-5 of the plain
network's (tests/ddpm/fid/test_features.py checks 1e-5 per row and FID within 1e-6).

What changes against calling pytorch-fid's module as it is, and why:
- **Batch norm folded into each convolution** (eval mode, `fuse_conv_bn_eval`): every BasicConv2d is
  conv -> bn -> relu; folded, oneDNN/cuDNN run conv + bias and the separate pass of batch norm over
  every activation disappears. Rounding moves by about 1e-6 relative.
- **Channels-last** (NHWC): oneDNN's native layout, so no reorder around each of the 94 convolutions
  (on CUDA, cuDNN's tensor-core layout; Inception has no GroupNorm, which is what keeps the UNets NCHW).
- **The resize outside the network**, in NCHW exactly as pytorch-fid does it (bilinear to 299, then
  2x - 1), and only its output converted to channels-last: the resize is about 1% of a batch's time,
  and resizing in NHWC would change its bits.
- **Blocks rebuilt as branches of fused convolutions** (ddpm/fid/inception_blocks.py): relu applied by
  oneDNN inside each convolution, the pool branches' average pool moved after their 1x1 projection,
  one concatenation per block.
- **IEEE fp32 on CUDA**: the engine turns TF32 on for the UNets; TF32's 10-bit products would move the
  features by about 1e-3, far outside pytorch-fid's numbers.
The call contract is pytorch-fid's (input in [0, 1], NCHW; returns [pool3 (N, 2048, 1, 1)]), so
pytorch-fid's own `get_activations` can drive it too.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pytorch_fid.inception import InceptionV3
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ddpm.fastpath import fp32_precision
from ddpm.fid.inception_blocks import rebuild_block

INCEPTION_SIZE = 299  # pytorch-fid resizes every input to 299 x 299


def fold_batch_norms(module: nn.Module) -> int:
    """Replace each (conv, bn) pair of torchvision's BasicConv2d by one convolution with a bias, in place
    (eval-mode statistics); returns how many were folded."""
    folded = 0
    for child in module.children():
        conv, bn = getattr(child, "conv", None), getattr(child, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            child.conv = fuse_conv_bn_eval(conv, bn)
            child.bn = nn.Identity()
            folded += 1
        else:
            folded += fold_batch_norms(child)
    return folded


class FastInception(nn.Module):
    """pytorch-fid's FID Inception (pool3 only) with batch norms folded, blocks rebuilt, run channels-last."""

    def __init__(self, plain: InceptionV3) -> None:
        super().__init__()
        if not (plain.resize_input and plain.normalize_input):
            raise ValueError("expected pytorch-fid's FID Inception (resize and normalise on)")
        network = copy.deepcopy(plain).eval()
        self.folded = fold_batch_norms(network)
        network.resize_input = network.normalize_input = False  # done here, in NCHW (see the docstring)
        network.blocks = nn.ModuleList(rebuild_block(block) for block in network.blocks)
        self.network = network.to(memory_format=torch.channels_last)

    def forward(self, inp: torch.Tensor) -> list[torch.Tensor]:
        x = F.interpolate(inp, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        # 2x - 1 written straight into channels-last: two passes over the 299x299 batch instead of three.
        scaled = torch.empty_like(x, memory_format=torch.channels_last)
        x = torch.mul(x, 2, out=scaled).sub_(1)
        with fp32_precision(False):
            return [pool.contiguous() for pool in self.network(x)]
