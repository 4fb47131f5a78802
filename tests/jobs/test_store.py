"""The job records' state machine, on a real Redis: the races the Lua scripts exist to prevent."""

from __future__ import annotations

import time

import pytest

from jobs.settings import Settings
from jobs.store import JobStore
from workers.progress import JobReporter


@pytest.fixture
def store(settings: Settings, request: pytest.FixtureRequest) -> JobStore:
    prefix = f"{settings.key_prefix}:unit-{request.node.name[:40]}"
    return JobStore.from_url(settings.redis_url, prefix, ttl_s=600)


def test_cancelled_queued_job_is_never_started(store: JobStore) -> None:
    job_id, created = store.create("train", {"x": 1})
    assert created and store.get(job_id)["state"] == "queued"
    assert store.cancel(job_id) == "cancelled"
    assert store.start(job_id, "w1", "t1", 60, 3) == "cancelled"
    job = store.get(job_id)
    assert job["state"] == "cancelled" and "started" not in job
    assert store.client.ttl(store.job_key(job_id)) > 0  # finished records expire


def test_running_job_gets_a_cancel_flag_and_one_worker(store: JobStore) -> None:
    job_id, _ = store.create("sample", {})
    assert store.start(job_id, "w1", "t1", 60, 3) == "running"
    assert store.start(job_id, "w2", "t2", 60, 3) == "busy"  # a duplicate delivery does not run it twice
    assert not store.cancel_requested(job_id)
    assert store.cancel(job_id) == "cancelling"
    assert store.cancel_requested(job_id) and store.get(job_id)["state"] == "running"
    assert not store.finish(job_id, "cancelled", token="t2", message="cancelled")  # not its job
    assert store.finish(job_id, "cancelled", token="t1", message="cancelled")
    assert not store.client.exists(store.lease_key(job_id))
    assert store.cancel(job_id) == "cancelled"
    assert not store.progress(job_id, step=5)  # progress never lands on a finished job
    assert "step" not in store.get(job_id)


def test_an_expired_lease_is_taken_over_and_fences_the_old_owner(store: JobStore) -> None:
    job_id, _ = store.create("train", {})
    assert store.start(job_id, "w1", "t1", 0.2, 3) == "running"
    assert store.renew(job_id, "t1", 0.2) and store.progress(job_id, "t1", step=1)
    time.sleep(0.3)  # w1 stopped renewing
    assert store.start(job_id, "w2", "t2", 60, 3) == "resumed"  # a redelivered message
    job = store.get(job_id)
    assert job["worker"] == "w2" and job["attempts"] == 2 and job["state"] == "running"
    # w1, if it still runs, can no longer renew, report or finish: it learns it lost the job.
    assert not store.renew(job_id, "t1", 60)
    assert not store.progress(job_id, "t1", step=2)
    assert not store.finish(job_id, "succeeded", token="t1")
    assert store.progress(job_id, "t2", step=2) and store.get(job_id)["step"] == 2


def test_reclaim_requeues_lost_jobs_then_gives_up(store: JobStore) -> None:
    job_id, _ = store.create("train", {})
    for attempt in (1, 2):
        assert store.start(job_id, f"w{attempt}", f"t{attempt}", 60, 2) in ("running", "resumed")
        assert store.reclaim(job_id, 2) == "alive"  # the lease is live
        store.client.delete(store.lease_key(job_id))  # the worker died; its lease lapsed
        outcome = store.reclaim(job_id, 2)
        if attempt == 1:
            assert outcome == "requeued" and store.get(job_id)["state"] == "queued"
            assert "w1 was lost" in store.get(job_id)["message"]
    assert outcome == "failed"
    job = store.get(job_id)
    assert job["state"] == "failed" and "gave up after 2 attempts" in job["error"] and "w2" in job["error"]
    assert store.running_ids() == []


def test_a_worker_reclaims_its_dead_process_job_at_once(store: JobStore) -> None:
    job_id, _ = store.create("sample", {})
    store.start(job_id, "w1", "t1", 60, 3)
    assert store.reclaim(job_id, 3, worker="w2") == "other"  # not w2's job
    assert store.reclaim(job_id, 3, worker="w1") == "requeued"  # lease still live, but w1 saw it die
    assert store.start(job_id, "w1", "t3", 60, 3) == "resumed"


def test_lock_joins_active_jobs_and_is_released_by_finished_ones(store: JobStore) -> None:
    first, created = store.create("sample", {}, lock="sample:k")
    assert created
    again, created = store.create("sample", {}, lock="sample:k")
    assert (again, created) == (first, False)
    store.start(first, "w", "t", 60, 3)
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
    store.start(job_id, "w", "t", 60, 3)
    writes = []
    original = store.progress
    store.progress = lambda jid, token="", **fields: writes.append(fields) or original(jid, token, **fields)  # type: ignore[method-assign]
    reporter = JobReporter(store, job_id, interval_s=0.2, token="t")
    started = time.monotonic()
    step = 0
    while time.monotonic() - started < 0.5:
        step += 1
        reporter(step=step)
        time.sleep(0.005)
    reporter(force=True, step=step + 1)
    assert step > 20 and 3 <= len(writes) <= 5  # ~every 0.2 s, plus the forced final write
    assert store.get(job_id)["step"] == step + 1


def test_workers_requeue_jobs_of_lost_workers(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import app as worker_app

    published: list[tuple[str, list[str], str]] = []
    monkeypatch.setattr(
        worker_app.app, "send_task", lambda name, args, queue, **_: published.append((name, args, queue))
    )
    lost, _ = store.create("train", {"run_id": "r"}, extra={"queue": "q-a"})
    alive, _ = store.create("sample", {})
    store.start(lost, "dead-worker", "t1", 60, 3)
    store.start(alive, "live-worker", "t2", 60, 3)
    store.client.delete(store.lease_key(lost))
    assert worker_app.reclaim_lost_jobs(store) == [lost]
    assert published == [("ddpm.train", [lost], "q-a")]
    job = store.get(lost)
    assert job["state"] == "queued" and "dead-worker" in job["message"]
    assert store.get(alive)["state"] == "running"
