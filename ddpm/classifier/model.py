"""Classifier networks: our small ResNet, torchvision architectures, and the preprocessing wrapper.

Every classifier is a `ClassifierNet`: uint8 images (N, C, H, W) in, logits out. It scales pixels to
[0, 1], resizes them when the network was trained at another size (imported ImageNet-style networks),
normalises by the recorded mean and std, then runs the network. Our ResNets use mean = std = 0.5, i.e.
the [-1, 1] range the diffusion models are trained in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddpm.classifier.config import ResNetSpec
from ddpm.errors import InvalidOption

STEMS = ("imagenet", "cifar")  # torchvision's 7x7 stride-2 first conv, or the CIFAR 3x3 stride-1 one


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and a shortcut (a 1x1 conv where the shape changes)."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride, bias=False), nn.BatchNorm2d(channels_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A CIFAR-style ResNet: 3x3 stem, stages at (w, 2w, 4w) (the last two at half resolution each),
    global average pooling, linear. With w=32 and 2 blocks per stage it has about 0.7M parameters."""

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        widths = (spec.width, 2 * spec.width, 4 * spec.width)
        self.stem = nn.Sequential(
            nn.Conv2d(spec.in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        channels = widths[0]
        for stage, width in enumerate(widths):
            for index in range(spec.blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, spec.num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.blocks(self.stem(x))
        return self.head(features.mean(dim=(2, 3)))


def torchvision_archs() -> list[str]:
    """torchvision's classification architectures (resnet18, densenet121, ...)."""
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_torchvision(arch: str, num_classes: int, stem: str = "imagenet") -> nn.Module:
    """torchvision's `arch` with random weights and `num_classes` outputs; the CIFAR stem swaps the first
    convolution for a 3x3 stride-1 one (how CIFAR-10 ports of ResNet and DenseNet, such as the report's
    DenseNet-121 [20], adapt them to 32x32 images)."""
    import torchvision.models

    valid = torchvision_archs()
    if arch not in valid:
        raise InvalidOption(f"unknown torchvision architecture {arch!r}; valid: {', '.join(valid)}")
    if stem not in STEMS:
        raise InvalidOption(f"stem {stem!r} is not valid; choose one of {list(STEMS)}")
    try:
        network = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    except (TypeError, ValueError) as err:
        raise InvalidOption(f"torchvision cannot build {arch} with {num_classes} classes: {err}") from err
    if stem == "cifar":
        owner, attribute = first_conv(network, arch)
        old = getattr(owner, attribute)
        setattr(owner, attribute, nn.Conv2d(old.in_channels, old.out_channels, 3, 1, 1, bias=False))
    return network


def first_conv(network: nn.Module, arch: str) -> tuple[nn.Module, str]:
    """(module, attribute) of the stem convolution of a torchvision ResNet or DenseNet."""
    if isinstance(getattr(network, "conv1", None), nn.Conv2d):  # resnet*, resnext*, wide_resnet*
        return network, "conv1"
    features = getattr(network, "features", None)
    if features is not None and isinstance(getattr(features, "conv0", None), nn.Conv2d):  # densenet*
        return features, "conv0"
    raise InvalidOption(f"the cifar stem applies to torchvision's resnet* and densenet* families, not {arch}")


class ClassifierNet(nn.Module):
    """uint8 images in, logits out: scale to [0, 1], resize to input_size (if set), normalise, classify."""

    def __init__(
        self,
        network: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.input_size = input_size
        # Not in the state dict: the preprocessing is recorded as metadata beside the weights.
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32)[None, :, None, None], False
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32)[None, :, None, None], False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if self.input_size is not None and x.shape[-1] != self.input_size:
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
            )
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(self.preprocess(images))


MODEL_RANGE = (0.5, 0.5, 0.5)  # mean = std = 0.5: [0, 1] -> [-1, 1], the diffusion models' range


def build_resnet_classifier(spec: ResNetSpec) -> ClassifierNet:
    return ClassifierNet(SmallResNet(spec), MODEL_RANGE[: spec.in_channels], MODEL_RANGE[: spec.in_channels])
