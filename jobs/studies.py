"""A study's record (issue 17): what was asked, what the API planned, and which job runs each stage of
each member. Kept like a job record: in Redis, changed only by atomic commands, and copied to the data
volume after every change, so it survives an API restart and a Redis that lost its data.

Keys (under the job store's prefix):
  <p>:study:<id>   hash: id, name, created, queue, rev, cancelled (while cancelled), spec and plan
                   (JSON), job:<member>:<stage> (the id of the job that runs that stage), and
                   result:<member>:<stage> (a finished stage's result, kept past its job's expiry)
  <p>:studies      sorted set of study ids by creation time

The volume copy is DATA_DIR/studies/<id>.json (the hash as stored, strings). A study Redis lacks is put
back from it the first time it is read (`StudyStore.get`); the newest revision wins, as for jobs.

Which jobs to queue, and when, is jobs/study_steps.py's; this module only keeps the record.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from ddpm.storage import atomic_write_json, read_json
from jobs.store import JobStore

log = logging.getLogger("jobs")

TRAIN_STAGE, GRID_STAGE, FID_STAGE = "train", "grid", "fid"
STAGES = (TRAIN_STAGE, GRID_STAGE, FID_STAGE)
STUDY_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")

# Set a field to a value when it holds `expected` ('' = absent), bumping rev. Two callers recording a
# stage's job: the one that saw the field as it is wins; a retry replaces only the job it retried.
# KEYS: study. ARGV: field, value, expected.
SET_IF = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current == ARGV[2] then return 1 end
if current ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'rev', 1)
return 1
"""

# Put back a record Redis lacks (from the volume); never over one it has. KEYS: study, index.
# ARGV: id, created, field/value pairs.
RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Study:
    """A study record as read: `raw` is the hash as stored."""

    raw: Mapping[str, str]

    @property
    def id(self) -> str:
        return self.raw["id"]

    @property
    def name(self) -> str:
        return self.raw.get("name", "")

    @property
    def created(self) -> float:
        return float(self.raw["created"])

    @property
    def cancelled(self) -> float | None:
        value = self.raw.get("cancelled")
        return float(value) if value else None

    @property
    def queue(self) -> str:
        return self.raw["queue"]

    @property
    def spec(self) -> dict[str, Any]:
        return json.loads(self.raw["spec"])

    @property
    def plan(self) -> dict[str, Any]:
        return json.loads(self.raw["plan"])

    @property
    def members(self) -> list[dict[str, Any]]:
        """Each member's plan: key, variant, seed, run_id, attached, train (its training job's params)."""
        return self.plan["members"]

    def job_id(self, member: str, stage: str) -> str | None:
        return self.raw.get(job_field(member, stage)) or None

    def kept_result(self, member: str, stage: str) -> dict[str, Any] | None:
        value = self.raw.get(result_field(member, stage))
        return json.loads(value) if value else None

    def job_ids(self) -> list[str]:
        return [self.raw[f] for f in self.raw if f.startswith("job:")]


def job_field(member: str, stage: str) -> str:
    return f"job:{member}:{stage}"


def result_field(member: str, stage: str) -> str:
    return f"result:{member}:{stage}"


def new_study_id() -> str:
    return uuid.uuid4().hex


