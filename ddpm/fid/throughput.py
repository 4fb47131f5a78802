"""How fast each phase of an FID evaluation ran: images/s and the fraction of the machine's matrix rate.

The work of each phase is counted once, not timed: torch's flop counter on the networks at batch 1
(the UNet's forward times the sampler's network calls per image; pytorch-fid's Inception, 11.4 GFLOP
per image at 299x299 whatever the input size, since the resize comes first), and textbook counts for
the linear algebra (below). A phase's fraction is (its FLOP/s) / (the matmul rate measured in the same
process: `ddpm.bench.measure.MatmulYardstick`), as `ddpm bench` reports the networks. `ddpm bench --fid`
and every FID job's record (`throughput`) use these functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ddpm.fid.options import FEATURE_DIMS

# np.cov of N rows of d features: centring, then X^T X, 2 N d^2 FLOP (the product dominates).
# pytorch-fid's distance: the product S1 S2 (2 d^3), scipy's Schur decomposition of it (about 25 d^3,
# Golub & Van Loan's count for the real Schur form) and the triangular square root (d^3 / 3); the
# traces and the check of its result are O(d^2) and left out.
SQRTM_FLOP_PER_DIM3 = 2 + 25 + 1 / 3

_counted: dict[str, float] = {}  # network work per image, counted once per process


@dataclass
class PhaseWork:
    """One phase: images it handled, seconds it took, GFLOP per image (None: not counted)."""

    images: int
    seconds: float
    gflop_per_image: float | None

    def as_record(self, matmul_flops_per_s: float | None) -> dict[str, Any]:
        rate = self.images / self.seconds if self.seconds > 0 else None
        fraction = None
        if rate is not None and self.gflop_per_image is not None and matmul_flops_per_s:
            fraction = rate * self.gflop_per_image * 1e9 / matmul_flops_per_s
        return {
            **asdict(self),
            "images_per_s": None if rate is None else round(rate, 4),
            "fraction": None if fraction is None else round(fraction, 4),
        }


def inception_gflop(model: torch.nn.Module) -> float:
    """GFLOP of one image through pytorch-fid's Inception (counted once per process)."""
    if "inception" not in _counted:
        device = next(model.parameters()).device
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(torch.zeros(1, 3, 32, 32, device=device))
        _counted["inception"] = counter.get_total_flops() / 1e9
    return _counted["inception"]


def sampling_gflop(meta: dict[str, Any], nfe: int) -> float | None:
    """GFLOP of sampling one image: the UNet's forward (from the checkpoint's own config, counted on
    CPU with attention on its math backend, as `ddpm bench` counts it) times the network calls."""
    from ddpm.bench.measure import forward_flops
    from models import build_from_config

    config = meta.get("model_config")
    if not config:
        return None
    key = f"unet:{sorted(config.items())!r}:{meta.get('train_config', {}).get('image_size', 32)}"
    if key not in _counted:
        model = build_from_config(config)
        size = int(meta.get("train_config", {}).get("image_size", 32))
        _counted[key] = forward_flops(model, (model.config.in_channels, size, size)) / 1e9
    return _counted[key] * nfe


def statistics_gflop(dims: int = FEATURE_DIMS) -> float:
    """GFLOP per feature row of the covariance."""
    return 2 * dims * dims / 1e9


def distance_gflop(rows: int, dims: int = FEATURE_DIMS) -> float:
    """GFLOP per generated image of one pytorch-fid distance (one d x d square root for `rows` images)."""
    return SQRTM_FLOP_PER_DIM3 * dims**3 / rows / 1e9


def phase_records(phases: dict[str, PhaseWork], matmul_flops_per_s: float | None) -> dict[str, Any]:
    """The record's `throughput`: the rate it was measured against, then one entry per phase."""
    return {
        "matmul_gflops": None if not matmul_flops_per_s else round(matmul_flops_per_s / 1e9, 2),
        "phases": {name: work.as_record(matmul_flops_per_s) for name, work in phases.items()},
    }


def matmul_rate(device: torch.device) -> float:
    """FLOP/s of the bench's yardstick product on this device, now (about 3 s on two CPU cores)."""
    from ddpm.bench.measure import MatmulYardstick

    yardstick = MatmulYardstick(device)
    return max(yardstick.rates[yardstick.kernel_name], yardstick.measure())
