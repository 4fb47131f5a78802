"""Faults a long job must survive, played out in seconds by real workers on a private Redis.

The workers run with a 4 s lease renewed every 0.5 s and a 1 s broker visibility timeout, so a
training of a few seconds outlives both, and a queued job whose message is lost is published again
after 2 s. The Redis is private (a redis-server of its own) because a
short visibility timeout makes every worker on a Redis re-deliver *any* unacked message older than it,
other sessions' included, and because the tests stop it, restart it and wipe it.

The workers import tests/workers/worker_killer.py (`-- --include`): a run whose id starts with
KILLER_RUN_PREFIX kills its pool process with SIGKILL at its second step, every time it starts.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from jobs.settings import Settings
from service.app import create_app
from service.embedded_redis import EmbeddedRedis
from tests.stack import TINY_TRAIN, finished, start_worker, stop_worker, wait_for
from tests.workers.worker_killer import KILLER_RUN_PREFIX

LEASE_S, JOB_HEARTBEAT_S = 4.0, 0.5
FAST_LEASES = {
    "DDPM_LEASE_S": str(LEASE_S),
    "DDPM_JOB_HEARTBEAT_S": str(JOB_HEARTBEAT_S),
    "DDPM_WORKER_HEARTBEAT_S": "0.5",
    "DDPM_VISIBILITY_TIMEOUT_S": "1",
    "DDPM_ORPHAN_AFTER_S": "2",
}
# 96 real digits as an image folder, batch 16: 6 steps an epoch (a latest checkpoint at each epoch end),
# a few hundredths of a second a step, so epochs stay short and checkpoints come often.
FOLDER_IMAGES, BATCH = 96, 16
STEPS_PER_EPOCH = FOLDER_IMAGES // BATCH
LONG_TRAIN = {**TINY_TRAIN, "arch": "pure_unet", "dataset": "folder:digits96", "batch_size": BATCH}


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("private-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rel_settings(
    settings: Settings, private_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    data_dir = tmp_path_factory.mktemp("rel-data")
    _digits_folder(data_dir / "datasets" / "digits96")
    return settings.model_copy(update={"redis_url": private_redis.url, "data_dir": data_dir})


def _digits_folder(folder: Path) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True)
    for i, digit in enumerate(load_digits().images[:FOLDER_IMAGES]):
        Image.fromarray((digit * 255 / 16).astype("uint8")).save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def workers(rel_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two workers on one queue, started side by side."""
    folder = tmp_path_factory.mktemp("rel-workers")
    names = [f"rel-{label}@localhost" for label in ("a", "b")]
    with ThreadPoolExecutor(2) as pool:
        processes = pool.map(
            lambda name: start_worker(
                rel_settings,
                name,
                folder / f"{name}.log",
                celery_args=["--include", "tests.workers.worker_killer"],
                **FAST_LEASES,
            ),
            names,
        )
        started = {
            name: {"process": p, "log": folder / f"{name}.log"}
            for name, p in zip(names, processes, strict=True)
        }
    yield started
    for worker in started.values():
        stop_worker(worker["process"])


@pytest.fixture
def rel_client(rel_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(rel_settings)) as client:
        yield client


def _logs(workers: dict[str, Any]) -> str:
    return "".join(w["log"].read_text(errors="replace") for w in workers.values())


def _loss_rows(settings: Settings, run_id: str) -> list[tuple[int, float]]:
    """(step, seconds since that process started training) for every row of the run's loss.csv."""
    with (settings.data_dir / "runs" / run_id / "loss.csv").open(newline="") as handle:
        return [(int(r[0]), float(r[4])) for r in csv.reader(handle) if r and r[0].isdigit()]


