"""Which torch device a job runs on."""

from __future__ import annotations

import torch

from ddpm.errors import InvalidOption


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` is CUDA when torch can use it, else the CPU; anything else must be a device torch knows."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise InvalidOption(f"device {device!r} is not valid; use auto, cpu or cuda[:N]") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidOption(f"device {device!r} requested but CUDA is not available; use auto or cpu")
    return resolved
