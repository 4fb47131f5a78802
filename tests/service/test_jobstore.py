"""The job records' state machine, on a real Redis: the races the Lua scripts exist to prevent."""

from __future__ import annotations

import time

import pytest

from service.jobstore import JobStore
from service.settings import Settings
from workers.progress import JobReporter


@pytest.fixture
def store(settings: Settings, request: pytest.FixtureRequest) -> JobStore:
    prefix = f"{settings.key_prefix}:unit-{request.node.name[:40]}"
    return JobStore.from_url(settings.redis_url, prefix, ttl_s=600)


def test_cancelled_queued_job_is_never_started(store: JobStore) -> None:
    job_id, created = store.create("train", {"x": 1})
    assert created and store.get(job_id)["state"] == "queued"
    assert store.cancel(job_id) == "cancelled"
    assert store.start(job_id, "w1", stale_after_s=60) == "cancelled"
    job = store.get(job_id)
    assert job["state"] == "cancelled" and "started" not in job
    assert store.client.ttl(store.job_key(job_id)) > 0  # finished records expire


def test_running_job_gets_a_cancel_flag_and_one_worker(store: JobStore) -> None:
    job_id, _ = store.create("sample", {})
    assert store.start(job_id, "w1", stale_after_s=60) == "running"
    assert store.start(job_id, "w2", stale_after_s=60) == "busy"  # a duplicate delivery does not run it twice
    assert not store.cancel_requested(job_id)
    assert store.cancel(job_id) == "cancelling"
    assert store.cancel_requested(job_id) and store.get(job_id)["state"] == "running"
    assert store.finish(job_id, "cancelled", message="cancelled")
    assert store.cancel(job_id) == "cancelled"
    assert not store.progress(job_id, step=5)  # progress never lands on a finished job
    assert "step" not in store.get(job_id)


def test_lost_worker_job_is_taken_over_after_silence(store: JobStore) -> None:
    job_id, _ = store.create("train", {})
    assert store.start(job_id, "w1", stale_after_s=60) == "running"
    store.client.hset(store.job_key(job_id), "heartbeat", time.time() - 120)
    assert store.stale_running(60) == [job_id]
    assert store.start(job_id, "w2", stale_after_s=60) == "resumed"
    job = store.get(job_id)
    assert job["worker"] == "w2" and job["attempts"] == 2


def test_lock_joins_active_jobs_and_is_released_by_finished_ones(store: JobStore) -> None:
    first, created = store.create("sample", {}, lock="sample:k")
    assert created
    again, created = store.create("sample", {}, lock="sample:k")
    assert (again, created) == (first, False)
    store.start(first, "w", 60)
    store.finish(first, "failed", error="boom")
    retry, created = store.create("sample", {}, lock="sample:k")
    assert created and retry != first and store.lock_owner("sample:k") == retry
    # A joinable owner can still be replaced by name (the caller knows its output is gone).
    forced, created = store.create("sample", {}, lock="sample:k", replace=retry)
    assert created and store.lock_owner("sample:k") == forced


def test_listing_skips_expired_records(store: JobStore) -> None:
    ids = [store.create("fid", {"i": i})[0] for i in range(5)]
    store.client.delete(store.job_key(ids[1]))
    listed = [job["id"] for job in store.list(limit=10)]
    assert listed == [ids[4], ids[3], ids[2], ids[0]]
    assert ids[1] not in store.client.zrange(store.index_key, 0, -1)
    assert [j["id"] for j in store.list(limit=2)] == [ids[4], ids[3]]


def test_reporter_throttles_writes(store: JobStore) -> None:
    job_id, _ = store.create("train", {})
    store.start(job_id, "w", 60)
    writes = []
    original = store.progress
    store.progress = lambda jid, **fields: writes.append(fields) or original(jid, **fields)  # type: ignore[method-assign]
    reporter = JobReporter(store, job_id, interval_s=0.2)
    started = time.monotonic()
    step = 0
    while time.monotonic() - started < 0.5:
        step += 1
        reporter(step=step)
        time.sleep(0.005)
    reporter(force=True, step=step + 1)
    assert step > 20 and 3 <= len(writes) <= 5  # ~every 0.2 s, plus the forced final write
    assert store.get(job_id)["step"] == step + 1


def test_workers_mark_jobs_of_lost_workers_failed(store: JobStore) -> None:
    from workers.app import _fail_abandoned_jobs

    lost, _ = store.create("train", {"run_id": "r"})
    alive, _ = store.create("sample", {})
    store.start(lost, "dead-worker", 60)
    store.start(alive, "live-worker", 60)
    store.client.hset(store.job_key(lost), "heartbeat", time.time() - 3600)
    _fail_abandoned_jobs(store)
    job = store.get(lost)
    assert job["state"] == "failed" and "dead-worker" in job["error"] and "resume" in job["error"]
    assert store.get(alive)["state"] == "running"
    assert store.start(lost, "w2", 60) == "failed"  # a redelivered message is dropped