def test_a_job_longer_than_the_visibility_timeout_runs_once(
    rel_client: TestClient, rel_settings: Settings, workers: dict[str, Any]
) -> None:
    """The broker hands the running job's unacked message to the idle worker once the visibility
    timeout (1 s) has passed; that copy is dropped. The training runs until the log shows the drop
    (so the redelivery is certain to have happened, not hoped for), then is cancelled."""
    response = rel_client.post("/train", json={**LONG_TRAIN, "epochs": 5000, "checkpoint_every": 5000})
    assert response.status_code == 202, response.text
    job_id, run_id = response.json()["job_id"], response.json()["run_id"]
    deadline = time.monotonic() + 60
    while f"job {job_id} not run: it is busy" not in _logs(workers):
        assert time.monotonic() < deadline, "the unacked message was never redelivered"
        assert rel_client.get(f"/jobs/{job_id}").json()["state"] in ("queued", "running")
        time.sleep(0.1)
    assert rel_client.delete(f"/jobs/{job_id}").status_code == 202
    job = wait_for(rel_client, job_id, finished, timeout=120)
    assert job["state"] == "cancelled" and job["attempts"] == 1, job
    steps = [step for step, _ in _loss_rows(rel_settings, run_id)]
    assert steps == list(range(1, job["step"] + 1))  # every step trained once, in order


def test_a_killed_workers_job_resumes_on_another_from_its_checkpoint(
    rel_client: TestClient, rel_settings: Settings, workers: dict[str, Any]
) -> None:
    epochs, every = 12, 2
    response = rel_client.post("/train", json={**LONG_TRAIN, "epochs": epochs, "checkpoint_every": every})
    job_id, run_id = response.json()["job_id"], response.json()["run_id"]
    past_a_checkpoint = every * STEPS_PER_EPOCH + 2
    job = wait_for(rel_client, job_id, lambda j: (j.get("step") or 0) >= past_a_checkpoint, timeout=120)
    owner, killed_at = job["worker"], job["step"]
    process = workers[owner]["process"]
    os.killpg(process.pid, signal.SIGKILL)  # the whole worker, as when its host or container dies
    process.wait()

    job = wait_for(rel_client, job_id, finished, timeout=120)
    total = epochs * STEPS_PER_EPOCH
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2 and job["worker"] != owner
    assert job["step"] == job["total"] == total
    run = rel_client.get(f"/runs/{run_id}").json()
    kept = [STEPS_PER_EPOCH * e for e in range(every, epochs + 1, every)]
    assert [c["step"] for c in run["checkpoints"]] == kept
    assert all(c.get("available", True) for c in run["checkpoints"])

    rows = _loss_rows(rel_settings, run_id)
    assert [step for step, _ in rows] == list(range(1, total + 1))  # no step lost or logged twice
    # Resumed, not restarted: the new process's clock starts at the step after a checkpoint the
    # killed one had reached.
    restarts = [step for (_, before), (step, after) in zip(rows, rows[1:], strict=False) if after < before]
    assert len(restarts) == 1, restarts
    resumed_from = restarts[0] - 1
    assert resumed_from % STEPS_PER_EPOCH == 0 and STEPS_PER_EPOCH <= resumed_from <= killed_at
    assert f"job {job_id} (train) resumed" in _logs(workers)


