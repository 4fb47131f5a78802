"""Job records mirrored on the data volume, so the job list survives Redis losing its data.

Redis holds the live records (jobs/store.py). The store also writes each record to
DATA_DIR/jobs/<id>.json (atomically) after every state change: created, started, cancel asked,
re-queued, finished. Progress ticks are not copied: they are frequent, and a restored training resumes
from its run's checkpoint, not from the step a record last showed.

restore_jobs() puts back every record Redis lacks:
  queued    stays queued and is published again to the queue the API sent it to (a duplicate of a
            message that survived is dropped by the lease check, as any redelivery is);
  running   stays running under its old owner's token, with a fresh lease: if that process still runs
            it carries on; if not, the lease lapses and the workers' sweep re-queues the job, which
            resumes from its last checkpoint (that start counts as an attempt);
  finished  as it ended, expiring when it would have; files of expired ones are deleted.

Workers check at every heartbeat whether Redis still holds the restored records (the key
<prefix>:restored, which a Redis that lost its data does not have) and restore them if not; the API
does the same once at start, and `ddpm jobs rebuild` does it on demand. See docs/reliability.md.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from ddpm.storage import atomic_write_json, read_json
from jobs.records import QUEUED, RUNNING, TERMINAL_STATES
from jobs.store import JobStore

log = logging.getLogger("jobs")

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")  # jobs.records.new_job_id
PRUNE_EVERY_S = 3600  # how often some worker deletes the files of expired records

# publish(kind, job id, queue the job was sent to or None for the default)
Publish = Callable[[str, str, str | None], None]


class JobMirror:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def of(cls, data_dir: Path) -> JobMirror:
        return cls(data_dir / "jobs")

    def path(self, job_id: str) -> Path:
        if not JOB_ID_PATTERN.match(job_id):  # ids come from new_job_id; never build paths from others
            raise ValueError(f"not a job id: {job_id!r}")
        return self.folder / f"{job_id}.json"

    def write(self, job: Mapping[str, Any]) -> None:
        """Keep the newest revision: of two processes copying one job at once (the API asking a cancel
        as the worker finishes), the one that read the older record does not replace the newer."""
        path = self.path(job["id"])
        current = self._read(path)
        if current is not None and current.get("rev", 0) >= job.get("rev", 0):
            return
        atomic_write_json(path, dict(job))

    def read(self, job_id: str) -> dict[str, Any] | None:
        return self._read(self.path(job_id))

    def records(self) -> list[dict[str, Any]]:
        """Every mirrored record, oldest first (so re-published jobs keep their queue order)."""
        if not self.folder.is_dir():
            return []
        jobs = []
        for path in self.folder.glob("*.json"):  # temp files are hidden (.name.tmp) and never match
            job = self._read(path)
            if job is not None and JOB_ID_PATTERN.match(str(job.get("id", ""))):
                jobs.append(job)
        return sorted(jobs, key=lambda job: job.get("created") or 0)

    def remove(self, job_id: str) -> None:
        self.path(job_id).unlink(missing_ok=True)

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            return read_json(path)
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as err:
            log.warning("skipping unreadable job record %s: %s", path, err)
            return None


@dataclass
class RestoreReport:
    restored: list[str] = field(default_factory=list)  # every record put back
    republished: list[str] = field(default_factory=list)  # queued ones, published again
    running: list[str] = field(default_factory=list)  # running ones, under their old lease
    expired: list[str] = field(default_factory=list)  # finished past their ttl: files deleted

    def summary(self) -> str:
        return (
            f"restored {len(self.restored)} job record(s) ({len(self.republished)} queued, published "
            f"again; {len(self.running)} running, re-queued unless their worker still holds them); "
            f"deleted {len(self.expired)} expired"
        )


def restore_jobs(store: JobStore, publish: Publish, lease_s: float) -> RestoreReport:
    """Put back every mirrored record Redis lacks (safe to run anywhere, any number of times at once:
    each record is restored by exactly one caller, which alone publishes it)."""
    mirror = _mirror_of(store)
    report, unpublished = RestoreReport(), []
    for job in mirror.records():
        if not store.restore(job, lease_s):
            if job["state"] in TERMINAL_STATES and not store.client.exists(store.job_key(job["id"])):
                mirror.remove(job["id"])
                report.expired.append(job["id"])
            continue
        report.restored.append(job["id"])
        if job["state"] == RUNNING:
            report.running.append(job["id"])
        elif job["state"] == QUEUED:
            try:
                publish(job["kind"], job["id"], job.get("queue"))
                report.republished.append(job["id"])
            except Exception as err:
                # Take the record out again, so that the next restore retries it whole.
                log.warning("job %s restored but not published (%s); will retry", job["id"], err)
                store.client.delete(store.job_key(job["id"]))
                store.client.zrem(store.index_key, job["id"])
                unpublished.append(job["id"])
    if unpublished:
        raise RuntimeError(f"restored jobs not published to the queue: {unpublished}")
    return report


def restore_if_lost(store: JobStore, publish: Publish, lease_s: float) -> RestoreReport | None:
    """Restore from the volume when this Redis does not hold the restored records (it lost its data,
    or it is new); None when it does. Cheap enough for every worker heartbeat: one EXISTS."""
    if store.holds_restored_records():
        return None
    report = restore_jobs(store, publish, lease_s)
    store.mark_restored()
    if report.restored or report.expired:
        log.warning("Redis had lost job records; from the volume: %s", report.summary())
    return report


def prune_expired(store: JobStore, now: float | None = None) -> list[str]:
    """Delete the files of finished jobs whose records have expired (they would never be restored)."""
    mirror, now = _mirror_of(store), time.time() if now is None else now
    expired = []
    for job in mirror.records():
        finished = job.get("finished") or job.get("updated") or now
        if job["state"] in TERMINAL_STATES and finished + store.ttl_s <= now:
            mirror.remove(job["id"])
            expired.append(job["id"])
    return expired


def prune_now_and_then(store: JobStore, every_s: float = PRUNE_EVERY_S) -> list[str]:
    """prune_expired() by one worker at most every `every_s` (the first to claim the slot)."""
    try:
        claimed = store.client.set(f"{store.prefix}:pruned", str(time.time()), nx=True, ex=round(every_s))
    except redis.RedisError:
        return []
    return prune_expired(store) if claimed else []


def _mirror_of(store: JobStore) -> JobMirror:
    if store.mirror is None:
        raise ValueError("this job store has no volume mirror (JobStore(..., mirror=JobMirror.of(DATA_DIR)))")
    return store.mirror
