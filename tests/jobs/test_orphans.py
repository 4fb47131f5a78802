"""Jobs that nothing would ever run: a queued job whose broker message is gone, a lock whose job has
ended, a cancel asked of a job whose worker was then lost. On a real Redis, through the workers' own
sweep functions (publishing captured)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ddpm.runs import QUEUED, RunDir, run_record
from jobs.orphans import sweep_orphans, waiting_messages
from jobs.publish import queue_lists
from jobs.settings import Settings
from jobs.store import JobStore

AFTER_S = 0.05  # queued this long with no message: lost


@pytest.fixture
def store(settings: Settings, request: pytest.FixtureRequest) -> JobStore:
    prefix = f"{settings.key_prefix}:orphans-{request.node.name[:40]}"
    return JobStore.from_url(settings.redis_url, prefix, ttl_s=600)


@pytest.fixture
def queue(store: JobStore) -> str:
    name = f"{store.prefix}-queue"
    yield name
    store.client.delete(*queue_lists(name))


def _message(job_id: str, task: str = "ddpm.sample") -> str:
    """A message as kombu's Redis transport stores it (only what the sweep reads)."""
    return json.dumps({"body": "", "headers": {"id": job_id, "task": task}, "properties": {}})


class Published(list):
    def __call__(self, kind: str, job_id: str, queue: str | None) -> None:
        self.append((kind, job_id, queue))


def test_a_queued_job_whose_message_is_gone_is_published_again(store: JobStore, queue: str) -> None:
    lost, _ = store.create("sample", {}, lock="sample:k1", extra={"queue": queue})
    waiting, _ = store.create("sample", {}, extra={"queue": queue})
    store.client.lpush(queue, _message(waiting))  # its message waits its turn: not lost
    fresh_queue_job, _ = store.create("train", {}, extra={"queue": queue})
    assert waiting_messages(store.client, queue) == {waiting}
    time.sleep(2 * AFTER_S)
    just_created, _ = store.create("fid", {}, extra={"queue": queue})  # not published yet, perhaps

    published = Published()
    report = sweep_orphans(store, published, "default-queue", AFTER_S, max_times=3)
    assert sorted(report.republished) == sorted([lost, fresh_queue_job]) and report.failed == []
    assert sorted(published) == sorted([("sample", lost, queue), ("train", fresh_queue_job, queue)])
    job = store.get(lost)
    assert job["state"] == "queued" and job["republished"] == 1
    assert "its message was lost from the job queue (1 of 3)" in job["message"]
    assert store.lock_owner("sample:k1") == lost  # still its lock: it will run now
    # Claiming bumped the record: a second sweeping worker, at once, publishes nothing more.
    assert sweep_orphans(store, published, "default-queue", AFTER_S, max_times=3).republished == []
    assert len(published) == 2 and store.get(just_created)["state"] == "queued"


def test_a_job_lost_too_often_fails_saying_why_and_frees_its_lock(store: JobStore, queue: str) -> None:
    job_id, _ = store.create("sample", {}, lock="sample:k2", extra={"queue": queue})
    published = Published()
    for _ in range(3):
        time.sleep(2 * AFTER_S)
        sweep_orphans(store, published, queue, AFTER_S, max_times=2)
    assert [p[1] for p in published] == [job_id, job_id]  # published again twice, then given up
    job = store.get(job_id)
    assert job["state"] == "failed" and job["republished"] == 2
    assert "its message was lost from the job queue 3 times (published again 2 times)" in job["error"]
    assert store.lock_owner("sample:k2") is None  # the next identical request makes a new job
    assert store.create("sample", {}, lock="sample:k2")[1] is True


def test_running_and_finished_jobs_are_not_swept(store: JobStore, queue: str) -> None:
    running, _ = store.create("train", {}, extra={"queue": queue})
    store.start(running, "w", "t", 60, 3)
    done, _ = store.create("sample", {}, extra={"queue": queue})
    store.cancel(done)
    time.sleep(2 * AFTER_S)
    assert sweep_orphans(store, Published(), queue, AFTER_S, max_times=3).republished == []


