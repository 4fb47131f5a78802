"""How a job ends, in one place: the outcome an error gives, recording an outcome under the job's
token, and the run.json of a training whose trainer could not settle it. Every job, alone or in a
sampling batch (workers/batching.py), ends through here."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from ddpm.errors import Cancelled, DdpmError
from ddpm.runs import RunDir
from ddpm.storage import MIB, free_bytes, out_of_space, relative_to_volume, written_path
from jobs.records import CANCELLED, FAILED, TERMINAL_STATES, TRAIN
from jobs.store import JobStore
from models.config import ConfigError

log = logging.getLogger("workers")

Outcome = dict[str, Any]  # the fields JobStore.finish writes: state, message, error, result, ...
CANCELLED_OUTCOME: Outcome = {"state": CANCELLED, "message": "cancelled"}
RETRY_EVERY_S = 1.0


def outcome_of(err: BaseException, job_id: str, data_dir: Path | None = None) -> Outcome:
    """What a job that raised `err` records. Errors the user can fix carry their message; a full volume
    says so; anything else is an internal error, logged here with its traceback. Paths under the data
    volume are written relative to it (a client never sees the server's own paths)."""
    if isinstance(err, Cancelled):
        return dict(CANCELLED_OUTCOME)
    if out_of_space(err):
        log.warning("job %s: %s", job_id, err)
        error = no_space_message(err, data_dir)
    elif isinstance(err, DdpmError | ConfigError):  # the user's to fix: the message says how
        error = str(err)
    else:
        log.error("job %s crashed", job_id, exc_info=err)
        error = f"internal error in the worker ({type(err).__name__}: {err}); its log has the traceback"
    if data_dir is not None:
        error = relative_to_volume(error, data_dir)
    return {"state": FAILED, "message": "failed", "error": error}


AFTER_SPACE_IS_FREED = "free space on it, then ask again (a training resumes from its last checkpoint: POST /train with resume: true)"


def no_space_message(err: BaseException, data_dir: Path | None) -> str:
    """'no space left on the data volume (writing runs/x/...; 3 MiB free): ...', naming the file only
    when it is on the data volume."""
    path = written_path(err)
    if data_dir is None or (path is not None and not path.is_relative_to(data_dir)):
        return f"no space left on a volume outside the data volume ({type(err).__name__}); {AFTER_SPACE_IS_FREED}"
    writing = f"writing {path.relative_to(data_dir)}; " if path is not None else ""
    return f"no space left on the data volume ({writing}{free_bytes(data_dir) // MIB} MiB free); {AFTER_SPACE_IS_FREED}"


def low_space_outcome(data_dir: Path, min_free_mb: int) -> Outcome | None:
    """A failed outcome when the data volume has less free space than the configured minimum, checked
    before a job starts writing (DDPM_MIN_FREE_MB); None when there is room."""
    free_mb = free_bytes(data_dir) // MIB
    if free_mb >= min_free_mb:
        return None
    return {
        "state": FAILED,
        "message": "failed",
        "error": f"no space left on the data volume: {free_mb} MiB free, under the {min_free_mb} MiB this "
        f"service keeps free before a job starts (DDPM_MIN_FREE_MB); {AFTER_SPACE_IS_FREED}",
    }


def record_outcome(store: JobStore, job_id: str, token: str, outcome: Outcome, wait_s: float) -> bool:
    """Record how the job ended, under its token, waiting out a Redis outage for up to `wait_s` (a
    lease). False when it never landed: the job's lease then lapses and the sweep re-queues it (a
    finished training completes at once from its last checkpoint)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if store.finish(job_id, token=token, **outcome):
                log.info("job %s %s", job_id, outcome["state"])
            else:
                log.warning("job %s ended here (%s) but another worker owns it now", job_id, outcome["state"])
            return True
        except redis.RedisError as err:
            if time.monotonic() > deadline:
                log.error(
                    "job %s: outcome never recorded (%s); its lease lapses and it is re-queued", job_id, err
                )
                return False
            log.warning("job %s: outcome not recorded yet (%s); retrying", job_id, err)
            time.sleep(RETRY_EVERY_S)


def settle_run(data_dir: Path, job: Mapping[str, Any], outcome: Mapping[str, Any] | None = None) -> None:
    """A training job that ended (with `outcome`, or as its record says) marks its run the same way
    when the trainer could not: it failed before the trainer started, or its workers kept dying."""
    ended = outcome if outcome is not None else job
    run_id = job.get("run_id") or (job.get("params") or {}).get("run_id")
    if job.get("kind") != TRAIN or ended.get("state") not in TERMINAL_STATES or not run_id:
        return
    try:
        RunDir.of(data_dir, run_id).settle(ended["state"], ended.get("error"))
    except (OSError, DdpmError) as err:  # a full volume: the job's own record still says how it ended
        log.warning("run %s: run.json not marked %s (%s)", run_id, ended["state"], err)
