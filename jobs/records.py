"""What a job record is: its states and kinds, the Celery task names, and how it is stored in a Redis
hash (every value a string; JSON for params and result, numbers parsed back on read)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE_STATES = (QUEUED, RUNNING)
TERMINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)
STATES = ACTIVE_STATES + TERMINAL_STATES

TRAIN, SAMPLE, FID = "train", "sample", "fid"
FID_REFERENCE = "fid_reference"  # a data set's reference statistics, shared by the FID jobs that need them
ANALYSIS, CLASSIFIER = "analysis", "classifier"  # the classifier study (docs/analysis.md)
KINDS = (TRAIN, SAMPLE, FID, FID_REFERENCE, ANALYSIS, CLASSIFIER)
# Jobs are published under these names (jobs/publish.py); workers/tasks.py registers tasks under them.
TASK_NAMES = {
    TRAIN: "ddpm.train",
    SAMPLE: "ddpm.sample",
    FID: "ddpm.fid",
    FID_REFERENCE: "ddpm.fid_reference",
    ANALYSIS: "ddpm.analysis",
    CLASSIFIER: "ddpm.classifier",
}

JSON_FIELDS = ("params", "result")
FLOAT_FIELDS = ("progress", "loss", "eta_s", "created", "started", "finished", "updated", "heartbeat")
INT_FIELDS = ("step", "total", "attempts", "rev", "republished")


# Locks on a sample-cache entry (or a reference-statistics key) serve identical requests while the job
# that makes the file is active; once it has ended they are released (a run's lock stays: it is the
# run's link to its last job).
RELEASED_LOCK_PREFIXES = ("sample:", "fid-reference:")


def new_job_id() -> str:
    return uuid.uuid4().hex


def encode_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True)
    return str(value)


def flatten(fields: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in fields.items():
        if value is not None:
            out += [key, encode_value(value)]
    return out


def decode_job(raw: Mapping[str, str]) -> dict[str, Any]:
    """A stored hash as typed values (missing numbers stay absent)."""
    job: dict[str, Any] = dict(raw)
    for key in JSON_FIELDS:
        if key in job:
            job[key] = json.loads(job[key])
    for key in FLOAT_FIELDS:
        if key in job:
            job[key] = float(job[key])
    for key in INT_FIELDS:
        if key in job:
            job[key] = int(job[key])
    job["cancel_requested"] = job.get("cancel_requested") == "1"
    return job
