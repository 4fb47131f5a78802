"""An end-to-end experiment: DDIM-50 against DDPM-1000 wall time through the sampling engine."""

from __future__ import annotations

import time
from typing import Any

import torch

from ddpm.bench.measure import sync_device
from ddpm.fastpath import FastPath


def sampler_ratio(
    device: torch.device, fast: FastPath, width: float = 0.25, batch: int = 16, arch: str = "baseline"
) -> dict[str, float]:
    """Wall time of generate_images with DDPM-1000 and with DDIM-50 (network, noise, update, clamps).

    Run at a reduced width so DDPM-1000 takes minutes, not an hour, on CPU; the ratio moves towards
    50/1000 as the network's share of a step grows.
    """
    import models
    from ddpm.sampling import generate_images

    torch.manual_seed(0)
    model = models.build_model(arch, width=width).to(device)
    timings = {}
    for sampler, steps in (("ddim", 50), ("ddpm", None)):
        start = time.perf_counter()
        generate_images(model, batch, seed=0, sampler=sampler, steps=steps, device=device, fast=fast)
        sync_device(device)
        timings[sampler] = time.perf_counter() - start
    return {
        "arch": arch,
        "width": width,
        "batch": batch,
        "ddim50_s": timings["ddim"],
        "ddpm1000_s": timings["ddpm"],
        "ratio": timings["ddim"] / timings["ddpm"],
    }


def format_sampler_ratio(result: dict[str, Any]) -> str:
    return (
        f"{result['arch']} width {result['width']}, {result['batch']} images: DDIM-50 "
        f"{result['ddim50_s']:.1f} s, DDPM-1000 {result['ddpm1000_s']:.1f} s, ratio {result['ratio']:.4f} "
        f"(50/1000 = 0.05)"
    )
