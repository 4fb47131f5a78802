"""A full data volume, for real: a small tmpfs as DATA_DIR, filled with a ballast file, under a real
worker and the API, first with Redis elsewhere (its own disk has room), then with the embedded Redis
keeping its AOF on the full volume (as `ddpm serve` runs it). Jobs fail saying "no space left on the
data volume", POST /train answers 507 and leaves no run folder, Redis refusing writes gives 503s and
readiness says so, no process dies, and once the ballast is removed everything works again, with
nothing restarted.

Mounting a tmpfs needs root (CAP_SYS_ADMIN); elsewhere these tests are skipped, and
tests/service/test_disk_space.py and tests/workers/test_outcomes.py cover the same paths with an
injected ENOSPC.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ddpm.storage import MIB, free_bytes
from jobs.settings import Settings
from service.app import create_app
from service.embedded_redis import EmbeddedRedis
from tests.stack import TINY_TRAIN, finished, start_worker, stop_worker, wait_for

VOLUME_MB = 64
WORKER_MIN_FREE_MB = 1  # the workers' DDPM_MIN_FREE_MB
TRAIN = {**TINY_TRAIN, "arch": "pure_unet", "max_steps": 3}  # a ~4 MiB checkpoint at its end
SAMPLE = {"n": 2, "nrow": 2, "sampler": "ddim", "steps": 2}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    mount = tmp_path_factory.mktemp("small-volume")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={VOLUME_MB}m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


class Ballast:
    """A file that takes all but `leave` bytes of the volume's free space."""

    def __init__(self, volume: Path) -> None:
        self.path = volume / "ballast"

    def fill(self, leave: int = 0) -> None:
        self.drain()
        size = free_bytes(self.path.parent) - leave
        with self.path.open("wb") as handle:
            if size > 0:
                os.posix_fallocate(handle.fileno(), 0, size)
        if leave == 0:  # fallocate may leave a few blocks; take them too (unbuffered: no flush at close)
            with self.path.open("ab", buffering=0) as handle, pytest.raises(OSError):
                while True:
                    handle.write(b"\0" * 65536)

    def drain(self) -> None:
        self.path.unlink(missing_ok=True)