def test_a_cache_lock_ends_with_its_job_but_a_runs_lock_stays(store: JobStore) -> None:
    for end in ("succeeded", "failed", "cancelled"):
        job_id, _ = store.create("sample", {}, lock=f"sample:{end}")
        store.start(job_id, "w", "t", 60, 3)
        assert store.finish(job_id, end, token="t")
        assert store.lock_owner(f"sample:{end}") is None, end
    queued, _ = store.create("sample", {}, lock="sample:queued")
    assert store.cancel(queued) == "cancelled" and store.lock_owner("sample:queued") is None
    # A newer owner's lock is never released by an older job ending.
    old, _ = store.create("sample", {}, lock="sample:shared")
    new, _ = store.create("sample", {}, lock="sample:shared", replace=old)
    store.cancel(old)
    assert store.lock_owner("sample:shared") == new
    # A run's lock outlives its job: GET /runs/{id} links the run to its last job through it.
    run_job, _ = store.create("train", {}, lock="run:r1")
    store.start(run_job, "w", "t", 60, 3)
    store.finish(run_job, "succeeded", token="t")
    assert store.lock_owner("run:r1") == run_job


def test_a_job_cancelled_while_its_worker_is_lost_ends_cancelled(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reclaim script's cancel branch, through the workers' sweep: the cancel asked of a running
    job is honoured when its lease lapses, and its run says so."""
    from workers import app as worker_app

    monkeypatch.setattr(worker_app, "settings", worker_app.settings.model_copy(update={"data_dir": tmp_path}))
    published = Published()
    monkeypatch.setattr(worker_app, "publish_job", published)
    run = RunDir.of(tmp_path, "lost-while-cancelling")
    run.write(run_record(run.run_id, "biggan", {}, QUEUED))
    job_id, _ = store.create("train", {"run_id": run.run_id}, extra={"run_id": run.run_id})
    store.start(job_id, "dead-worker", "t1", 60, 3)
    run.update(status="running")
    assert store.cancel(job_id) == "cancelling"
    store.client.delete(store.lease_key(job_id))  # the worker died before it saw the cancel

    assert worker_app.reclaim_lost_jobs(store) == []  # not re-queued: cancelled
    job = store.get(job_id)
    assert job["state"] == "cancelled" and "dead-worker was lost while stopping" in job["message"]
    assert published == [] and store.running_ids() == []
    assert run.read()["status"] == "cancelled"


def test_the_workers_sweep_publishes_lost_messages_and_settles_failed_runs(
    store: JobStore, queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import app as worker_app

    update = {"data_dir": tmp_path, "orphan_after_s": AFTER_S, "max_attempts": 1}
    monkeypatch.setattr(worker_app, "settings", worker_app.settings.model_copy(update=update))
    published = Published()
    monkeypatch.setattr(worker_app, "publish_job", published)
    run = RunDir.of(tmp_path, "never-published")
    run.write(run_record(run.run_id, "biggan", {}, QUEUED))
    job_id, _ = store.create("train", {"run_id": run.run_id}, extra={"run_id": run.run_id, "queue": queue})
    time.sleep(2 * AFTER_S)
    assert worker_app.republish_lost_messages(store) == [job_id]
    assert published == [("train", job_id, queue)]
    time.sleep(1.1 * max(1, AFTER_S))  # the sweep's slot (at least a second) and the job's age
    assert worker_app.republish_lost_messages(store) == []  # lost once more: max_attempts reached
    assert store.get(job_id)["state"] == "failed"
    assert run.read()["status"] == "failed" and "lost from the job queue" in run.read()["error"]


def test_a_real_published_message_is_seen_waiting(store: JobStore, queue: str, settings: Settings) -> None:
    """The sweep reads kombu's own message format: a job published through Celery is not lost."""
    from jobs.publish import JobQueue, queue_for

    routed = queue_for("sample", queue)  # a sampling job's queue: <queue>.interactive
    job_id, _ = store.create("sample", {}, extra={"queue": routed})
    JobQueue(settings.model_copy(update={"queue": queue})).enqueue("sample", job_id)
    try:
        assert waiting_messages(store.client, routed) == {job_id}
        time.sleep(2 * AFTER_S)
        assert sweep_orphans(store, Published(), queue, AFTER_S, max_times=3).republished == []
    finally:
        store.client.delete(*queue_lists(routed))
