"""Every variant at tiny width: shapes, gradients, learning; the default sizes against the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import models
from models.config import ConfigError, UNetConfig
from tests.conftest import TINY_WIDTH

ARCHS = models.arch_names()


def _batch(n: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, size, size, generator=generator), torch.randint(
        0, 1000, (n,), generator=generator
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shape_equals_input_shape(arch: str) -> None:
    net = models.build_model(arch, width=TINY_WIDTH)
    x, t = _batch()
    assert net(x, t).shape == x.shape


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_reach_every_parameter(arch: str) -> None:
    """Checked after three optimizer steps: ddpm_original zero-initialises its output convs (as Ho et
    al.), so at step 0 only conv_out gets a gradient, then the residual branches' last convs, then the rest."""
    torch.manual_seed(0)
    net = models.build_model(arch, width=TINY_WIDTH)
    x, t = _batch()
    target = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        (net(x, t) - target).square().mean().backward()
        optimizer.step()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"{arch}: no gradient reaches {missing}"


@pytest.mark.parametrize("arch", ARCHS)
def test_a_few_steps_on_one_batch_drive_the_loss_down(arch: str) -> None:
    """The real objective (eps-MSE on a fixed noisy batch): 15 AdamW steps cut the loss by a quarter."""
    from ddpm.schedule import linear_schedule

    torch.manual_seed(0)
    net = models.build_model(arch, width=TINY_WIDTH)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 32, 32, generator=generator) * 2 - 1
    t = torch.randint(0, 1000, (4,), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    schedule = linear_schedule()
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        loss = schedule.loss(net, x0, t, eps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0], f"{arch}: loss went {losses[0]:.4f} -> {losses[-1]:.4f}"


@pytest.mark.parametrize("arch", ARCHS)
def test_default_size_parameter_count_matches_the_registry(arch: str) -> None:
    net = models.build_model(arch)
    assert sum(p.numel() for p in net.parameters()) == models.get_arch(arch).params


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.named_parameters()}