def test_redis_stopped_and_started_mid_job(
    rel_client: TestClient, rel_settings: Settings, private_redis: EmbeddedRedis, workers: dict[str, Any]
) -> None:
    """The API answers 503 while Redis is down and recovers by itself; the job, whose worker could not
    renew its lease for longer than the lease (4 s here), stops itself and resumes once Redis is back."""
    # Long enough that the job is still training when its lease runs out (a one-thread test worker
    # trains this tiny network at tens of steps a second; 16 epochs used to end inside the outage).
    epochs = 160
    response = rel_client.post("/train", json={**LONG_TRAIN, "epochs": epochs, "checkpoint_every": 20})
    job_id, run_id = response.json()["job_id"], response.json()["run_id"]
    wait_for(rel_client, job_id, lambda j: (j.get("step") or 0) >= 2 * STEPS_PER_EPOCH + 1, timeout=120)

    private_redis.stop()  # SIGTERM: the AOF is flushed, as on `docker compose restart redis`
    try:
        for answer in (rel_client.get(f"/jobs/{job_id}"), rel_client.get("/jobs"), rel_client.get("/readyz")):
            assert answer.status_code == 503, answer.text
            assert "Redis is unreachable" in answer.json()["detail"]
        assert rel_client.post("/train", json={**LONG_TRAIN, "epochs": 1}).status_code == 503
        assert rel_client.get("/healthz").status_code == 200  # liveness does not depend on Redis
        time.sleep(LEASE_S + 1)  # longer than the lease
    finally:
        private_redis.start()  # same port and folder: the records come back from the AOF

    job = wait_for(rel_client, job_id, finished, timeout=300)
    assert job["state"] == "succeeded", job
    assert job["step"] == epochs * STEPS_PER_EPOCH and job["attempts"] == 2
    steps = [step for step, _ in _loss_rows(rel_settings, run_id)]
    assert steps == list(range(1, epochs * STEPS_PER_EPOCH + 1))
    # New work is accepted again.
    again = rel_client.post("/train", json={**LONG_TRAIN, "epochs": 1})
    assert again.status_code == 202, again.text
    assert wait_for(rel_client, again.json()["job_id"], finished)["state"] == "succeeded"


def test_redis_down_for_less_than_a_lease_while_a_training_goes_on(
    rel_client: TestClient, rel_settings: Settings, private_redis: EmbeddedRedis, workers: dict[str, Any]
) -> None:
    """Redis stopped for less than lease - heartbeat (3.5 s here): the training goes on meanwhile (its
    loss log grows), its progress is written again once Redis is back, a cancel asked then is seen, and
    the job was never fenced off or re-queued (one attempt, every step once)."""
    response = rel_client.post("/train", json={**LONG_TRAIN, "epochs": 5000, "checkpoint_every": 5000})
    job_id, run_id = response.json()["job_id"], response.json()["run_id"]
    before = wait_for(rel_client, job_id, lambda j: (j.get("step") or 0) >= STEPS_PER_EPOCH + 1, timeout=120)
    rows_before = len(_loss_rows(rel_settings, run_id))

    went_down = time.monotonic()
    private_redis.stop()
    try:
        time.sleep(1.0)
        rows_during = len(_loss_rows(rel_settings, run_id))
        assert rel_client.get(f"/jobs/{job_id}").status_code == 503
    finally:
        private_redis.start()
    down_for = time.monotonic() - went_down
    assert down_for < LEASE_S - JOB_HEARTBEAT_S - 0.5, f"the outage took {down_for:.1f}s: not a short one"
    assert rows_during > rows_before  # trained (and logged to the volume) while Redis was down

    moving = wait_for(
        rel_client, job_id, lambda j: j["step"] > before["step"] + 2 * STEPS_PER_EPOCH, timeout=60
    )
    assert moving["state"] == "running" and moving["attempts"] == 1
    assert rel_client.delete(f"/jobs/{job_id}").status_code == 202
    job = wait_for(rel_client, job_id, finished, timeout=60)
    assert job["state"] == "cancelled" and job["attempts"] == 1, job
    assert [step for step, _ in _loss_rows(rel_settings, run_id)] == list(range(1, job["step"] + 1))
    assert f"job {job_id}: its lease could not be renewed" not in _logs(workers)


