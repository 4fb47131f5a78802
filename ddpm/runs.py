"""The on-disk layout of training runs, readable without torch (the API process lists runs from it).

runs/<run_id>/run.json                         config, status, step, checkpoint list
runs/<run_id>/loss.csv                         step,epoch,loss,lr,seconds (one row per step)
runs/<run_id>/checkpoints/step-00001000.safetensors   kept checkpoints (every N epochs, final)
runs/<run_id>/checkpoints/latest.safetensors   the newest state, for resuming
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddpm.errors import DdpmError, InvalidOption
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
UNREADABLE = "unreadable"  # how GET /runs/{id} shows a run whose run.json cannot be read

log = logging.getLogger("ddpm")


class UnreadableRun(DdpmError):
    """A run.json that is not JSON, or not a run record (written or damaged outside this program)."""


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

    @property
    def record_name(self) -> str:
        """run.json's path relative to the data volume, for messages (never the server's own path)."""
        return f"{self.path.parent.name}/{self.run_id}/{self.record_path.name}"

    def read(self) -> dict[str, Any]:
        """The run's record; UnreadableRun when the file is not a run record (FileNotFoundError when
        there is none)."""
        try:
            record = read_json(self.record_path)
        except FileNotFoundError:
            raise
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise self._unreadable(f"{type(err).__name__}: {err}") from err
        problem = _record_problem(record)
        if problem:
            raise self._unreadable(problem)
        return record

    def _unreadable(self, why: str) -> UnreadableRun:
        return UnreadableRun(
            f"run {self.run_id!r}: its record {self.record_name} is unreadable ({why}); it was written or "
            "damaged outside this program: restore it, or remove the run's folder"
        )

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
        try:
            if not self.exists() or self.read().get("status") not in UNSETTLED:
                return False
        except UnreadableRun as err:  # nothing to settle that a reader could see; say so in the log
            log.warning("run %s not marked %s: %s", self.run_id, status, err)
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


def _record_problem(record: Any) -> str | None:
    """What makes `record` not a run record readers can use (None when it is one): the fields the API
    and the CLI read must have their types."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    missing = [key for key in ("run_id", "arch", "status") if key not in record]
    if missing:
        return f"no {', '.join(missing)}"
    expected: dict[str, tuple[type, ...]] = {
        "run_id": (str,),
        "arch": (str,),
        "status": (str,),
        "created": (int, float, type(None)),
        "updated": (int, float, type(None)),
        "train_config": (dict, type(None)),
        "checkpoints": (list,),
        "step": (int, type(None)),
    }
    for key, types in expected.items():
        if key in record and (not isinstance(record[key], types) or isinstance(record[key], bool)):
            return f"{key} is {record[key]!r}"
    for entry in record.get("checkpoints", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
            return f"checkpoint entry {entry!r} has no integer step"
        if not isinstance(entry.get("time"), int | float | None):
            return f"checkpoint entry {entry!r} has a time that is not a number"
    return None


@functools.lru_cache(maxsize=256)
def _warn_once(path: str, mtime_ns: int, message: str) -> None:
    """A listing runs at every page refresh: say so once per version of the file, not every time."""
    log.warning("listing skips a run: %s", message)


def readable_runs(data_dir: Path) -> list[tuple[RunDir, dict[str, Any]]]:
    """(run, record) of every run whose record reads, newest first; the others are logged and skipped,
    so one damaged run.json does not take the listing down."""
    root = runs_dir(data_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if not RUN_ID_PATTERN.match(path.name):
            continue  # not a run folder this program made (hidden files, editors' backups)
        run = RunDir(path)
        try:
            if run.exists():
                found.append((run, run.read()))
        except (UnreadableRun, OSError) as err:
            try:
                mtime = run.record_path.stat().st_mtime_ns
            except OSError:
                mtime = 0
            _warn_once(str(run.record_path), mtime, str(err))
    return sorted(found, key=lambda item: _created(item[1]), reverse=True)


def _created(record: dict[str, Any]) -> float:
    return float(record.get("created") or 0)


def list_runs(data_dir: Path) -> list[dict[str, Any]]:
    """Every readable run's record, newest first (see readable_runs)."""
    return [record for _, record in readable_runs(data_dir)]


def newest_checkpoint(data_dir: Path, arch: str) -> tuple[str, int, Path] | None:
    """(run_id, step, path) of the most recently written kept checkpoint of any run of `arch`."""
    best: tuple[float, str, int, Path] | None = None
    for run, record in readable_runs(data_dir):
        if record.get("arch") != arch:
            continue
        for step, path in run.kept_checkpoints():
            written = path.stat().st_mtime
            if best is None or written > best[0]:
                best = (written, run.run_id, step, path)
    return None if best is None else best[1:]