class StudyStore:
    """Study records beside the job records (same Redis, same prefix) and their copies on the volume."""

    def __init__(self, jobs: JobStore, data_dir: Path) -> None:
        self.jobs = jobs
        self.client = jobs.client
        self.prefix = jobs.prefix
        self.folder = data_dir / "studies"
        self._set_if = self.client.register_script(SET_IF)
        self._restore = self.client.register_script(RESTORE)

    def key(self, study_id: str) -> str:
        return f"{self.prefix}:study:{study_id}"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}:studies"

    def path(self, study_id: str) -> Path:
        if not STUDY_ID_PATTERN.match(study_id):  # never build a path from anything else
            raise ValueError(f"not a study id: {study_id!r}")
        return self.folder / f"{study_id}.json"

    def create(self, name: str, queue: str, spec: dict[str, Any], plan: dict[str, Any]) -> Study:
        study_id, now = new_study_id(), time.time()
        raw = {
            "id": study_id,
            "name": name,
            "created": repr(now),
            "queue": queue,
            "rev": "1",
            "spec": json.dumps(spec, sort_keys=True),
            "plan": json.dumps(plan, sort_keys=True),
        }
        # The volume copy first: a study Redis knows is always one a restore can put back.
        self._write_copy(raw)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key(study_id), mapping=raw)
        pipe.zadd(self.index_key, {study_id: now})
        pipe.execute()
        return Study(raw)

    def get(self, study_id: str) -> Study | None:
        """The study, put back from the volume first when Redis lacks it (it lost its data)."""
        if not STUDY_ID_PATTERN.match(study_id):
            return None
        raw = self.client.hgetall(self.key(study_id))
        if not raw:
            copy = self._read_copy(self.path(study_id))
            if copy is None:
                return None
            self._restore(
                keys=[self.key(study_id), self.index_key],
                args=[study_id, copy["created"], *[x for kv in copy.items() for x in kv]],
            )
            raw = self.client.hgetall(self.key(study_id))
            log.warning("study %s: put back from the volume", study_id)
        return Study(raw) if raw else None

    def ids(self) -> list[str]:
        """Every study id, newest first: those in Redis and those only on the volume."""
        known = dict(self.client.zrange(self.index_key, 0, -1, withscores=True))
        if self.folder.is_dir():
            for path in self.folder.glob("*.json"):  # temp files are hidden and never match
                if STUDY_ID_PATTERN.match(path.stem) and path.stem not in known:
                    copy = self._read_copy(path)
                    if copy is not None:
                        known[path.stem] = float(copy["created"])
        return sorted(known, key=lambda i: known[i], reverse=True)

    def set_field(self, study_id: str, field: str, value: str, expected: str = "") -> bool:
        """Set `field` to `value` if it is `expected` now ('' = absent) or already `value`."""
        landed = self._set_if(keys=[self.key(study_id)], args=[field, value, expected]) == 1
        if landed:
            self._mirror(study_id)
        return landed

    def set_job(
        self, study_id: str, member: str, stage: str, job_id: str, replaces: str | None = None
    ) -> bool:
        return self.set_field(study_id, job_field(member, stage), job_id, replaces or "")

    def keep_result(
        self, study_id: str, member: str, stage: str, job_id: str, result: dict[str, Any]
    ) -> None:
        """A finished stage's result (once per job: a retried stage's new job writes its own)."""
        value = json.dumps({"job_id": job_id, **result}, sort_keys=True)
        current = self.client.hget(self.key(study_id), result_field(member, stage)) or ""
        if current and json.loads(current).get("job_id") == job_id:
            return
        self.set_field(study_id, result_field(member, stage), value, current)

    def set_cancelled(self, study_id: str, cancelled: bool) -> None:
        pipe = self.client.pipeline(transaction=True)
        if cancelled:
            pipe.hsetnx(self.key(study_id), "cancelled", repr(time.time()))
        else:
            pipe.hdel(self.key(study_id), "cancelled")
        pipe.hincrby(self.key(study_id), "rev", 1)
        pipe.execute()
        self._mirror(study_id)

    def _mirror(self, study_id: str) -> None:
        """Copy the record to the volume; a failure is logged (the change itself has happened)."""
        try:
            raw = self.client.hgetall(self.key(study_id))
            if raw:
                self._write_copy(raw)
        except (OSError, redis.RedisError) as err:
            log.warning("study %s: its record was not copied to the volume (%s)", study_id, err)

    def _write_copy(self, raw: Mapping[str, str]) -> None:
        """Keep the newest revision: a process copying an older read never replaces a newer copy."""
        path = self.path(raw["id"])
        current = self._read_copy(path)
        if current is not None and int(current.get("rev", 0)) >= int(raw.get("rev", 0)):
            return
        atomic_write_json(path, dict(raw))

    @staticmethod
    def _read_copy(path: Path) -> dict[str, str] | None:
        try:
            copy = read_json(path)
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as err:
            log.warning("skipping unreadable study record %s: %s", path, err)
            return None
        return copy if isinstance(copy, dict) and "created" in copy else None