def test_a_sampling_job_whose_message_was_lost_is_published_again(
    rel_settings: Settings, workers: dict[str, Any], local_checkpoint: dict[str, Any], settings: Settings
) -> None:
    """The stuck join: a sampling job queued with no message in the broker, holding its cache lock, so
    that every identical request joined it. The workers' sweep finds it (DDPM_ORPHAN_AFTER_S, 2 s
    here) and publishes it again; the grid is made and served."""
    run_id = local_checkpoint["run_id"]
    target = rel_settings.data_dir / "runs" / run_id
    if not target.exists():
        shutil.copytree(settings.data_dir / "runs" / run_id, target)
    query = {"run": run_id, "n": 2, "nrow": 2, "sampler": "ddim", "steps": 2, "seed": 11}
    with TestClient(create_app(rel_settings)) as client:
        client.app.state.queue.enqueue = lambda kind, job_id, queue=None: None  # accepted, then lost
        first = client.get("/samples", params=query)
        assert first.status_code == 202, first.text
        job_id = first.json()["job_id"]
        again = client.get("/samples", params=query)
        assert again.status_code == 202 and again.json() == {**first.json(), "joined": True}
        assert client.get(f"/jobs/{job_id}").json()["state"] == "queued"

        grid = client.get("/samples", params={**query, "wait": 60})
        assert grid.status_code == 200, grid.text
        assert grid.headers["content-type"] == "image/png"
        job = client.get(f"/jobs/{job_id}").json()
        assert job["state"] == "succeeded" and job["attempts"] == 1, job
    assert f"job {job_id} was queued with no message in queue {rel_settings.queue}.interactive" in _logs(
        workers
    )


