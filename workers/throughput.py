"""How fast a running job works, for its record (GET /jobs/{id}) and for GET /metrics.

A job tells `Throughput` the work of each step (a training batch, a sampler's network call). It
answers the rates over the last few seconds (written on the job record with the progress) and adds the
work done to Redis counters (jobs/telemetry.py) every few seconds and at the end, so Prometheus can
take its own rates over them too.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable

import redis

from jobs import telemetry
from jobs.store import JobStore
from jobs.telemetry import IMAGE_STEPS, IMAGES

log = logging.getLogger("workers")

WORK_FLUSH_S = 5.0  # how often the work counters in Redis are added to (and once at the end)
RATE_WINDOW_S = 10.0  # long enough to even out steps of uneven cost, short enough to follow changes
# The job record's `rate_phase` says what its rates measure (FID's other phases are not sampling).
TRAIN_PHASE, SAMPLE_PHASE = "train", "sample"


class RateWindow:
    """Units per second over the last `window_s` seconds of (time, cumulative units) readings."""

    def __init__(self, window_s: float = RATE_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self.readings: deque[tuple[float, float]] = deque()

    def update(self, done: float) -> float | None:
        now = self.clock()
        self.readings.append((now, done))
        # Keep one reading at or before the window's start, so the rate always spans the whole window.
        while len(self.readings) > 2 and self.readings[1][0] <= now - self.window_s:
            self.readings.popleft()
        (t0, d0), (t1, d1) = self.readings[0], self.readings[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None


class Throughput:
    """Rates of one phase of a job (training, sampling) and its tally of work for /metrics."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        kind: str,
        phase: str,
        flush_every_s: float = WORK_FLUSH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.prefix, self.kind, self.phase = client, prefix, kind, phase
        self.flush_every_s = flush_every_s
        self.clock = clock
        self.windows = {IMAGES: RateWindow(clock=clock), IMAGE_STEPS: RateWindow(clock=clock)}
        self._done = {IMAGES: 0.0, IMAGE_STEPS: 0.0}
        self._unflushed = {IMAGES: 0.0, IMAGE_STEPS: 0.0}
        self._flushed_at = clock()
        self._failing = False

    @classmethod
    def of(cls, store: JobStore, kind: str, phase: str) -> Throughput:
        return cls(store.client, store.prefix, kind, phase)

    def add(self, images: float, image_steps: float | None = None) -> dict[str, float | str]:
        """Work done since the last call -> the job record's fields (rates once two readings exist)."""
        fields: dict[str, float | str] = {"rate_phase": self.phase}
        for unit, amount in ((IMAGES, images), (IMAGE_STEPS, image_steps)):
            if amount is None:
                continue
            self._done[unit] += amount
            self._unflushed[unit] += amount
            rate = self.windows[unit].update(self._done[unit])
            if rate is not None:
                fields[f"{unit}_per_s"] = round(rate, 3)
        if self.clock() - self._flushed_at >= self.flush_every_s:
            self.flush()
        return fields

    def flush(self) -> None:
        """Add the work done since the last flush to the Redis counters (a Redis blip keeps it for later)."""
        if not any(self._unflushed.values()):
            return
        try:
            telemetry.add_work(self.client, self.prefix, self.kind, self._unflushed)
        except redis.RedisError as err:
            if not self._failing:
                log.warning("work counters not written until Redis answers (%s)", err)
            self._failing = True
            return
        self._failing = False
        self._unflushed = dict.fromkeys(self._unflushed, 0.0)
        self._flushed_at = self.clock()


class SamplingMeter:
    """A sampler's progress (network calls done of total) as images and image-steps: every batch of
    `batch_size` runs the same calls, so the work done is proportional to the calls made."""

    def __init__(self, throughput: Throughput, n: int, batch_size: int) -> None:
        self.throughput = throughput
        self.n, self.batches = n, math.ceil(n / batch_size)
        self._calls = 0

    def update(self, done: int, total: int) -> dict[str, float | str]:
        calls, self._calls = done - self._calls, done
        fields = self.throughput.add(self.n * calls / total, self.n * calls / self.batches)
        if done >= total:
            self.throughput.flush()
        return fields
