"""Named training recipes: TrainConfig keyword arguments that `ddpm train --preset`, POST /train's
`preset` and the page's Train form share. Torch-free. Explicit options override a preset's.

`digits-quick` is the first run a newcomer makes: 2,100 steps, about 7 minutes on 2 quiet CPU cores.
docs/quickstart.md has its measurement: grey digits, of which the digits classifier is sure of ~60%.
"""

from __future__ import annotations

from typing import Any

from ddpm.errors import InvalidOption

TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "digits-quick": {
        "arch": "baseline",
        "dataset": "digits",
        "image_size": 16,  # the 8x8 digits upscaled: every halving of the UNet still has pixels to work on
        "width": 0.25,
        # Batch 128 costs little more per step than 64 on a CPU at this size and halves the gradient noise.
        "batch_size": 128,
        "lr": 1e-3,  # short runs want a large stable rate; 2e-4 (the report's) is for 100 CIFAR-10 epochs
        "ema": True,
        # With the warm-up ramp (ema_warmup, the default) an average over ~1,000 steps is usable early;
        # without it 0.999 would still hold 12% of the random init at the end.
        "ema_decay": 0.999,
        "epochs": 140,  # 2,100 steps of 128 of the 1,797 digits (15 a pass)
        "checkpoint_every": 20,  # 7 grids across the run for the Epochs tab and TensorBoard
    },
}
DEFAULT_PRESET = "digits-quick"


def preset_names() -> list[str]:
    return list(TRAIN_PRESETS)


def with_preset(name: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """The preset's options with `given` (the options set explicitly) on top; `given` alone for None."""
    if name is None:
        return dict(given)
    if name not in TRAIN_PRESETS:
        raise InvalidOption(f"unknown preset {name!r}; valid: {', '.join(preset_names())}")
    return {**TRAIN_PRESETS[name], **given}
