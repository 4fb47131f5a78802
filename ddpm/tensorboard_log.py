"""TensorBoard logs of a training run, through the trainer's hooks: `tensorboard --logdir DATA_DIR/runs`.

Into runs/<run_id>/tensorboard/: the loss, learning rate and epoch at every step, and at every kept
checkpoint a grid of images sampled from it with fixed noise (the same images for every checkpoint and
every arch, so the grids show how one run's samples form, as in the report's epoch comparisons).

    with TensorBoardLog(data_dir, TensorBoardOptions()) as tensorboard:
        train(config, data_dir, hooks=tensorboard.attach(TrainHooks()))

A resumed run appends: the writer is opened at the first step this process trains with `purge_step`
at that step, so TensorBoard hides whatever a crashed process logged past the checkpoint it resumed
from, and each step is shown once.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddpm.device import resolve_device
from ddpm.errors import InvalidOption
from ddpm.runs import RunDir
from ddpm.training import TrainHooks, TrainProgress

log = logging.getLogger("ddpm")

TENSORBOARD_DIR = "tensorboard"
FLUSH_S = 15  # events reach the disk this often (TensorBoard re-reads its logdir every few seconds)
MAX_GRID_SAMPLES = 256


@dataclass(frozen=True)
class TensorBoardOptions:
    """samples=0 logs scalars only. The grid is drawn with DDIM (deterministic at eta 0)."""

    enabled: bool = True
    samples: int = 16
    sample_steps: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.samples <= MAX_GRID_SAMPLES:
            raise InvalidOption(f"tensorboard samples must be in [0, {MAX_GRID_SAMPLES}], got {self.samples}")
        if not 1 <= self.sample_steps <= 1000:
            raise InvalidOption(f"tensorboard sample steps must be in [1, 1000], got {self.sample_steps}")


def tensorboard_dir(data_dir: Path, run_id: str) -> Path:
    return RunDir.of(data_dir, run_id).path / TENSORBOARD_DIR


class TensorBoardLog:
    """Training hooks that write one run's TensorBoard events; close it (or use `with`) when training ends."""

    def __init__(self, data_dir: Path, options: TensorBoardOptions, device: str = "auto") -> None:
        self.data_dir = data_dir
        self.options = options
        self.device = device
        self._writer: Any = None  # torch.utils.tensorboard.SummaryWriter, opened at the first step
        self._run_id: str | None = None

    def attach(self, hooks: TrainHooks) -> TrainHooks:
        if self.options.enabled:
            hooks.on_progress.append(self.on_progress)
            hooks.on_checkpoint.append(self.on_checkpoint)
        return hooks

    def on_progress(self, progress: TrainProgress) -> None:
        writer = self._open(progress.run_id, progress.step)
        writer.add_scalar("train/loss", progress.loss, progress.step)
        writer.add_scalar("train/lr", progress.lr, progress.step)
        writer.add_scalar("train/epoch", progress.epoch, progress.step)

    def on_checkpoint(self, entry: dict[str, Any]) -> None:
        if self._writer is None or self._run_id is None or not self.options.samples:
            return
        step = int(entry["step"])
        path = RunDir.of(self.data_dir, self._run_id).checkpoint_path(step)
        try:
            grid = self._sample_grid(path)
        except Exception as err:  # a grid is a view of the run, never a reason to stop training it
            log.warning("run %s: no TensorBoard samples at step %d (%s)", self._run_id, step, err)
            return
        self._writer.add_image("samples", grid, step, dataformats="CHW")
        self._writer.flush()  # a checkpoint is where a user looks: have it on disk now

    def _open(self, run_id: str, step: int) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._run_id = run_id
            # Steps >= purge_step logged earlier (by a process that crashed past its last checkpoint)
            # are hidden: this process logs them again.
            self._writer = SummaryWriter(
                str(tensorboard_dir(self.data_dir, run_id)), purge_step=step, flush_secs=FLUSH_S
            )
        return self._writer

    def _sample_grid(self, checkpoint: Path) -> torch.Tensor:
        from ddpm.sampling import sample_checkpoint

        options = self.options
        # Sampling must not move the global generators the trainer saves in its checkpoints (dropout
        # draws from them): an interrupted and resumed run must still match an uninterrupted one.
        device = resolve_device(self.device)
        cuda = (
            [device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else []
        )
        with torch.random.fork_rng(devices=cuda):
            images, _ = sample_checkpoint(
                checkpoint,
                options.samples,
                options.seed,
                sampler="ddim",
                steps=options.sample_steps,
                device=self.device,
                batch_size=options.samples,
            )
        return _grid(images)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _grid(images: torch.Tensor, padding: int = 2) -> torch.Tensor:
    """uint8 (N, C, H, W) as one square-ish uint8 (C, H', W') grid (as torchvision's make_grid)."""
    count, channels, height, width = images.shape
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = torch.zeros(
        (channels, rows * (height + padding) + padding, columns * (width + padding) + padding),
        dtype=torch.uint8,
    )
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        grid[:, top : top + height, left : left + width] = images[index]
    return grid
