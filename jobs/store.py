"""Job records in Redis under our own keys: what a user sees never depends on Celery's result backend.

Keys (all under the configured prefix, `ddpm` by default):
  <p>:job:<id>        hash: kind, state, params, progress, step, total, loss, eta_s, message, error,
                      result, created/started/finished/updated/heartbeat, cancel_requested
  <p>:jobs            sorted set of job ids by creation time (GET /jobs)
  <p>:running         set of the ids of running jobs (checked for lost workers)
  <p>:lease:<id>      a running job's lease: the owner's token, expiring unless its worker renews it
  <p>:lock:<name>     the id of the job that owns a resource: a sample cache entry (released when its
                      job ends), a training run (kept: the run's link to its last job)
  <p>:worker:<host>   a worker's heartbeat (expires when the worker goes away; jobs/registry.py)
  <p>:restored        present while this Redis holds the volume's job records (jobs/mirror.py)
  <p>:pruned          held for an hour by the worker that deleted expired records' files from the volume
  <p>:batchable:<key> queued sampling jobs a worker may sample together (jobs/batching.py)

Every state change is one Lua script (jobs/scripts.py), so the API and the workers never race.

Ownership: start() gives a running job a fresh token (the hash's `lease` field) and a lease key that
expires after lease_ms unless the owner renews it. Only the token's holder may write progress or finish
the job. A job whose lease key expired has lost its worker: reclaim() puts it back in the queue (or
fails it after max_attempts starts), and a new start() hands it a new token, which fences the old owner
out of the record. See docs/reliability.md.

With a mirror (jobs/mirror.py), every state change is also written to the data volume, so the
records can be restored if Redis loses its data; `rev` counts the state changes, so the newest wins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import redis

from jobs import scripts
from jobs.records import (
    ACTIVE_STATES,
    CANCELLED,
    FAILED,
    KINDS,
    QUEUED,
    RELEASED_LOCK_PREFIXES,
    RUNNING,
    TERMINAL_STATES,
    decode_job,
    flatten,
    new_job_id,
)

log = logging.getLogger("jobs")


class RecordSink(Protocol):
    """Where a record is copied after each state change (jobs/mirror.py's JobMirror on the volume)."""

    def write(self, job: Mapping[str, Any]) -> None: ...


class JobStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "ddpm",
        ttl_s: int = 30 * 24 * 3600,
        mirror: RecordSink | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.mirror = mirror
        self._create = client.register_script(scripts.CREATE)
        self._start = client.register_script(scripts.START)
        self._cancel = client.register_script(scripts.CANCEL)
        self._progress = client.register_script(scripts.PROGRESS)
        self._finish = client.register_script(scripts.FINISH)
        self._renew = client.register_script(scripts.RENEW)
        self._reclaim = client.register_script(scripts.RECLAIM)
        self._restore = client.register_script(scripts.RESTORE)
        self._republish = client.register_script(scripts.REPUBLISH)
        self._release = client.register_script(scripts.RELEASE)

    @classmethod
    def from_url(
        cls, url: str, prefix: str, ttl_s: int, timeout_s: float = 3.0, mirror: RecordSink | None = None
    ) -> JobStore:
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            health_check_interval=30,
        )
        return cls(client, prefix, ttl_s, mirror)

    # keys
    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def running_key(self) -> str:
        return f"{self.prefix}:running"

    def lock_key(self, name: str) -> str:
        return f"{self.prefix}:lock:{name}"

    def lease_key(self, job_id: str) -> str:
        return f"{self.prefix}:lease:{job_id}"

    @property
    def restored_key(self) -> str:
        return f"{self.prefix}:restored"

    # API side
    def create(
        self,
        kind: str,
        params: dict[str, Any],
        *,
        lock: str | None = None,
        join_states: Iterable[str] = ACTIVE_STATES,
        replace: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[str, bool]:
        """Create a queued job; returns (job id, created).

        With `lock`, an existing job that owns the lock and is in one of `join_states` is answered
        instead (created=False); `replace` names an owner the caller knows to be stale.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        job_id, now = new_job_id(), time.time()
        record = {
            "id": job_id,
            "kind": kind,
            "state": QUEUED,
            "params": params,
            "progress": 0.0,
            "message": "queued; waiting for a worker",
            "created": now,
            "updated": now,
            "rev": 1,
            **({"lock": lock} if lock else {}),  # so a restored active job takes its lock back
            **(extra or {}),
        }
        owner = self._create(
            keys=[self.job_key(job_id), self.index_key, self.lock_key(lock or "-")],
            args=[
                job_id,
                now,
                self.job_key(""),
                self.ttl_s,
                ",".join(join_states),
                replace or "",
                "1" if lock else "0",
                *flatten(record),
            ],
        )
        if owner == job_id:
            self._mirror(job_id)
        return owner, owner == job_id

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.client.hgetall(self.job_key(job_id))
        return decode_job(raw) if raw else None

    def list(
        self, limit: int = 50, kind: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; ids whose records expired are dropped from the index on the way."""
        jobs: list[dict[str, Any]] = []
        start, page = 0, max(limit, 50)
        while len(jobs) < limit:
            ids = self.client.zrevrange(self.index_key, start, start + page - 1)
            if not ids:
                break
            start += page
            pipe = self.client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self.job_key(job_id))
            expired = []
            for job_id, raw in zip(ids, pipe.execute(), strict=True):
                if not raw:
                    expired.append(job_id)
                    continue
                job = decode_job(raw)
                if (kind is None or job["kind"] == kind) and (state is None or job["state"] == state):
                    jobs.append(job)
            if expired:
                self.client.zrem(self.index_key, *expired)
                start -= len(expired)
        return jobs[:limit]

    def cancel(self, job_id: str) -> str | None:
        """None if unknown; 'cancelled' (was queued), 'cancelling' (was running) or the terminal state."""
        outcome = self._cancel(keys=[self.job_key(job_id)], args=[time.time(), self.ttl_s]) or None
        if outcome == CANCELLED:
            self._ended(job_id)
        elif outcome == "cancelling":
            self._mirror(job_id)
        return outcome

    def fail(self, job_id: str, error: str) -> None:
        self.finish(job_id, FAILED, error=error, message="failed")

    def lock_owner(self, lock: str) -> str | None:
        return self.client.get(self.lock_key(lock))

    def set_lock(self, lock: str, job_id: str) -> None:
        self.client.set(self.lock_key(lock), job_id, ex=self.ttl_s)

    # worker side
    def start(self, job_id: str, worker: str, token: str, lease_s: float, max_attempts: int) -> str:
        """'running' or 'resumed' when this worker now owns the job (under `token`), else why not:
        'busy' (another live worker owns it), 'exhausted' (failed: too many attempts), or its state."""
        outcome = self._start(
            keys=[self.job_key(job_id), self.running_key, self.lease_key(job_id)],
            args=[time.time(), worker, _ms(lease_s), job_id, token, max_attempts, self.ttl_s],
        )
        if outcome == "exhausted":
            self._ended(job_id)
        elif outcome in ("running", "resumed"):
            self._mirror(job_id)
        return outcome

    def renew(self, job_id: str, token: str, lease_s: float) -> bool:
        """Extend the lease; False when the job is no longer this token's (taken over, finished)."""
        return bool(
            self._renew(
                keys=[self.job_key(job_id), self.lease_key(job_id)], args=[token, _ms(lease_s), time.time()]
            )
        )

    def reclaim(self, job_id: str, max_attempts: int, worker: str | None = None) -> str:
        """Re-queue a running job whose lease expired (or, with `worker`, whose process that worker
        saw die). 'requeued' means the caller must publish it again; see scripts.RECLAIM for the rest."""
        outcome = self._reclaim(
            keys=[self.job_key(job_id), self.running_key, self.lease_key(job_id)],
            args=[time.time(), max_attempts, self.ttl_s, job_id, worker or ""],
        )
        if outcome in (FAILED, CANCELLED):
            self._ended(job_id)
        elif outcome == "requeued":
            self._mirror(job_id)
        return outcome

    def republish(self, job_id: str, queued_before: float, max_times: int) -> str:
        """Claim a queued job whose broker message is gone, if it has been queued since before
        `queued_before`: 'republished' means the caller must publish it again; 'failed' that it was
        lost max_times already (the record says so); else 'recent' or 'not_queued'."""
        outcome = self._republish(
            keys=[self.job_key(job_id)], args=[time.time(), queued_before, max_times, self.ttl_s]
        )
        if outcome == FAILED:
            self._ended(job_id)
        elif outcome == "republished":
            self._mirror(job_id)
        return outcome

    def progress(self, job_id: str, token: str = "", **fields: Any) -> bool:
        now = time.time()
        args = [token, *flatten({**fields, "updated": now, "heartbeat": now})]
        return bool(self._progress(keys=[self.job_key(job_id)], args=args))

    def finish(self, job_id: str, state: str, token: str = "", **fields: Any) -> bool:
        """Record how the job ended; with a token, only while that token still owns the job."""
        if state not in TERMINAL_STATES:
            raise ValueError(f"{state!r} is not a terminal state")
        now = time.time()
        args = flatten({"state": state, **fields, "finished": now, "updated": now})
        landed = bool(
            self._finish(
                keys=[self.job_key(job_id), self.running_key, self.lease_key(job_id)],
                args=[self.ttl_s, job_id, token, *args],
            )
        )
        if landed:
            self._ended(job_id)
        return landed

    def restore(self, job: Mapping[str, Any], lease_s: float, now: float | None = None) -> bool:
        """Put back a record Redis lost (see scripts.RESTORE); False when Redis has it or it has expired."""
        now = time.time() if now is None else now
        state, ttl = job["state"], 0
        if state in TERMINAL_STATES:
            ttl = round(float(job.get("finished") or job.get("updated") or now) + self.ttl_s - now)
            if ttl <= 0:
                return False
        lock = job.get("lock") if state in ACTIVE_STATES else None
        return bool(
            self._restore(
                keys=[
                    self.job_key(job["id"]),
                    self.index_key,
                    self.running_key,
                    self.lease_key(job["id"]),
                    self.lock_key(lock or "-"),
                ],
                args=[
                    job["id"],
                    job.get("created") or now,
                    state,
                    ttl,
                    (job.get("lease") or "") if state == RUNNING else "",
                    _ms(lease_s),
                    self.ttl_s if lock else 0,
                    *flatten(job),
                ],
            )
        )

    def _ended(self, job_id: str) -> None:
        """After a job reached a terminal state: copy it to the volume and release its cache lock."""
        self._mirror(job_id)
        try:
            lock = self.client.hget(self.job_key(job_id), "lock")
            if lock and lock.startswith(RELEASED_LOCK_PREFIXES):
                self._release(keys=[self.lock_key(lock)], args=[job_id])
        except redis.RedisError as err:  # the lock is harmless: an ended owner is never joined again
            log.warning("job %s: its lock was not released (%s)", job_id, err)

    def _mirror(self, job_id: str) -> None:
        """Copy the record, as it is after a state change, to the volume. A failure here is logged, not
        raised: the change itself has happened, and only the copy a restore would use is stale."""
        if self.mirror is None:
            return
        try:
            raw = self.client.hgetall(self.job_key(job_id))
            if raw:
                self.mirror.write(decode_job(raw))
        except (OSError, redis.RedisError) as err:
            log.warning("job %s: its record was not copied to the volume (%s)", job_id, err)

    def cancel_requested(self, job_id: str) -> bool:
        return self.client.hget(self.job_key(job_id), "cancel_requested") == "1"

    def running_ids(self) -> list[str]:
        return sorted(self.client.smembers(self.running_key))

    # restoring from the volume (jobs/mirror.py)
    def holds_restored_records(self) -> bool:
        """False on a Redis that lost its data (or a new one) until a restore has run against it."""
        return bool(self.client.exists(self.restored_key))

    def mark_restored(self) -> None:
        self.client.set(self.restored_key, str(time.time()))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
