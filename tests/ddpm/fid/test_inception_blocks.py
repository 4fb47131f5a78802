"""The fast path's rebuilt blocks compute pytorch-fid's function: each rewrite against the form it replaces."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.inception import BasicConv2d

from ddpm.fid.inception import fold_batch_norms
from ddpm.fid.inception_blocks import ConvRelu, PooledProjection, rebuild_block


def folded_conv(cin: int, cout: int, **kwargs: object) -> BasicConv2d:
    """A BasicConv2d with random weights and batch-norm statistics, folded as the fast path folds it."""
    torch.manual_seed(cin * 1000 + cout)
    holder = nn.Sequential(BasicConv2d(cin, cout, **kwargs)).eval()
    basic = holder[0]
    with torch.no_grad():
        basic.bn.running_mean.normal_()
        basic.bn.running_var.uniform_(0.5, 2.0)
        basic.bn.weight.normal_()
        basic.bn.bias.normal_()
    assert fold_batch_norms(holder) == 1
    return basic


def channels_last(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=torch.channels_last
    )


@pytest.mark.parametrize("kernel, padding", [(1, 0), ((1, 7), (0, 3)), ((3, 1), (1, 0)), (3, 1)])
def test_conv_relu_equals_conv_then_relu(kernel: object, padding: object) -> None:
    basic = folded_conv(16, 8, kernel_size=kernel, padding=padding).to(memory_format=torch.channels_last)
    x = channels_last(2, 16, 9, 9)
    with torch.inference_mode():
        fused = ConvRelu(basic)(x)  # oneDNN's fused op on the CPU
        expected = F.relu(basic.conv(x))
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-6)
    # With autograd on, the plain conv + relu runs (the fused op has no backward) and gives the same values.
    with torch.enable_grad():
        assert torch.equal(ConvRelu(basic)(x).detach(), F.relu(basic.conv(x)).detach())


def test_pool_after_projection_equals_pytorch_fids_pool_then_projection() -> None:
    basic = folded_conv(64, 12, kernel_size=1).to(memory_format=torch.channels_last)
    x = channels_last(3, 64, 7, 7)
    with torch.inference_mode():
        (ours,) = PooledProjection(basic)(x)
        theirs = basic(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
    # Border pixels average 4 or 6 neighbours, not 9: count_include_pad=False is what makes the bias commute.
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert (theirs > 0).any() and (theirs == 0).any()  # the relu acted on both sides


def test_pool_after_projection_needs_a_1x1_projection() -> None:
    with pytest.raises(ValueError, match="1x1"):
        PooledProjection(folded_conv(4, 4, kernel_size=3, padding=1))


def test_unknown_blocks_with_convolutions_are_refused() -> None:
    class NewBlock(nn.Module):  # what a future pytorch-fid might add
        def __init__(self) -> None:
            super().__init__()
            self.branch = folded_conv(4, 4, kernel_size=1)

    with pytest.raises(ValueError, match="no fast form of pytorch-fid's NewBlock"):
        rebuild_block(NewBlock())
    pool = nn.AdaptiveAvgPool2d(1)
    assert rebuild_block(pool) is pool  # modules without convolutions are kept as they are


def test_fast_path_counts_the_plain_networks_work(inception: nn.Module) -> None:
    from ddpm.fid.features import load_inception

    counts = []
    for model in (inception, load_inception("cpu", fast=False)):
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(torch.zeros(1, 3, 32, 32))
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] and counts[0] / 1e9 == pytest.approx(11.42, rel=1e-3)
