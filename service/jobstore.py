"""Job records in Redis under our own keys: what a user sees never depends on Celery's result backend.

Keys (all under the configured prefix, `ddpm` by default):
  <p>:job:<id>        hash: kind, state, params, progress, step, total, loss, eta_s, message, error,
                      result, created/started/finished/updated/heartbeat, cancel_requested
  <p>:jobs            sorted set of job ids by creation time (GET /jobs)
  <p>:running         set of the ids of running jobs (checked for lost workers)
  <p>:lease:<id>      a running job's lease: the owner's token, expiring unless its worker renews it
  <p>:lock:<name>     the id of the job that owns a resource: a sample cache entry, a training run
  <p>:worker:<host>   a worker's heartbeat (expires when the worker goes away)
  <p>:restored        present while this Redis holds the volume's job records (service/jobmirror.py)
  <p>:pruned          held for an hour by the worker that deleted expired records' files from the volume
  <p>:batchable:<key> queued sampling jobs a worker may sample together (service/batching.py)

Every state change is one Lua script, so the API (create, cancel) and the workers (start, progress,
finish) never race: a queued job cancelled by the API is never started by a worker, and two identical
sample requests get one job.

Ownership: start() gives a running job a fresh token (the hash's `lease` field) and a lease key that
expires after lease_ms unless the owner renews it. Only the token's holder may write progress or finish
the job. A job whose lease key expired has lost its worker: reclaim() puts it back in the queue (or
fails it after max_attempts starts), and a new start() hands it a new token, which fences the old owner
out of the record. See docs/reliability.md.

With a mirror (service/jobmirror.py), every state change is also written to the data volume, so the
records can be restored if Redis loses its data; `rev` counts the state changes, so the newest wins.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from service.jobmirror import JobMirror

log = logging.getLogger("service")

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE_STATES = (QUEUED, RUNNING)
TERMINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)
STATES = ACTIVE_STATES + TERMINAL_STATES

TRAIN, SAMPLE, FID = "train", "sample", "fid"
KINDS = (TRAIN, SAMPLE, FID)
# The API enqueues by these names (send_task); workers/tasks.py registers tasks under them.
TASK_NAMES = {TRAIN: "ddpm.train", SAMPLE: "ddpm.sample", FID: "ddpm.fid"}

JSON_FIELDS = ("params", "result")
FLOAT_FIELDS = ("progress", "loss", "eta_s", "created", "started", "finished", "updated", "heartbeat")
INT_FIELDS = ("step", "total", "attempts", "rev")

# Create a job; with a lock, first see whether an active job already owns it (then answer its id).
# KEYS: job, index, lock. ARGV: id, created, job key prefix, lock ttl, joinable states (csv),
# id the caller may replace, use lock (0/1), then field/value pairs of the new record.
_CREATE = """
if ARGV[7] == '1' then
  local current = redis.call('GET', KEYS[3])
  if current and current ~= ARGV[6] then
    local state = redis.call('HGET', ARGV[3] .. current, 'state')
    if state and string.find(',' .. ARGV[5] .. ',', ',' .. state .. ',', 1, true) then
      return current
    end
  end
  redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[4])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return ARGV[1]
"""

# queued -> running with a new lease; a running job whose lease expired (its worker died and the
# broker redelivered the message first) is taken over. A job started max_attempts times already fails.
# KEYS: job, running set, lease. ARGV: now, worker, lease ms, id, token, max attempts, ttl.
_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'running' and redis.call('EXISTS', KEYS[3]) == 1 then return 'busy' end
if state ~= 'queued' and state ~= 'running' then return state end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[6]) then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished', ARGV[1], 'updated', ARGV[1], 'message', 'failed',
             'error', 'gave up after ' .. attempts .. ' attempts: each time, its worker was lost mid-job ' ..
             '(killed, out of memory, host lost); last worker: ' .. (redis.call('HGET', KEYS[1], 'worker') or '?'))
  redis.call('HINCRBY', KEYS[1], 'rev', 1)
  redis.call('SREM', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  return 'exhausted'
end
redis.call('HSETNX', KEYS[1], 'started', ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'running', 'updated', ARGV[1], 'heartbeat', ARGV[1],
           'worker', ARGV[2], 'lease', ARGV[5],
           'message', attempts > 0 and 'resumed on a new worker' or 'started')
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[3])
if attempts > 0 then return 'resumed' end
return 'running'
"""