def test_baseline_is_the_spec_network_channel_for_channel() -> None:
    """The stages of variants.md: 64 @32 -> 128 @16 -> 256 @8 -> 256 @4, bottleneck 256-512-512-256,
    up 512->128 (mid 256), 256->64 (mid 128), 128->64 (mid 64), out 64->3; SA after all six stages."""
    net = models.build_model("baseline")
    shapes = _shapes(net)
    expected = {
        "stem.body.0.weight": (64, 3, 3, 3),
        "stem.body.3.weight": (64, 64, 3, 3),
        # down1: residual DoubleConv(64, 64) then DoubleConv(64, 128)
        "downs.0.body.chain.0.body.0.weight": (64, 64, 3, 3),
        "downs.0.body.chain.1.body.0.weight": (128, 64, 3, 3),
        "downs.0.body.chain.1.body.3.weight": (128, 128, 3, 3),
        "downs.0.time_proj.weight": (128, 256),
        "downs.0.attention.qkv.weight": (384, 128),
        "downs.1.body.chain.1.body.3.weight": (256, 256, 3, 3),
        "downs.2.body.chain.0.body.0.weight": (256, 256, 3, 3),
        "downs.2.body.chain.1.body.3.weight": (256, 256, 3, 3),
        "bottleneck.0.body.0.weight": (512, 256, 3, 3),
        "bottleneck.1.body.0.weight": (512, 512, 3, 3),
        "bottleneck.2.body.0.weight": (256, 512, 3, 3),
        # up1: cat(x3, up) = 512 -> DoubleConv(512, 512, res) -> DoubleConv(512, 128, mid 256)
        "ups.0.body.chain.0.body.0.weight": (512, 512, 3, 3),
        "ups.0.body.chain.1.body.0.weight": (256, 512, 3, 3),
        "ups.0.body.chain.1.body.3.weight": (128, 256, 3, 3),
        "ups.0.attention.out.weight": (128, 128),
        "ups.1.body.chain.1.body.0.weight": (128, 256, 3, 3),
        "ups.1.body.chain.1.body.3.weight": (64, 128, 3, 3),
        "ups.2.body.chain.0.body.0.weight": (128, 128, 3, 3),
        "ups.2.body.chain.1.body.0.weight": (64, 128, 3, 3),
        "ups.2.body.chain.1.body.3.weight": (64, 64, 3, 3),
        "ups.2.attention.mlp.1.weight": (64, 64),
        "out.weight": (3, 64, 1, 1),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    assert sum(1 for m in net.modules() if isinstance(m, models.unet_attention_type())) == 6
    assert not any(".proj." in name for name in shapes), "the baseline has no projected residual links"


def test_variant_specific_structure() -> None:
    res_link = models.build_model("res_link")
    stages = [*res_link.downs, *res_link.ups]
    assert all(stage.body.chain[-1].residual for stage in stages)
    # projected where widths change (5 stages), identity where they match (down3: 256 -> 256)
    assert sum(1 for n in _shapes(res_link) if n.endswith("chain.1.proj.weight")) == 5
    deep = models.build_model("deep")
    assert deep.config.channels == (32, 64, 128, 256, 256) and len(deep.downs) == 4
    assert sum(1 for m in deep.modules() if isinstance(m, models.unet_attention_type())) == 8
    four = models.build_model("four_double_conv")
    assert len(four.downs[0].body.chain) == 4 and four.downs[0].body.chain[0].skip_scale == pytest.approx(
        2**-0.5
    )
    convnext = _shapes(models.build_model("convnext"))
    assert convnext["stem.weight"] == (96, 3, 1, 1)
    assert convnext["bottleneck.0.body.0.weight"] == (512, 768, 3, 3)
    assert not any("attention" in name for name in convnext)
    biggan = models.build_model("biggan")
    assert isinstance(biggan.downs[0].body.pool[-1], torch.nn.AvgPool2d)


def test_anti_aliasing_blurs_each_channel_on_its_own() -> None:
    from models.layers import Blur

    x = torch.zeros(1, 2, 5, 5)
    x[0, 0, 2, 2] = 16.0
    y = Blur()(x)
    assert torch.equal(y[0, 1], torch.zeros(5, 5)), "the blur must not mix channels"
    assert y[0, 0].sum().item() == pytest.approx(16.0)
    assert y[0, 0, 2, 2].item() == pytest.approx(4.0) and y[0, 0, 1, 1].item() == pytest.approx(1.0)
    assert not models.build_model("anti_aliasing", width=TINY_WIDTH).state_dict().keys() - set(
        models.build_model("baseline", width=TINY_WIDTH).state_dict()
    ), "the filter is a fixed buffer, not stored weights"


def test_report_names_resolve_case_insensitively() -> None:
    assert models.resolve_arch("DDPM_BigGAN") == "biggan"
    assert models.resolve_arch("ddpm_bigGAN") == "biggan"
    assert models.resolve_arch("DDPM_AdditionalResLink") == "res_link"
    assert models.resolve_arch("DDPM_4ResBlocks") == "four_double_conv"
    assert models.build_model("DDPM_ConvNeXt", width=TINY_WIDTH).config.block == "convnext"


def test_unknown_arch_names_the_valid_ones() -> None:
    with pytest.raises(models.UnknownArchError, match=r"unknown arch 'unet9'.*baseline.*DDPM_BigGAN"):
        models.build_model("unet9")


def test_unknown_arch_carries_the_unknown_part_and_a_close_one_is_suggested() -> None:
    with pytest.raises(models.UnknownArchError) as caught:
        models.resolve_arch("biggan+anti_alising")
    assert caught.value.name == "anti_alising"  # the part that is unknown, for the API's own wording
    assert models.closest_arch("anti_alising") == "anti_aliasing"
    assert models.closest_arch("DDPM_BigGun") == "biggan"  # report names count, mapped to the registry's
    assert models.closest_arch("resnet50") is None and models.closest_arch(3) is None


@pytest.mark.parametrize("width", [0, -1, float("nan"), "wide"])
def test_bad_width_is_rejected(width: object) -> None:
    with pytest.raises(ConfigError, match="width must be a number > 0"):
        models.build_model("baseline", width=width)


def test_width_and_explicit_channels() -> None:
    assert models.arch_config("baseline", width=0.5).channels == (32, 64, 128, 128)
    assert models.arch_config("baseline", width=0.5).bottleneck == (256, 256)
    net = models.build_model("pure_unet", channels=(8, 16), bottleneck=(16,))
    x, t = _batch()
    assert net(x, t).shape == x.shape and len(net.downs) == 1
    with pytest.raises(ConfigError, match="divisible by attention_heads"):
        models.build_model("baseline", channels=(6, 16))
    with pytest.raises(ConfigError, match="unknown model options"):
        models.build_model("baseline", colour="red")


def test_config_round_trips_through_a_dict() -> None:
    config = models.arch_config("four_double_conv", width=TINY_WIDTH)
    assert UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="block='transformer' is not valid"):
        UNetConfig(block="transformer")


def test_inputs_of_the_wrong_size_get_a_clear_error() -> None:
    net = models.build_model("deep", width=TINY_WIDTH)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.randn(1, 3, 24, 24), torch.tensor([3]))


def test_64px_inputs_work() -> None:
    net = models.build_model("pure_unet", width=TINY_WIDTH)
    x, t = _batch(1, 64)
    assert net(x, t).shape == x.shape