def test_a_killed_pool_process_is_requeued_at_once_by_its_worker(
    rel_client: TestClient, rel_settings: Settings, workers: dict[str, Any]
) -> None:
    """The out-of-memory case: the pool process dies, the worker's parent lives and re-queues the job
    itself (WorkerLostError), without waiting for the lease; a fresh pool process resumes it."""
    name, alive = next((n, w) for n, w in workers.items() if w["process"].poll() is None)
    epochs = 8
    response = rel_client.post("/train", json={**LONG_TRAIN, "epochs": epochs, "checkpoint_every": 4})
    job_id, run_id = response.json()["job_id"], response.json()["run_id"]
    wait_for(rel_client, job_id, lambda j: (j.get("step") or 0) >= STEPS_PER_EPOCH + 2, timeout=120)
    children = subprocess.run(
        ["pgrep", "-P", str(alive["process"].pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(children) == 1, children  # concurrency 1: one pool process
    os.kill(int(children[0]), signal.SIGKILL)

    job = wait_for(rel_client, job_id, finished, timeout=120)
    assert job["state"] == "succeeded" and job["attempts"] == 2 and job["worker"] == name, job
    steps = [step for step, _ in _loss_rows(rel_settings, run_id)]
    assert steps == list(range(1, epochs * STEPS_PER_EPOCH + 1))
    log = alive["log"].read_text(errors="replace")
    assert f"job {job_id} lost its worker: requeued" in log and "WorkerLostError" in log


def test_a_job_that_keeps_killing_its_worker_fails_after_max_attempts(
    rel_client: TestClient, rel_settings: Settings, workers: dict[str, Any]
) -> None:
    """Every start dies by SIGKILL mid-training (the out-of-memory-every-time case): each death is
    counted, and after DDPM_MAX_ATTEMPTS (3) starts the job fails instead of going round forever."""
    run_id = f"{KILLER_RUN_PREFIX}-{uuid.uuid4().hex[:8]}"
    response = rel_client.post("/train", json={**LONG_TRAIN, "epochs": 4, "run_id": run_id})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    job = wait_for(rel_client, job_id, finished, timeout=120)
    assert job["state"] == "failed" and job["attempts"] == 3, job
    assert "gave up after 3 attempts: each time, its worker was lost mid-job" in job["error"]
    time.sleep(LEASE_S + 1)  # past a lease and several sweeps: nothing picks it up again
    assert rel_client.get(f"/jobs/{job_id}").json()["state"] == "failed"
    logs = _logs(workers)
    assert logs.count(f"job {job_id} (train) ") == 3  # started three times, then never again
    assert logs.count(f"job {job_id} lost its worker: requeued") == 2
    assert logs.count(f"job {job_id} lost its worker: failed") == 1
    assert rel_client.get(f"/runs/{run_id}").json()["status"] == "failed"  # not left 'running'
    run_record = json.loads((rel_settings.data_dir / "runs" / run_id / "run.json").read_text())
    assert "gave up after 3 attempts" in run_record["error"]
    # The workers are unharmed: the next job runs.
    again = rel_client.post("/train", json={**LONG_TRAIN, "epochs": 1})
    assert wait_for(rel_client, again.json()["job_id"], finished)["state"] == "succeeded"


def test_redis_loses_its_data_mid_job(
    rel_client: TestClient, rel_settings: Settings, private_redis: EmbeddedRedis, workers: dict[str, Any]
) -> None:
    """FLUSHALL under running workers: job records, queue, leases, broker bindings all gone. The
    workers' next heartbeat restores the records from DATA_DIR/jobs; the training that was running
    resumes from its checkpoint and finishes whole; new jobs are accepted."""
    done = rel_client.post("/train", json={**LONG_TRAIN, "epochs": 1}).json()["job_id"]
    assert wait_for(rel_client, done, finished)["state"] == "succeeded"
    idle_settings = rel_settings.model_copy(update={"queue": f"{rel_settings.key_prefix}-rel-idle"})
    with TestClient(create_app(idle_settings)) as idle:  # a queue nobody consumes: jobs stay queued
        queued = idle.post("/train", json={**LONG_TRAIN, "epochs": 1}).json()["job_id"]
        cancelled = idle.post("/train", json={**LONG_TRAIN, "epochs": 1}).json()["job_id"]
        assert idle.delete(f"/jobs/{cancelled}").status_code == 200
    epochs, every = 12, 2
    response = rel_client.post("/train", json={**LONG_TRAIN, "epochs": epochs, "checkpoint_every": every})
    running, run_id = response.json()["job_id"], response.json()["run_id"]
    wait_for(rel_client, running, lambda j: (j.get("step") or 0) >= every * STEPS_PER_EPOCH + 2, timeout=120)
    before = {job["id"]: job for job in rel_client.get("/jobs").json()["jobs"]}

    broker = redis.Redis.from_url(private_redis.url)
    broker.flushall()
    assert broker.dbsize() <= 2  # at most a worker heartbeat that landed since

    deadline = time.monotonic() + 30
    while (listed := {j["id"]: j for j in rel_client.get("/jobs").json()["jobs"]}).keys() != before.keys():
        assert time.monotonic() < deadline, f"not restored: {sorted(listed)} vs {sorted(before)}"
        time.sleep(0.1)
    assert "Redis had lost job records" in _logs(workers)
    for job_id in (done, cancelled):
        assert listed[job_id] == before[job_id]  # finished ones exactly as they ended
    assert listed[queued]["state"] == "queued"
    assert broker.llen(idle_settings.queue) == 1  # published again, to the queue it was sent to

    job = wait_for(rel_client, running, finished, timeout=120)
    total = epochs * STEPS_PER_EPOCH
    assert job["state"] == "succeeded" and job["step"] == total, job
    # Its process saw its record vanish and stopped itself; the restored record's lease lapsed and the
    # job resumed from its checkpoint (attempt 2). Had the restore come first, it would have carried on.
    assert job["attempts"] in (1, 2)
    run = rel_client.get(f"/runs/{run_id}").json()
    kept = [STEPS_PER_EPOCH * e for e in range(every, epochs + 1, every)]
    assert [c["step"] for c in run["checkpoints"]] == kept
    assert all(c.get("available", True) for c in run["checkpoints"])
    assert [step for step, _ in _loss_rows(rel_settings, run_id)] == list(range(1, total + 1))

    again = rel_client.post("/train", json={**LONG_TRAIN, "epochs": 1})  # the API's broker link works
    assert wait_for(rel_client, again.json()["job_id"], finished)["state"] == "succeeded"
