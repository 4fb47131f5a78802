"""Progress reporting, cancellation and the job's lease, as the engine's hooks expect them."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from ddpm.errors import Cancelled
from jobs.store import JobStore

log = logging.getLogger("workers")

# Exit status of a pool process that stopped itself because it no longer owns its job.
FENCED_EXIT = 75


def fence(job_id: str, reason: str) -> None:
    """Stop this process at once, writing nothing more: another worker may own the job by now.

    A clean stop would let the engine save a checkpoint and rewrite run.json, racing the new owner on
    the same files. Celery's parent process sees its pool process die and starts another.
    """
    log.error("job %s: %s; stopping this process without writing anything more", job_id, reason)
    logging.shutdown()
    os._exit(FENCED_EXIT)


class JobReporter:
    """Writes a job's progress to Redis at most once per `interval_s` (a final write always lands),
    and answers whether the user asked the job to stop. A Redis blip neither stops nor crashes the job."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        interval_s: float,
        token: str = "",
        on_lost: Callable[[str, str], None] = fence,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.interval_s = interval_s
        self.token = token
        self.on_lost = on_lost
        self._last = 0.0
        self._failing = False  # logs an outage once, not at every step

    def __call__(self, force: bool = False, **fields: Any) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.interval_s:
            try:
                landed = self.store.progress(self.job_id, self.token, **fields)
            except redis.RedisError as err:
                if not self._failing:
                    log.warning("job %s: progress not written until Redis answers (%s)", self.job_id, err)
                self._failing = True
                return
            if self._failing:
                log.info("job %s: progress written again", self.job_id)
            self._failing, self._last = False, now
            if not landed and self.token and not self._still_mine():
                self.on_lost(self.job_id, "its record no longer names this worker as owner")

    def _still_mine(self) -> bool:
        """A refused progress write means the job is no longer running under our token (a cancel that
        finished it would be ours to write, so that is the only way)."""
        try:
            return self.store.client.hget(self.store.job_key(self.job_id), "lease") == self.token
        except redis.RedisError:
            return True  # unknown: the lease thread decides

    def cancel_requested(self) -> bool:
        try:
            return self.store.cancel_requested(self.job_id)
        except redis.RedisError:
            return False  # cannot tell now; asked again at the next step

    def raise_if_cancelled(self) -> None:
        if self.cancel_requested():
            raise Cancelled(f"job {self.job_id} was cancelled")


class JobLease:
    """While a job runs, renew its lease from a thread (so a long silent phase, a dataset download or
    reference statistics, is never mistaken for a dead worker), and fence this process off when the
    lease is lost: when another worker took the job over, or when no renewal has landed for so long
    that one could have (the lease may have expired, so writing on would race a new owner)."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        token: str,
        lease_s: float,
        every_s: float,
        on_lost: Callable[[str, str], None] = fence,
    ) -> None:
        self.store, self.job_id, self.token = store, job_id, token
        self.lease_s, self.every_s, self.on_lost = lease_s, every_s, on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-lease-{job_id[:8]}", daemon=True)

    def _run(self) -> None:
        # Measured from before the request was sent: the lease's expiry in Redis is no earlier.
        renewed = time.monotonic()
        while not self._stop.wait(self.every_s):
            sent = time.monotonic()
            try:
                if not self.store.renew(self.job_id, self.token, self.lease_s):
                    if not self._stop.is_set():
                        self.on_lost(self.job_id, "its lease was taken over or the job ended elsewhere")
                    return
                renewed = sent
            except redis.RedisError as err:
                silent = time.monotonic() - renewed
                log.warning("job %s: lease not renewed for %.0fs (%s)", self.job_id, silent, err)
                # Fence one renewal interval before the lease can lapse: nobody can reclaim it sooner.
                if silent >= self.lease_s - self.every_s and not self._stop.is_set():
                    self.on_lost(self.job_id, f"its lease could not be renewed for {silent:.0f}s")
                    return

    def __enter__(self) -> JobLease:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
