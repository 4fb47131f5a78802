"""Progress reporting and cancellation, as the engine's hooks expect them."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from ddpm.errors import Cancelled
from service.jobstore import JobStore


class JobReporter:
    """Writes a job's progress to Redis at most once per `interval_s` (a final write always lands),
    and answers whether the user asked the job to stop."""

    def __init__(self, store: JobStore, job_id: str, interval_s: float) -> None:
        self.store = store
        self.job_id = job_id
        self.interval_s = interval_s
        self._last = 0.0

    def __call__(self, force: bool = False, **fields: Any) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.interval_s:
            self.store.progress(self.job_id, **fields)
            self._last = now

    def cancel_requested(self) -> bool:
        return self.store.cancel_requested(self.job_id)

    def raise_if_cancelled(self) -> None:
        if self.cancel_requested():
            raise Cancelled(f"job {self.job_id} was cancelled")


class JobHeartbeat:
    """While a job runs, touch its heartbeat from a thread, so a long silent phase (a dataset
    download, building reference statistics) is never mistaken for a dead worker."""

    def __init__(self, store: JobStore, job_id: str, every_s: float) -> None:
        self.store, self.job_id, self.every_s = store, job_id, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-heartbeat-{job_id[:8]}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            with contextlib.suppress(Exception):  # a Redis blip: the next beat will do
                self.store.touch(self.job_id)

    def __enter__(self) -> JobHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
