"""The picture of an analysis: per class, the images the classifier is most sure of, one row per class."""

from __future__ import annotations

from typing import Any

import torch

from ddpm.sampling import grid_png

EMPTY_CELL = 128  # mid grey marks a cell with no image (a class with fewer predictions than the row holds)


def confident_rows(probabilities: torch.Tensor, per_class: int) -> list[list[dict[str, Any]]]:
    """Per class, up to per_class (index, confidence) of the images predicted as it, most confident
    first; ties go to the lower index, so the choice is deterministic."""
    confidence, predicted = probabilities.max(dim=1)
    rows = []
    for c in range(probabilities.shape[1]):
        members = torch.nonzero(predicted == c).flatten().tolist()
        members.sort(key=lambda i: (-float(confidence[i]), i))
        rows.append([{"index": i, "confidence": float(confidence[i])} for i in members[:per_class]])
    return rows


def rows_png(images: torch.Tensor, rows: list[list[dict[str, Any]]], per_class: int) -> bytes:
    """A PNG grid with one row per class of the chosen images (uint8 (N, C, H, W)), grey where empty."""
    _, channels, height, width = images.shape
    cells = torch.full((len(rows) * per_class, channels, height, width), EMPTY_CELL, dtype=torch.uint8)
    for r, row in enumerate(rows):
        for column, entry in enumerate(row):
            cells[r * per_class + column] = images[entry["index"]]
    return grid_png(cells, nrow=per_class)
