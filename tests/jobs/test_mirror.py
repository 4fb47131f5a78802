"""Job records copied to the volume at each state change, and put back when Redis has lost them.

Real Redis, one key prefix per test; "Redis lost its data" is played by deleting every key of that
prefix. tests/workers/test_reliability.py flushes a whole private Redis under running workers.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from ddpm.cli import main as ddpm_main
from jobs.mirror import JobMirror, prune_expired, restore_if_lost, restore_jobs
from jobs.settings import Settings
from jobs.store import JobStore
from service.app import create_app

TTL_S = 600


@pytest.fixture
def store(settings: Settings, request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    prefix = f"{settings.key_prefix}:mirror-{request.node.name[:40]}"
    return JobStore.from_url(settings.redis_url, prefix, ttl_s=TTL_S, mirror=JobMirror(tmp_path / "jobs"))


def _lose_redis_data(store: JobStore) -> None:
    keys = list(store.client.scan_iter(match=f"{store.prefix}:*", count=500))
    store.client.delete(*keys)


class Published(list[tuple[str, str, str | None]]):
    def __call__(self, kind: str, job_id: str, queue: str | None) -> None:
        self.append((kind, job_id, queue))


def test_state_changes_are_mirrored_and_progress_ticks_are_not(store: JobStore) -> None:
    assert store.mirror is not None
    job_id, _ = store.create("sample", {"n": 4}, lock="sample:abc", extra={"queue": "q"})
    on_disk = store.mirror.read(job_id)
    assert (
        on_disk and on_disk["state"] == "queued" and on_disk["rev"] == 1 and on_disk["lock"] == "sample:abc"
    )

    store.start(job_id, "w1", "t1", 60, 3)
    assert store.mirror.read(job_id)["state"] == "running"
    store.progress(job_id, "t1", step=5, progress=0.5)
    assert "step" not in store.mirror.read(job_id)  # ticks stay in Redis only
    assert store.cancel(job_id) == "cancelling"
    assert store.mirror.read(job_id)["cancel_requested"] is True
    assert store.finish(job_id, "cancelled", token="t1", message="cancelled")
    final = store.mirror.read(job_id)
    assert final["state"] == "cancelled" and final["rev"] == 4 and final["step"] == 5
    assert final == store.get(job_id)

    # A slower writer holding an older snapshot does not replace the newer one.
    store.mirror.write({**final, "state": "running", "rev": 3})
    assert store.mirror.read(job_id)["state"] == "cancelled"


def test_records_come_back_after_redis_lost_them(store: JobStore) -> None:
    assert store.mirror is not None
    done, _ = store.create("train", {"run_id": "r1"}, lock="run:r1")
    store.start(done, "w1", "t-done", 60, 3)
    store.finish(done, "succeeded", token="t-done", result={"run_id": "r1"})
    cancelled, _ = store.create("fid", {})
    store.cancel(cancelled)
    expired, _ = store.create("sample", {})
    store.finish(expired, "failed", error="x")
    store.mirror.write({**store.get(expired), "finished": time.time() - TTL_S - 5, "rev": 99})
    queued, _ = store.create("train", {"run_id": "r2"}, lock="run:r2", extra={"queue": "gpu-b"})
    running, _ = store.create("train", {"run_id": "r3"}, lock="run:r3")
    store.start(running, "w2", "t-running", 60, 3)
    before = {job["id"]: job for job in store.list()}

    _lose_redis_data(store)
    assert store.list() == [] and not store.holds_restored_records()

    published = Published()
    report = restore_if_lost(store, published, lease_s=0.3)
    assert report is not None
    assert sorted(report.restored) == sorted([done, cancelled, queued, running])
    assert report.expired == [expired] and store.mirror.read(expired) is None
    assert published == [("train", queued, "gpu-b")]  # to the queue the API sent it to
    assert report.running == [running]
    after = {job["id"]: job for job in store.list()}
    assert after.keys() == before.keys() - {expired}
    for job_id in (done, cancelled, queued):
        assert after[job_id] == before[job_id]
    assert after[running]["state"] == "running" and after[running]["worker"] == "w2"
    # Finished records still expire when they would have; active ones hold their locks again.
    assert 0 < store.client.ttl(store.job_key(done)) <= TTL_S
    assert store.lock_owner("run:r2") == queued and store.lock_owner("run:r3") == running
    assert store.lock_owner("run:r1") is None

    # The running job's old process, if alive, carries on under its token...
    assert store.renew(running, "t-running", 0.3)
    # ...and when it is gone, its lease lapses and the job is re-queued like any lost worker's.
    time.sleep(0.4)
    assert store.reclaim(running, max_attempts=3) == "requeued"
    assert store.get(running)["state"] == "queued"

    assert restore_if_lost(store, published, lease_s=0.3) is None  # Redis holds them now
    assert restore_jobs(store, published, lease_s=0.3).restored == []  # and a forced rerun adds nothing
    assert len(published) == 1


def test_expired_files_are_pruned(store: JobStore) -> None:
    assert store.mirror is not None
    old, _ = store.create("sample", {})
    store.finish(old, "succeeded")
    live, _ = store.create("sample", {})
    store.finish(live, "succeeded")
    queued, _ = store.create("sample", {})
    assert prune_expired(store, now=time.time() + TTL_S + 1) == [old, live]
    assert [job["id"] for job in store.mirror.records()] == [queued]  # active records are never pruned


def test_jobs_rebuild_command(
    store: JobStore, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    queue = f"{settings.key_prefix}-rebuild"
    job_id, _ = store.create("train", {"run_id": "r"}, extra={"queue": queue})
    _lose_redis_data(store)
    for name, value in {
        "REDIS_URL": settings.redis_url,
        "DDPM_KEY_PREFIX": store.prefix,
        "DDPM_JOB_TTL_S": str(TTL_S),
    }.items():
        monkeypatch.setenv(name, value)
    assert ddpm_main(["--data-dir", str(tmp_path), "jobs", "rebuild"]) == 0
    assert "restored 1 job record(s) (1 queued" in capsys.readouterr().out
    assert store.get(job_id)["state"] == "queued" and store.holds_restored_records()
    broker = redis.Redis.from_url(settings.redis_url)
    assert broker.llen(queue) == 1  # published again, to its recorded queue


def test_the_api_restores_lost_records_at_start(store: JobStore, settings: Settings, tmp_path: Path) -> None:
    """With no worker running, the API's start is what puts the records back."""
    queue = f"{settings.key_prefix}-api-start"
    job_id, _ = store.create("train", {"run_id": "r"}, extra={"queue": queue})
    _lose_redis_data(store)
    api_settings = settings.model_copy(update={"key_prefix": store.prefix, "data_dir": tmp_path})
    with TestClient(create_app(api_settings)) as client:
        jobs = client.get("/jobs").json()["jobs"]
    assert [(job["id"], job["state"]) for job in jobs] == [(job_id, "queued")]
    assert redis.Redis.from_url(settings.redis_url).llen(queue) == 1
