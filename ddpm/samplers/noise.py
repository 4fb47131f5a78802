"""What every sampler shares: the eps-predictor's type, progress callbacks, and per-image noise streams.

All randomness comes from `ImageNoise`: one CPU torch.Generator per image, seeded from (seed, index).
So image i of a seed starts from the same Gaussian noise (and gets the same per-step noise) whatever
the arch, the device, n, the batch size, the sampler, or which other requests it is batched with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ddpm.errors import InvalidOption
from ddpm.seeding import STREAM_IMAGE_NOISE, derive_seed

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Progress = Callable[[int, int], None]  # (network calls done, total calls); may raise to abort


class ImageNoise:
    """Per-image CPU noise streams for images [first, first + n) of `seed`."""

    def __init__(self, seed: int, n: int, first: int = 0) -> None:
        if n <= 0:
            raise InvalidOption(f"n must be >= 1, got {n}")
        self.generators = [
            torch.Generator().manual_seed(derive_seed(seed, STREAM_IMAGE_NOISE, first + i)) for i in range(n)
        ]

    @classmethod
    def concat(cls, parts: Sequence[ImageNoise]) -> ImageNoise:
        """One batch made of several independent requests; each keeps its own streams."""
        merged = cls.__new__(cls)
        merged.generators = [g for part in parts for g in part.generators]
        return merged

    def __len__(self) -> int:
        return len(self.generators)

    def draw(self, image_shape: Sequence[int]) -> torch.Tensor:
        out = torch.empty((len(self.generators), *image_shape))
        for row, generator in zip(out, self.generators, strict=True):
            torch.randn(tuple(image_shape), generator=generator, out=row)
        return out


def timestep_batch(t: int | float, n: int, device: torch.device) -> torch.Tensor:
    """The network's t for every image: int64 for the schedule's own steps, float32 between them."""
    dtype = torch.long if isinstance(t, int) else torch.float32
    return torch.full((n,), t, dtype=dtype, device=device)
