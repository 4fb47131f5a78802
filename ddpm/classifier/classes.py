"""Class names and counts of the built-in data sets that a host may not hold (torch-free).

Used when a classifier is imported for a data set whose files are absent here. CIFAR-10's training
batches hold exactly 5000 images of each class (https://www.cs.toronto.edu/~kriz/cifar.html), in
torchvision's `CIFAR10.classes` order (the order of the archive's batches.meta).
"""

from __future__ import annotations

KNOWN_CLASSES: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "cifar10": (
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        (5000,) * 10,
    ),
}
