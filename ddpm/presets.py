"""Named training recipes: TrainConfig keyword arguments that `ddpm train --preset`, POST /train's
`preset` and the page's Train form share. Torch-free. Explicit options override a preset's.

`digits-quick` is the first run a newcomer makes: about 7 minutes of one CPU core. docs/quickstart.md
has its measurement: grey strokes, many digit-like, but the digits classifier is sure of only ~21%.
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
        "batch_size": 64,
        "lr": 2e-3,  # short runs want the largest rate that stays stable; 2e-4 (the report's) is far slower
        "ema": True,
        "ema_decay": 0.99,  # averages the last ~100 steps: 0.9999 would still be mostly the random init
        "epochs": 36,  # 1,044 steps of 64 of the 1,797 digits (29 a pass)
        "checkpoint_every": 6,  # 6 grids across the run for the Epochs tab and TensorBoard
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
