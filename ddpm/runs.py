"""The on-disk layout of training runs, readable without torch (the API process lists runs from it).

runs/<run_id>/run.json                         config, status, step, checkpoint list
runs/<run_id>/loss.csv                         step,epoch,loss,lr,seconds (one row per step)
runs/<run_id>/checkpoints/step-00001000.safetensors   kept checkpoints (every N epochs, final)
runs/<run_id>/checkpoints/latest.safetensors   the newest state, for resuming
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddpm.errors import InvalidOption
from ddpm.limits import RUN_ID_REGEX
from ddpm.settings import runs_dir
from ddpm.storage import atomic_write_json, read_json

RUN_ID_PATTERN = re.compile(RUN_ID_REGEX)
CHECKPOINT_PATTERN = re.compile(r"^step-(\d{8})\.safetensors$")
LATEST = "latest.safetensors"
LOSS_HEADER = ("step", "epoch", "loss", "lr", "seconds")

# Run states, as stored in run.json: `queued` from the API's POST /train until a trainer takes the run
# over, then the trainer's own. A run still queued or running when its job has ended is unsettled.
QUEUED, RUNNING, SUCCEEDED, CANCELLED, FAILED = "queued", "running", "succeeded", "cancelled", "failed"
UNSETTLED = (QUEUED, RUNNING)


def run_record(
    run_id: str,
    arch: str,
    train_config: dict[str, Any],
    status: str,
    created: float | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The one shape of run.json; `fields` fill in what the writer knows (model_config, total_steps,
    steps_per_epoch, step, checkpoints, device, error, resume notes)."""
    now = time.time()
    return {
        "run_id": run_id,
        "arch": arch,
        "created": now if created is None else created,
        "updated": now,
        "status": status,
        "device": None,
        "train_config": train_config,
        "model_config": None,
        "total_steps": None,
        "steps_per_epoch": None,
        "step": 0,
        "checkpoints": [],
        **fields,
    }


def new_run_id(arch: str) -> str:
    # Combined presets ("anti_aliasing+biggan") become "anti_aliasing.biggan": run ids stay URL- and path-safe.
    return f"{arch.replace('+', '.')}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.safetensors"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @classmethod
    def of(cls, data_dir: Path, run_id: str) -> RunDir:
        if not RUN_ID_PATTERN.match(run_id):
            raise InvalidOption(
                f"invalid run id {run_id!r}: lower-case letters, digits, '.', '_' and '-' only"
            )
        return cls(runs_dir(data_dir) / run_id)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def record_path(self) -> Path:
        return self.path / "run.json"

    @property
    def loss_path(self) -> Path:
        return self.path / "loss.csv"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def latest_path(self) -> Path:
        return self.checkpoints_dir / LATEST

    def checkpoint_path(self, step: int) -> Path:
        """Where the kept checkpoint of `step` lives (whether or not it exists yet)."""
        return self.checkpoints_dir / checkpoint_name(step)

    def exists(self) -> bool:
        return self.record_path.is_file()

    def read(self) -> dict[str, Any]:
        return read_json(self.record_path)

    def write(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.record_path, record)

    def update(self, **changes: Any) -> dict[str, Any]:
        record = {**self.read(), **changes, "updated": time.time()}
        self.write(record)
        return record

    def settle(self, status: str, error: str | None = None) -> bool:
        """Record how a run ended when its trainer could not say so itself (the job failed before the
        trainer started, was cancelled while queued, or its workers kept dying). A run the trainer has
        already settled is left alone; True when this call changed it."""
        if not self.exists() or self.read().get("status") not in UNSETTLED:
            return False
        self.update(status=status, **({"error": error} if error else {}))
        return True

    def kept_checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of every kept checkpoint on disk, oldest first (temp files are hidden)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for path in self.checkpoints_dir.iterdir():
            match = CHECKPOINT_PATTERN.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def complete_loss_csv(self) -> str:
        """loss.csv up to its last complete line ('' when absent).

        The trainer appends through a buffer flushed in blocks, so a reader during training can find
        half a row at the end; that row is left for the next read."""
        try:
            text = self.loss_path.read_text()
        except FileNotFoundError:
            return ""
        return text[: text.rfind("\n") + 1]

    def loss_history(self, max_points: int | None = None) -> list[dict[str, float]]:
        """Rows of loss.csv, evenly thinned to at most max_points (first and last kept)."""
        rows = [
            {key: float(value) for key, value in row.items()}
            for row in csv.DictReader(io.StringIO(self.complete_loss_csv()))
            if row.get("loss") not in (None, "")
        ]
        if max_points and len(rows) > max_points > 1:
            stride = (len(rows) - 1) / (max_points - 1)
            rows = [rows[round(i * stride)] for i in range(max_points)]
        return rows


def list_runs(data_dir: Path) -> list[dict[str, Any]]:
    """Every run's record, newest first."""
    root = runs_dir(data_dir)
    if not root.is_dir():
        return []
    records = []
    for path in root.iterdir():
        run = RunDir(path)
        if run.exists():
            records.append(run.read())
    return sorted(records, key=lambda r: r.get("created", 0), reverse=True)


def newest_checkpoint(data_dir: Path, arch: str) -> tuple[str, int, Path] | None:
    """(run_id, step, path) of the most recently written kept checkpoint of any run of `arch`."""
    best: tuple[float, str, int, Path] | None = None
    for record in list_runs(data_dir):
        if record.get("arch") != arch:
            continue
        run = RunDir.of(data_dir, record["run_id"])
        for step, path in run.kept_checkpoints():
            written = path.stat().st_mtime
            if best is None or written > best[0]:
                best = (written, run.run_id, step, path)
    return None if best is None else best[1:]
