"""Workers' throughput: rolling rates for the job record, work totals in Redis for /metrics."""

from __future__ import annotations

import uuid

import pytest
import redis

from jobs import telemetry
from jobs.settings import Settings
from workers.throughput import SAMPLE_PHASE, RateWindow, SamplingMeter, Throughput


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_window_follows_the_last_seconds() -> None:
    clock = Clock()
    window = RateWindow(window_s=10.0, clock=clock)
    assert window.update(0) is None  # one reading is no rate
    for second in range(1, 21):  # 5 units/s for 20 s ...
        clock.now = second
        rate = window.update(5 * second)
    assert rate == pytest.approx(5.0)
    for second in range(21, 32):  # ... then 1 unit/s: after a window, only the new pace counts
        clock.now = second
        rate = window.update(100 + (second - 20))
    assert rate == pytest.approx(1.0)


def test_sampling_work_is_counted_once_and_flushed_at_the_end(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    prefix = f"{settings.key_prefix}:throughput-{uuid.uuid4().hex[:6]}"
    clock = Clock()
    # 10 images in batches of 4: three batches of 5 network calls each, 15 calls in all.
    meter = SamplingMeter(Throughput(client, prefix, "sample", SAMPLE_PHASE, clock=clock), n=10, batch_size=4)
    fields = {}
    for done in range(1, 16):
        clock.now = done * 0.5
        fields = meter.update(done, 15)
    assert fields["rate_phase"] == SAMPLE_PHASE
    assert fields["images_per_s"] == pytest.approx(
        10 / 15 / 0.5, rel=1e-3
    )  # 10 images over 15 calls, 2 calls/s
    assert fields["image_steps_per_s"] == pytest.approx(10 / 3 / 0.5, rel=1e-3)  # an average batch per call
    work = telemetry.read_recorded(client, prefix).work
    assert work == {("sample", "images"): pytest.approx(10), ("sample", "image_steps"): pytest.approx(50)}
    client.delete(telemetry.work_key(prefix))