def _until(check: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what()
        time.sleep(0.2)


def _with_checkpoint(data_dir: Path, settings: Settings, local_checkpoint: dict[str, Any]) -> str:
    run_id = local_checkpoint["run_id"]
    shutil.copytree(settings.data_dir / "runs" / run_id, data_dir / "runs" / run_id)
    return run_id


def test_a_full_data_volume_with_redis_elsewhere(
    volume: Path,
    settings: Settings,
    local_checkpoint: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = volume / "external-redis"
    run_id = _with_checkpoint(data_dir, settings, local_checkpoint)
    tag = uuid.uuid4().hex[:6]
    ours = settings.model_copy(update={"data_dir": data_dir, "queue": f"{settings.key_prefix}-disk-{tag}"})
    log = tmp_path_factory.mktemp("disk-worker") / "worker.log"
    worker = start_worker(ours, f"disk-{tag}@localhost", log, DDPM_MIN_FREE_MB=str(WORKER_MIN_FREE_MB))
    ballast = Ballast(volume)
    try:
        with TestClient(create_app(ours.model_copy(update={"min_free_mb": 0}))) as client:
            # 1. Room for a run's record, not for its checkpoint: the training fails, saying so.
            ballast.fill(leave=3 * MIB)
            response = client.post("/train", json=TRAIN)
            assert response.status_code == 202, response.text
            trained = response.json()
            job = wait_for(client, trained["job_id"], finished)
            assert job["state"] == "failed", job
            # Which write hits the wall first (checkpoint, loss log, events) may vary; each names its file.
            assert job["error"].startswith("no space left on the data volume ("), job
            assert f"writing runs/{trained['run_id']}/" in job["error"], job
            assert str(data_dir) not in job["error"] and "internal error" not in job["error"]

            # 2. Full: POST /train cannot write the run (507, no folder left behind); a sampling job is
            # refused by the worker's check before it starts.
            ballast.fill(leave=0)
            response = client.post("/train", json={**TRAIN, "run_id": f"no-room-{tag}"})
            assert response.status_code == 507, response.text
            assert response.json()["detail"].startswith(
                f"no space left on the data volume (writing runs/no-room-{tag}/run.json"
            )
            assert not (data_dir / "runs" / f"no-room-{tag}").exists()
            sample = client.get("/samples", params={"run": run_id, **SAMPLE})
            assert sample.status_code == 202, sample.text
            job = wait_for(client, sample.json()["job_id"], finished)
            assert (
                job["state"] == "failed" and "no space left on the data volume: 0 MiB free" in job["error"]
            ), job
        with TestClient(create_app(ours.model_copy(update={"min_free_mb": WORKER_MIN_FREE_MB}))) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["status"] == "low_disk", ready.text
            assert client.post("/train", json=TRAIN).status_code == 507  # refused before anything is written

            # 3. Space is back: the failed run resumes, the grid is drawn; nothing was restarted.
            ballast.drain()
            resumed = client.post("/train", json={"run_id": trained["run_id"], "resume": True})
            assert resumed.status_code == 202, resumed.text
            job = wait_for(client, resumed.json()["job_id"], finished)
            assert job["state"] == "succeeded" and job["step"] == TRAIN["max_steps"], job
            grid = client.get("/samples", params={"run": run_id, **SAMPLE, "wait": 60})
            assert grid.status_code == 200 and grid.headers["content-type"] == "image/png", grid.text
            assert client.get("/readyz").json()["status"] in (
                "ok",
                "no_workers",
            )  # other tests' workers aside
        assert worker.poll() is None
    finally:
        ballast.drain()
        stop_worker(worker)


def test_a_full_volume_under_the_embedded_redis(
    volume: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Redis keeps its AOF on the full volume (ddpm serve's embedded Redis): it refuses writes
    (MISCONF). The API answers 503 and readiness says redis_cannot_write; the worker, whose BRPOP is
    refused too, stays up; when space is back Redis writes again and a training runs, nothing restarted."""
    data_dir = volume / "embedded-redis"
    redis_server = EmbeddedRedis(data_dir / "redis")  # AOF + RDB under DATA_DIR/redis, as ddpm serve does
    redis_server.start()
    tag = uuid.uuid4().hex[:6]
    ours = settings.model_copy(
        update={
            "redis_url": redis_server.url,
            "data_dir": data_dir,
            "key_prefix": f"disk-{tag}",
            "queue": f"disk-{tag}",
        }
    )
    log = tmp_path_factory.mktemp("embedded-disk-worker") / "worker.log"
    worker = start_worker(
        ours, f"disk-{tag}@localhost", log, DDPM_MIN_FREE_MB="0", DDPM_WORKER_HEARTBEAT_S="0.5"
    )
    ballast = Ballast(volume)
    try:
        with TestClient(create_app(ours.model_copy(update={"min_free_mb": 0}))) as client:
            ballast.fill(leave=0)
            # Writing makes Redis append to its AOF, which fails; from then on it refuses writes.
            first = client.post("/train", json=TRAIN)
            assert first.status_code in (503, 507), first.text

            seen: list[dict[str, Any]] = []

            def refusing() -> bool:
                seen.append(client.get("/readyz").json())
                return seen[-1]["status"] == "redis_cannot_write"

            _until(refusing, 30, lambda: f"Redis never refused writes: {seen[-1]}")
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "MISCONF" in ready.json()["detail"]
            refused = client.post("/train", json=TRAIN)
            assert refused.status_code == 503, refused.text
            assert "cannot save its data, most likely because its disk is full" in refused.json()["detail"]
            assert client.get("/jobs").status_code == 200  # reads still work
            time.sleep(3)  # several worker heartbeats and consumer retries against the refusing Redis
            assert worker.poll() is None, log.read_text()[-3000:]
            assert redis_server.process is not None and redis_server.process.poll() is None

            ballast.drain()
            _until(lambda: not refusing(), 60, lambda: f"Redis never wrote again: {seen[-1]}")
            response = client.post("/train", json=TRAIN)
            assert response.status_code == 202, response.text
            job = wait_for(client, response.json()["job_id"], finished)
            assert job["state"] == "succeeded" and job["step"] == TRAIN["max_steps"], job
        assert worker.poll() is None
        text = log.read_text()
        assert "MISCONF" in text and text.count("heartbeat failed") == 1  # logged once, not at every beat
    finally:
        ballast.drain()
        stop_worker(worker)
        redis_server.stop()
