"""TensorBoard logs of training runs: scalars per step, sample grids at kept checkpoints, resume appends."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ddpm.checkpoints import load_checkpoint
from ddpm.errors import InvalidOption
from ddpm.runs import RunDir
from ddpm.tensorboard_log import TensorBoardLog, TensorBoardOptions, tensorboard_dir
from ddpm.training import TrainConfig, TrainHooks, train
from tests.conftest import TINY_WIDTH, make_image_folder

TINY_GRID = TensorBoardOptions(samples=4, sample_steps=2)


def _config(**changes) -> TrainConfig:
    """20 images at 16x16, batch 8: 3 steps per epoch; a kept checkpoint every epoch (or, when max_steps
    cuts the run short, about eight spaced over its steps: every step of these short runs)."""
    options = dict(
        arch="pure_unet",
        dataset="folder:tiny",
        width=TINY_WIDTH,
        batch_size=8,
        image_size=16,
        checkpoint_every=1,
    )
    return TrainConfig(**{**options, **changes})


@pytest.fixture
def folder_data(data_dir: Path) -> Path:
    make_image_folder(data_dir / "datasets" / "tiny", count=20, size=20)
    return data_dir


def _train(data: Path, run_id: str, options: TensorBoardOptions = TINY_GRID, **changes) -> None:
    with TensorBoardLog(data, options, device="cpu") as tensorboard:
        train(_config(**changes), data, run_id=run_id, device="cpu", hooks=tensorboard.attach(TrainHooks()))


def _events(data: Path, run_id: str) -> EventAccumulator:
    events = EventAccumulator(str(tensorboard_dir(data, run_id)), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_scalars_every_step_and_a_grid_at_each_kept_checkpoint(folder_data: Path) -> None:
    options = dict(max_steps=4, dropout=0.2)  # dropout draws from the global generators
    _train(folder_data, "tb", **options)
    events = _events(folder_data, "tb")
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3, 4]
    logged = RunDir.of(folder_data, "tb").loss_history()
    assert [e.value for e in loss] == pytest.approx([row["loss"] for row in logged], rel=1e-5)
    assert [e.value for e in events.Scalars("train/epoch")] == [0, 0, 1, 1]
    assert events.Scalars("train/lr")[0].value == pytest.approx(2e-4)
    grids = events.Images("samples")
    # max_steps cut the 100-epoch run: its checkpoints, and so its grids, are spaced over its 4 steps
    assert [g.step for g in grids] == [1, 2, 3, 4]
    # 4 images of 16x16 on a 2x2 grid with 2-pixel padding
    assert (grids[0].width, grids[0].height) == (2 * 18 + 2, 2 * 18 + 2)

    # Sampling the grid at step 3 left step 4 exactly as training without TensorBoard trains it.
    train(_config(**options), folder_data, run_id="plain", device="cpu")
    plain = load_checkpoint(RunDir.of(folder_data, "plain").latest_path).model
    logged_weights = load_checkpoint(RunDir.of(folder_data, "tb").latest_path).model
    assert all(torch.equal(plain[k], logged_weights[k]) for k in plain)


def test_a_resumed_run_appends_and_shows_each_step_once(folder_data: Path) -> None:
    scalars_only = TensorBoardOptions(samples=0)
    _train(folder_data, "tb-resume", scalars_only, max_steps=4)
    # A crash after step 4 but before its checkpoint: resume continues from the kept one at step 3.
    run = RunDir.of(folder_data, "tb-resume")
    run.checkpoint_path(4).unlink()
    run.latest_path.write_bytes(run.checkpoint_path(3).read_bytes())
    _train(folder_data, "tb-resume", scalars_only, max_steps=5)
    events = _events(folder_data, "tb-resume")
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5]
    assert not events.Tags()["images"]


def test_options_are_bounded() -> None:
    with pytest.raises(InvalidOption, match="samples must be in"):
        TensorBoardOptions(samples=-1)
    with pytest.raises(InvalidOption, match="steps must be in"):
        TensorBoardOptions(sample_steps=0)