# The owner renews its lease (and re-creates it if it lapsed while nobody reclaimed the job).
# KEYS: job, lease. ARGV: token, lease ms, now.
_RENEW = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'heartbeat', ARGV[3])
return 1
"""

# A running job whose lease expired goes back to the queue (a cancel it was asked for is honoured;
# after max_attempts starts it fails). With ARGV[5] (a worker name) the lease is not checked: that
# worker knows its process running the job died. Returns what it did: 'requeued', 'failed', 'cancelled',
# or why not: 'alive', 'other' (another worker's), 'not_running' (finished, re-queued or unknown by now).
# KEYS: job, running set, lease. ARGV: now, max attempts, ttl, id, worker or ''.
_RECLAIM = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' then
  redis.call('SREM', KEYS[2], ARGV[4])
  return 'not_running'
end
local worker = redis.call('HGET', KEYS[1], 'worker') or '?'
if ARGV[5] ~= '' then
  if worker ~= ARGV[5] then return 'other' end
elseif redis.call('EXISTS', KEYS[3]) == 1 then
  return 'alive'
end
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[1], 'rev', 1)
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished', ARGV[1], 'updated', ARGV[1],
             'message', 'cancelled (its worker ' .. worker .. ' was lost while stopping)')
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 'cancelled'
end
if attempts >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished', ARGV[1], 'updated', ARGV[1], 'message', 'failed',
             'error', 'gave up after ' .. attempts .. ' attempts: each time, its worker was lost mid-job ' ..
             '(killed, out of memory, host lost); last worker: ' .. worker)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 'failed'
end
redis.call('HSET', KEYS[1], 'state', 'queued', 'updated', ARGV[1],
           'message', 're-queued: its worker ' .. worker .. ' was lost (attempt ' .. attempts .. ' of ' ..
           ARGV[2] .. '); it continues from its last checkpoint')
return 'requeued'
"""

# queued -> cancelled at once; running -> flag that the worker polls between steps.
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished', ARGV[1], 'updated', ARGV[1],
             'message', 'cancelled before it started')
  redis.call('HINCRBY', KEYS[1], 'rev', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 'cancelled'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1', 'updated', ARGV[1],
             'message', 'cancel requested; stopping after the current step')
  redis.call('HINCRBY', KEYS[1], 'rev', 1)
  return 'cancelling'
end
return state
"""

# Progress only lands on a running job held by this token (never resurrects an expired or finished
# record, never overwrites the record of a worker that took the job over). ARGV: token, fields.
_PROGRESS = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

# KEYS: job, running set, lease. ARGV: ttl, id, token ('' = the API, which owns queued jobs), fields.
_FINISH = """
if not redis.call('HGET', KEYS[1], 'state') then
  redis.call('SREM', KEYS[2], ARGV[2])
  return 0
end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'lease') ~= ARGV[3] then return 0 end
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


# Put back a record Redis lost, unless Redis has one (a live record is always newer than the volume's).
# A running job gets a lease under its old owner's token: if that process still runs it carries on,
# otherwise the lease lapses and the sweep re-queues the job. No new owner can start it before then.
# KEYS: job, index, running set, lease, lock. ARGV: id, created, state, seconds to live (finished
# jobs; 0 = none), lease token, lease ms, lock ttl (0 = no lock), then field/value pairs.
_RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if ARGV[3] == 'running' then
  redis.call('SADD', KEYS[3], ARGV[1])
  if ARGV[5] ~= '' then redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6]) end
