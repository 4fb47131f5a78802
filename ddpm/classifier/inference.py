"""Running a classifier over images: class probabilities, batch by batch, independent of the batching."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddpm.fastpath import BATCH_MULTIPLE

DEFAULT_BATCH = 256


@torch.inference_mode()
def class_probabilities(
    net: torch.nn.Module,
    images: torch.Tensor,
    batch_size: int = DEFAULT_BATCH,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Softmax probabilities (N, K), float64 on the CPU, of uint8 images (N, C, H, W).

    Each batch is padded with zero images to a multiple of BATCH_MULTIPLE, as the sampling path does
    (ddpm/fastpath.py says why): image i's probabilities are then the same bits whatever N, the batch
    size or its position, so a smaller N's analysis is a prefix of a larger one's.
    """
    net = net.eval()
    total = images.shape[0]
    out = []
    for start in range(0, total, batch_size):
        batch = images[start : start + batch_size].to(device)
        rows = batch.shape[0]
        padding = -rows % BATCH_MULTIPLE
        if padding:
            batch = torch.cat([batch, batch.new_zeros((padding, *batch.shape[1:]))])
        logits = net(batch)[:rows].float().cpu()
        out.append(torch.softmax(logits.double(), dim=1))
        if progress is not None:
            progress(min(start + rows, total), total)
    return torch.cat(out) if out else torch.empty(0, 0, dtype=torch.float64)


def accuracy(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probabilities.argmax(dim=1) == labels.cpu()).double().mean())
