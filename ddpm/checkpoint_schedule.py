"""Which training steps keep a checkpoint (a file the Epochs tab, TensorBoard and FID can use).

By default every `checkpoint_every` epochs plus the final step, as the report keeps them over 100
epochs. A run that `max_steps` cuts short of its epochs would keep one or two of those (a 200-step
digits run: epoch 10 and the end), so the run's figures show a single grid; such a run keeps about
TARGET_KEPT checkpoints evenly spaced over the steps it actually runs instead, unless its epoch
schedule already gives MIN_KEPT or more. The schedule depends only on the config and the data set's
size, so a resumed run keeps the same steps (a kept checkpoint changes nothing that training reads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MIN_KEPT = 5  # fewer kept points than this over a cut run and it is spaced by steps instead
TARGET_KEPT = 8


@dataclass(frozen=True)
class KeepSchedule:
    total_steps: int
    steps_per_epoch: int
    every_epochs: int
    every_steps: int | None = None  # set when max_steps cut the run and the epochs would keep too few

    def keeps(self, step: int) -> bool:
        if step == self.total_steps:
            return True
        if self.every_steps is not None:
            return step % self.every_steps == 0
        return step % self.steps_per_epoch == 0 and (step // self.steps_per_epoch) % self.every_epochs == 0

    def kept_steps(self) -> list[int]:
        return [step for step in range(1, self.total_steps + 1) if self.keeps(step)]

    def record(self) -> dict[str, Any]:
        """run.json's account of it: the spacing in steps that actually applies."""
        every = self.every_steps or self.every_epochs * self.steps_per_epoch
        return {
            "checkpoint_every_steps": every,
            "checkpoints_spaced_by": "steps" if self.every_steps else "epochs",
        }


def keep_schedule(
    total_steps: int, steps_per_epoch: int, every_epochs: int, cut_by_max_steps: bool
) -> KeepSchedule:
    by_epochs = KeepSchedule(total_steps, steps_per_epoch, every_epochs)
    epoch_keeps = total_steps // (steps_per_epoch * every_epochs)
    final_extra = (
        0 if by_epochs.keeps(total_steps) and total_steps % (steps_per_epoch * every_epochs) == 0 else 1
    )
    if not cut_by_max_steps or epoch_keeps + final_extra >= MIN_KEPT:
        return by_epochs
    return KeepSchedule(
        total_steps, steps_per_epoch, every_epochs, max(1, math.ceil(total_steps / TARGET_KEPT))
    )


def effective_epochs(total_steps: int, steps_per_epoch: int) -> float:
    """The epochs a run of total_steps covers (what it trains, whatever `epochs` asked), to 2 decimals."""
    return round(total_steps / steps_per_epoch, 2)
