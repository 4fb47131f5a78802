"""What a study's members produced, read the same way by the local runner and the service. Torch-free.

`member_from_run` reads a run directory (run.json, loss.csv, the newest checkpoint's safetensors header)
into a MemberResult; the caller adds the grid and the FID record it got from its own jobs.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddpm.fid.results import record_scores
from ddpm.fid.score_types import Scores
from ddpm.runs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, RunDir
from ddpm.smoothing import smooth_ema

PENDING, TRAINING, EVALUATING, DONE = "pending", "training", "evaluating", "done"
MEMBER_STATES = (PENDING, TRAINING, EVALUATING, DONE, FAILED, CANCELLED)
# The final loss is the debiased EMA of the raw per-step loss at this weight (about the last 100 steps):
# one step's loss is one batch at one random timestep each, far too noisy to compare variants by.
LOSS_SMOOTHING = 0.99
_RUN_STATES = {QUEUED: PENDING, RUNNING: TRAINING, FAILED: FAILED, CANCELLED: CANCELLED}


@dataclass
class MemberResult:
    variant: str
    seed: int
    run_id: str | None
    state: str  # one of MEMBER_STATES
    error: str | None = None
    parameters: int | None = None  # trainable parameters of the network as trained (its width)
    train_seconds: float | None = None  # training time, summed over the run's processes (resumes)
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, raw loss) from loss.csv
    grid_png: Path | None = None  # the seeded grid
    fid_record: dict[str, Any] | None = None  # FidResult.to_record() (with "id" once stored)

    @property
    def key(self) -> str:
        return f"{self.variant}@{self.seed}"

    def scores(self) -> dict[int, Scores]:
        """Every metric per N from the FID record (empty until it exists)."""
        if not self.fid_record:
            return {}
        return {row.n: row for row in record_scores(self.fid_record)}

    def final_loss(self, weight: float = LOSS_SMOOTHING) -> float | None:
        """The smoothed loss at the last logged step (None before any step)."""
        if not self.losses:
            return None
        return smooth_ema([loss for _, loss in self.losses], weight)[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "seed": self.seed,
            "run_id": self.run_id,
            "state": self.state,
            "error": self.error,
            "parameters": self.parameters,
            "train_seconds": self.train_seconds,
            "losses": [list(point) for point in self.losses],
            "grid_png": None if self.grid_png is None else str(self.grid_png),
            "fid_record": self.fid_record,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemberResult:
        return cls(
            variant=str(data["variant"]),
            seed=int(data["seed"]),
            run_id=data.get("run_id"),
            state=str(data.get("state", PENDING)),
            error=data.get("error"),
            parameters=data.get("parameters"),
            train_seconds=data.get("train_seconds"),
            losses=[(int(step), float(loss)) for step, loss in data.get("losses") or []],
            grid_png=None if data.get("grid_png") is None else Path(data["grid_png"]),
            fid_record=data.get("fid_record"),
        )


def member_from_run(
    run_dir: Path,
    variant: str | None = None,
    seed: int | None = None,
    grid_png: Path | None = None,
    fid_record: dict[str, Any] | None = None,
    state: str | None = None,
) -> MemberResult:
    """A member from its run directory: run id, error, parameters, training time, loss history.

    `state` defaults to the run's: queued -> pending, running -> training, failed, cancelled; a finished
    run is `done` once it has both its grid and its FID record, else `evaluating`. `variant` and `seed`
    default to the run's own."""
    run = RunDir(Path(run_dir))
    record = run.read()
    train_config = record.get("train_config") or {}
    status = str(record.get("status"))
    if state is None:
        finished = grid_png is not None and fid_record is not None
        state = (
            (DONE if finished else EVALUATING) if status == SUCCEEDED else _RUN_STATES.get(status, PENDING)
        )
    kept = run.kept_checkpoints()
    newest = kept[-1][1] if kept else (run.latest_path if run.latest_path.exists() else None)
    return MemberResult(
        variant=variant or str(record["arch"]),
        seed=int(train_config.get("seed", 0)) if seed is None else seed,
        run_id=run.run_id,
        state=state,
        error=record.get("error"),
        parameters=None if newest is None else trained_parameters(newest),
        train_seconds=train_seconds(run),
        losses=[(int(row["step"]), row["loss"]) for row in run.loss_history()],
        grid_png=grid_png,
        fid_record=fid_record,
    )


def final_checkpoint(run_dir: Path) -> Path | None:
    """The run's newest kept checkpoint (the final one of a finished run): what a study samples."""
    kept = RunDir(Path(run_dir)).kept_checkpoints()
    return kept[-1][1] if kept else None


def train_seconds(run: RunDir) -> float | None:
    """Training time from loss.csv's `seconds` column: it counts from each process's start, so a resumed
    run's column falls back and the segments are summed."""
    total, segment_end, previous = 0.0, 0.0, None
    for row in run.loss_history():
        seconds = row["seconds"]
        if previous is not None and seconds < previous:
            total += segment_end
        segment_end = previous = seconds
    return None if previous is None else total + segment_end


def trained_parameters(checkpoint: Path) -> int | None:
    """Trainable parameters, from the checkpoint's safetensors header alone (no torch, no weights read):
    AdamW keeps one `exp_avg` per trainable parameter, of its shape. None when the header does not read."""
    try:
        with Path(checkpoint).open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return None
    total, found = 0, False
    for name, info in header.items():
        if name.startswith("optim.") and name.endswith(".exp_avg"):
            count = 1
            for size in info["shape"]:
                count *= int(size)
            total += count
            found = True
    return total if found else None