def test_importing_the_registry_does_not_import_torch() -> None:
    code = "import sys, models; models.list_archs(); models.resolve_arch('DDPM_RDN'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_readme_table_lists_every_variant_with_its_parameter_count() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for spec in models.ARCHS.values():
        assert f"| {spec.name} | {spec.report_name} | {spec.params:,} |" in readme
    # The count the introduction spells out is the table's, and it names every variant.
    words = {14: "fourteen", 15: "fifteen", 16: "sixteen"}
    intro = readme.split("```", 1)[0]
    assert f"library of {words.get(len(models.ARCHS), len(models.ARCHS))} DDPM UNet variants" in intro
    assert all(name in intro for name in models.ARCHS if name != "baseline")


def test_ddpm_original_is_ho_et_als_cifar10_network() -> None:
    net = models.build_model("ddpm_original")
    count = sum(p.numel() for p in net.parameters())
    assert abs(count - 35.7e6) / 35.7e6 < 0.01 and count == 35_746_307
    attention = [m for m in net.modules() if type(m).__name__ == "AttnBlock"]
    assert len(attention) == 2 + 3 + 1, "16x16 only: 2 down blocks, 3 up blocks, and the middle"
    groups = {m.num_groups for m in net.modules() if isinstance(m, torch.nn.GroupNorm)}
    assert groups == {32}
    assert net.config.dropout == 0.1


def test_dropout_is_active_in_training_only() -> None:
    net = models.build_model("pure_unet", width=TINY_WIDTH, dropout=0.5)
    x, t = _batch()
    with torch.no_grad():
        net.train()
        assert not torch.equal(net(x, t), net(x, t)), "dropout must draw fresh masks while training"
        net.eval()
        assert torch.equal(net(x, t), net(x, t))
    assert set(net.state_dict()) == set(models.build_model("pure_unet", width=TINY_WIDTH).state_dict())
    with pytest.raises(ConfigError, match="dropout must be in"):
        models.build_model("baseline", dropout=1.5)


def test_presets_combine_with_plus() -> None:
    assert models.resolve_arch("anti_aliasing+DDPM_BigGAN") == "anti_aliasing+biggan"
    assert models.resolve_arch("biggan anti_aliasing") == "anti_aliasing+biggan", "a URL's unencoded '+'"
    assert models.get_arch("biggan+pure_unet").config == models.get_arch("biggan_no_attention").config
    combined = models.get_arch("biggan_res_link+anti_aliasing").config
    assert combined == models.get_arch("biggan_res_link_aa").config
    net = models.build_model("res_link+anti_aliasing+four_double_conv", width=TINY_WIDTH)
    x, t = _batch()
    assert net(x, t).shape == x.shape
    assert net.config.extra_res_link and net.config.anti_alias and net.config.pre_blocks == 2
    with pytest.raises(ConfigError, match="convnext and biggan disagree on block"):
        models.resolve_arch("convnext+biggan")
    with pytest.raises(ConfigError, match="shape DoubleConv stages"):
        models.resolve_arch("biggan+res_link")
    with pytest.raises(ConfigError, match="its own network"):
        models.resolve_arch("ddpm_original+anti_aliasing")
    with pytest.raises(models.UnknownArchError, match="unknown arch 'nope'"):
        models.resolve_arch("biggan+nope")


def test_res_link_all_projects_the_stem_and_bottleneck() -> None:
    shapes = _shapes(models.build_model("biggan_res_link"))
    assert shapes["stem.proj.weight"] == (64, 3, 1, 1)
    assert shapes["bottleneck.0.proj.weight"] == (512, 256, 1, 1)
    assert "bottleneck.1.proj.weight" not in shapes, "identity where widths match"


def test_refinenet_is_ncsn_shaped_with_time_in_every_residual_unit() -> None:
    from models.ho_unet import ResBlock
    from models.refinenet import ChainedResidualPooling, RefineBlock

    net = models.build_model("refinenet", width=TINY_WIDTH)
    refine_blocks = [m for m in net.modules() if isinstance(m, RefineBlock)]
    assert len(refine_blocks) == 4 and len(refine_blocks[0].adapt) == 1 and len(refine_blocks[1].adapt) == 2
    assert sum(1 for m in net.modules() if isinstance(m, ChainedResidualPooling)) == 4
    units = [m for m in net.modules() if isinstance(m, ResBlock)]
    assert len(units) == 8 + (2 + 1) + 3 * (4 + 1) + 2, "encoder 8, refine: 2 per input + output units"
    seen: list[torch.Tensor] = []
    hooks = [unit.temb.register_forward_hook(lambda m, i, o: seen.append(o)) for unit in units]
    x, _ = _batch()
    with torch.no_grad():
        net(x, torch.tensor([10, 10]))
        first = list(seen)
        seen.clear()
        net(x, torch.tensor([900, 900]))
    for hook in hooks:
        hook.remove()
    assert len(first) == len(units) and all(not torch.equal(a, b) for a, b in zip(first, seen, strict=True))
