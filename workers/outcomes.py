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
from jobs.records import CANCELLED, FAILED, TERMINAL_STATES, TRAIN
from jobs.store import JobStore
from models.config import ConfigError

log = logging.getLogger("workers")

Outcome = dict[str, Any]  # the fields JobStore.finish writes: state, message, error, result, ...
CANCELLED_OUTCOME: Outcome = {"state": CANCELLED, "message": "cancelled"}
RETRY_EVERY_S = 1.0


def outcome_of(err: BaseException, job_id: str) -> Outcome:
    """What a job that raised `err` records. Errors the user can fix carry their message; anything
    else is an internal error, logged here with its traceback."""
    if isinstance(err, Cancelled):
        return dict(CANCELLED_OUTCOME)
    if isinstance(err, DdpmError | ConfigError):  # the user's to fix: the message says how
        return {"state": FAILED, "message": "failed", "error": str(err)}
    log.error("job %s crashed", job_id, exc_info=err)
    return {
        "state": FAILED,
        "message": "failed",
        "error": f"internal error in the worker ({type(err).__name__}: {err}); its log has the traceback",
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
    RunDir.of(data_dir, run_id).settle(ended["state"], ended.get("error"))