end
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
if tonumber(ARGV[7]) > 0 then redis.call('SET', KEYS[5], ARGV[1], 'NX', 'EX', ARGV[7]) end
return 1
"""


def new_job_id() -> str:
    return uuid.uuid4().hex


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _flatten(fields: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in fields.items():
        if value is not None:
            out += [key, _encode(value)]
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


class JobStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "ddpm",
        ttl_s: int = 30 * 24 * 3600,
        mirror: JobMirror | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.mirror = mirror
        self._create = client.register_script(_CREATE)
        self._start = client.register_script(_START)
        self._cancel = client.register_script(_CANCEL)
        self._progress = client.register_script(_PROGRESS)
        self._finish = client.register_script(_FINISH)
        self._renew = client.register_script(_RENEW)
        self._reclaim = client.register_script(_RECLAIM)
        self._restore = client.register_script(_RESTORE)

    @classmethod
    def from_url(
        cls, url: str, prefix: str, ttl_s: int, timeout_s: float = 3.0, mirror: JobMirror | None = None
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

    def worker_key(self, hostname: str) -> str:
        return f"{self.prefix}:worker:{hostname}"

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
                *_flatten(record),
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
        if outcome in (CANCELLED, "cancelling"):
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
        if outcome in ("running", "resumed", "exhausted"):
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
        saw die). 'requeued' means the caller must publish it again; see _RECLAIM for the rest."""
        outcome = self._reclaim(
            keys=[self.job_key(job_id), self.running_key, self.lease_key(job_id)],
            args=[time.time(), max_attempts, self.ttl_s, job_id, worker or ""],
        )
        if outcome in ("requeued", FAILED, CANCELLED):
            self._mirror(job_id)
        return outcome

    def progress(self, job_id: str, token: str = "", **fields: Any) -> bool:
        now = time.time()
        args = [token, *_flatten({**fields, "updated": now, "heartbeat": now})]
        return bool(self._progress(keys=[self.job_key(job_id)], args=args))

    def finish(self, job_id: str, state: str, token: str = "", **fields: Any) -> bool:
        """Record how the job ended; with a token, only while that token still owns the job."""
        if state not in TERMINAL_STATES:
            raise ValueError(f"{state!r} is not a terminal state")
        now = time.time()
        args = _flatten({"state": state, **fields, "finished": now, "updated": now})
        landed = bool(
            self._finish(
                keys=[self.job_key(job_id), self.running_key, self.lease_key(job_id)],
                args=[self.ttl_s, job_id, token, *args],
            )
        )
        if landed:
            self._mirror(job_id)
        return landed

    def restore(self, job: Mapping[str, Any], lease_s: float, now: float | None = None) -> bool:
        """Put back a record Redis lost (see _RESTORE); False when Redis has it or it has expired."""
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
                    *_flatten(job),
                ],
            )
        )

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

    # workers' heartbeats
    def beat(self, hostname: str, info: dict[str, Any], ttl_s: int) -> None:
        self.client.set(self.worker_key(hostname), json.dumps({**info, "seen": time.time()}), ex=ttl_s)

    def forget_worker(self, hostname: str) -> None:
        self.client.delete(self.worker_key(hostname))

    def workers(self) -> list[dict[str, Any]]:
        keys = sorted(self.client.scan_iter(match=self.worker_key("*"), count=100))
        values = self.client.mget(keys) if keys else []
        return [json.loads(v) for v in values if v]

    def running_ids(self) -> list[str]:
        return sorted(self.client.smembers(self.running_key))

    # restoring from the volume (service/jobmirror.py)
    def holds_restored_records(self) -> bool:
        """False on a Redis that lost its data (or a new one) until a restore has run against it."""
        return bool(self.client.exists(self.restored_key))

    def mark_restored(self) -> None:
        self.client.set(self.restored_key, str(time.time()))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
