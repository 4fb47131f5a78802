"""`ddpm serve` with nothing else set up: embedded Redis, its two workers, the API, then a clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from models import arch_names
from service.embedded_redis import free_port

START_TIMEOUT_S = 90.0
QUEUE = "gpu"  # DDPM_QUEUE's default: trainings; interactive jobs go to "gpu.interactive"


def _start(tmp_path: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    """`ddpm serve` as a newcomer runs it: no REDIS_URL, no DDPM_* settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "DATA_DIR") and not k.startswith("DDPM_")
    }
    env["DDPM_DEVICE"] = "cpu"
    command = [
        sys.executable,
        "-m",
        "ddpm.cli",
        "--data-dir",
        str(tmp_path / "data"),
        "serve",
        "--port",
        str(port),
    ]
    with (tmp_path / "serve.log").open("ab") as log:
        return subprocess.Popen(
            [*command, *extra], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read())


def _delete(url: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read())


def _wait_healthy(
    process: subprocess.Popen[bytes], base: str, log: Path, need_worker: bool
) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"ddpm serve did not come up:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(OSError):  # not listening yet
            status, health = _get(f"{base}/readyz")  # 503 until Redis answers and a worker reports
            if status == 200 or (not need_worker and health.get("status") == "no_workers"):
                return health
        time.sleep(0.3)


def _pids(pattern: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()


def test_ddpm_serve_starts_api_worker_and_embedded_redis(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = _start(tmp_path, port)
    try:
        health = _wait_healthy(process, base, tmp_path / "serve.log", need_worker=True)
        assert health["status"] == "ok" and health["redis"].startswith("redis://127.0.0.1:")
        assert health["data_dir"] == str(tmp_path / "data")
        assert health["workers"][0]["device"] == "cpu"
        # Two consumers: trainings, and the jobs users wait on (jobs/publish.py).
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(health["workers"]) < 2:  # the second may report a moment after the first
            assert time.monotonic() < deadline, health
            time.sleep(0.3)
            health = _get(f"{base}/readyz")[1]
        assert sorted(tuple(w["consumes"]) for w in health["workers"]) == [
            (QUEUE,),
            (QUEUE + ".interactive",),
        ]
        status, archs = _get(f"{base}/archs")
        assert status == 200 and len(archs) == len(arch_names())
        status, body = _get(f"{base}/samples?arch=biggan&seed=0&n=80")
        assert status == 409 and "POST /train" in body["detail"]
        worker = _pids(f"ddpm-[a-z]+-{process.pid}@")
        # redis-server shows itself as "redis-server 127.0.0.1:<port>" in the process table.
        redis_server = f"redis-server {health['redis'].split('//')[1].split('/')[0]}"
        assert worker and _pids(redis_server)
    finally:
        process.send_signal(signal.SIGTERM)  # as `kill` or a process manager would
        code = process.wait(timeout=60)
    assert code == 0, (tmp_path / "serve.log").read_text()[-4000:]
    # It stopped what it started: the worker, then the embedded Redis, whose data stays on the volume.
    assert _pids(f"ddpm-[a-z]+-{process.pid}@") == [] and _pids(redis_server) == []
    assert (tmp_path / "data" / "redis" / "appendonly.aof").exists()


def test_job_records_survive_a_restart_of_ddpm_serve(tmp_path: Path) -> None:
    """The embedded Redis keeps its data under DATA_DIR/redis, so a restart loses no job."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    accepted: dict[str, Any] = {}
    for round_ in range(2):
        process = _start(tmp_path, port, "--no-worker")  # jobs stay queued: nothing runs them
        try:
            _wait_healthy(process, base, tmp_path / "serve.log", need_worker=False)
            if round_ == 0:
                status, accepted = _post(
                    f"{base}/train", {"arch": "biggan", "dataset": "digits", "max_steps": 5}
                )
                assert status == 202
            else:
                status, job = _get(f"{base}/jobs/{accepted['job_id']}")
                assert status == 200 and job["state"] == "queued"
                assert job["params"]["run_id"] == accepted["run_id"]
                status, run = _get(f"{base}/runs/{accepted['run_id']}")
                assert status == 200 and run["status"] == "queued" and run["job_id"] == accepted["job_id"]
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0


def _job(base: str, job_id: str, done: Any, what: str, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not done(job := _get(f"{base}/jobs/{job_id}")[1]):
        assert time.monotonic() < deadline, f"{what}: {job}"
        time.sleep(0.3)
    return job


def test_ddpm_serve_restarts_a_dead_worker_while_the_api_answers(tmp_path: Path) -> None:
    """SIGKILL of the training worker's Celery main process mid-training (the issue's case): the API keeps
    answering, /readyz stops listing it at once, a new worker is started after a logged delay, takes the
    training back at once (not after its 120 s lease) and runs it; SIGTERM still stops everything."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    process = _start(tmp_path, port)
    try:
        health = _wait_healthy(process, base, log, need_worker=True)
        (first,) = [w for w in health["workers"] if w["consumes"] == [QUEUE]]
        tiny = {"arch": "pure_unet", "dataset": "digits", "width": 0.125, "image_size": 16, "batch_size": 8}
        status, accepted = _post(f"{base}/train", {**tiny, "max_steps": 100_000})
        assert status == 202
        job_id = accepted["job_id"]
        _job(base, job_id, lambda j: (j.get("step") or 0) >= 2, "the training never ran")
        os.kill(first["pid"], signal.SIGKILL)

        deadline = time.monotonic() + 10
        while first["hostname"] in [w["hostname"] for w in _get(f"{base}/readyz")[1]["workers"]]:
            assert time.monotonic() < deadline, "/readyz still lists the dead worker"
            time.sleep(0.1)
        assert process.poll() is None  # ddpm serve is still up ...
        assert _get(f"{base}/healthz") == (200, {"status": "ok"})  # ... and answering
        assert _get(f"{base}/archs")[0] == 200 and _get(f"{base}/jobs/{job_id}")[0] == 200

        second = _worker_back(base, first["hostname"], first["pid"])
        assert second["pid"] != first["pid"] and second["hostname"] == first["hostname"]
        text = log.read_text()
        assert f"ddpm serve: the worker (pid {first['pid']}) stopped" in text and "killed by SIGKILL" in text
        assert "restarting it in 1s" in text
        # Its pool process was killed with it, and the new worker re-queued the job as it started.
        resumed = _job(base, job_id, lambda j: (j.get("attempts") or 0) >= 2, "not taken back")
        assert resumed["worker"] == second["hostname"]
        status, _ = _delete(f"{base}/jobs/{job_id}")
        assert status in (200, 202)
        job = _job(base, job_id, lambda j: j["state"] in ("succeeded", "failed", "cancelled"), "not stopped")
        assert job["state"] == "cancelled" and job["attempts"] == 2, job
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0, log.read_text()[-4000:]
    assert _pids(f"ddpm-[a-z]+-{process.pid}@") == []


def _worker_back(base: str, hostname: str, old_pid: int) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        for worker in _get(f"{base}/readyz")[1].get("workers", []):
            if worker["hostname"] == hostname and worker["pid"] != old_pid:
                return worker
        assert time.monotonic() < deadline, f"{hostname} was not restarted"
        time.sleep(0.3)


def test_a_grid_arrives_while_a_training_runs(tmp_path: Path) -> None:
    """The issue's case for separate queues: on a one-device `ddpm serve`, a grid of another run's
    checkpoint is made by the interactive worker while the training worker is busy for hours."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    process = _start(tmp_path, port)
    try:
        _wait_healthy(process, base, log, need_worker=True)
        tiny = {"arch": "pure_unet", "dataset": "digits", "width": 0.125, "image_size": 16, "batch_size": 8}
        status, short = _post(f"{base}/train", {**tiny, "max_steps": 2})
        assert status == 202
        # (its end writes a TensorBoard grid: slow on a loaded machine)
        _job(
            base,
            short["job_id"],
            lambda j: j["state"] == "succeeded",
            "the short training did not finish",
            600,
        )
        status, long = _post(f"{base}/train", {**tiny, "max_steps": 100_000})
        assert status == 202
        _job(base, long["job_id"], lambda j: (j.get("step") or 0) >= 2, "the long training never ran")
        with urllib.request.urlopen(
            f"{base}/samples?run={short['run_id']}&seed=0&n=4&nrow=2&sampler=ddim&steps=2&wait=120",
            timeout=180,
        ) as grid:
            assert grid.status == 200 and grid.headers["content-type"] == "image/png"
        training = _get(f"{base}/jobs/{long['job_id']}")[1]
        assert training["state"] == "running", training  # the grid did not wait for it
        _delete(f"{base}/jobs/{long['job_id']}")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0, log.read_text()[-4000:]


def test_restarts_are_spaced_by_a_doubling_delay_reset_by_a_stable_run() -> None:
    from service.supervisor import RestartBackoff

    backoff = RestartBackoff(first_s=1, max_s=30, stable_s=60)
    assert [backoff.next_delay(ran_for_s=2) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.next_delay(ran_for_s=61) == 1  # it ran a minute: healthy, start over
    assert backoff.next_delay(ran_for_s=0.5) == 2


def test_the_supervisor_restarts_until_stopped(capsys: pytest.CaptureFixture) -> None:
    """A worker that exits at once is restarted, at the backoff's pace, with a log line each time;
    stop() ends it (no restart after it)."""
    from service.supervisor import RestartBackoff, WorkerSupervisor

    deaths = []
    supervisor = WorkerSupervisor(
        [sys.executable, "-c", "raise SystemExit(3)"],
        {**os.environ},
        on_death=lambda: deaths.append(time.monotonic()),
        backoff=RestartBackoff(first_s=0.2, max_s=0.4, stable_s=60),
    )
    supervisor.start()
    deadline = time.monotonic() + 30
    while len(deaths) < 4:
        assert time.monotonic() < deadline, deaths
        time.sleep(0.05)
    supervisor.stop()
    count = len(deaths)
    time.sleep(1)
    assert len(deaths) == count  # stopped: never restarted again
    gaps = [b - a for a, b in zip(deaths, deaths[1:], strict=False)]
    assert gaps[0] >= 0.2 and all(gap >= 0.4 for gap in gaps[1:]), gaps  # 0.2 s, then capped at 0.4 s
    err = capsys.readouterr().err
    assert err.count("(exit code 3); restarting it in") >= 4


def test_ddpm_serve_restarts_a_dead_embedded_redis_and_keeps_its_records(tmp_path: Path) -> None:
    """SIGKILL of the embedded redis-server: `ddpm serve` starts it again on the same port from its AOF,
    the API answers again by itself, and the job queued before the crash is still there."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    process = _start(tmp_path, port, "--no-worker")
    try:
        health = _wait_healthy(process, base, log, need_worker=False)
        status, accepted = _post(f"{base}/train", {"arch": "biggan", "dataset": "digits", "max_steps": 5})
        assert status == 202
        time.sleep(1.5)  # appendfsync everysec: the record is on disk
        redis_server = f"redis-server {health['redis'].split('//')[1].split('/')[0]}"
        (first,) = _pids(redis_server)
        os.kill(int(first), signal.SIGKILL)

        deadline = time.monotonic() + 30
        while (found := _pids(redis_server)) in ([], [first]) or _get(f"{base}/readyz")[1]["status"] != (
            "no_workers"  # Redis answers again; no worker was started
        ):
            assert time.monotonic() < deadline, f"Redis not back: {log.read_text()[-2000:]}"
            time.sleep(0.2)
        assert found != [first]
        status, job = _get(f"{base}/jobs/{accepted['job_id']}")
        assert status == 200 and job["state"] == "queued"
        assert "the embedded Redis (pid" in log.read_text() and "restarting it in 1s" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0, log.read_text()[-4000:]
    assert _pids(redis_server) == []  # stopped with ddpm serve, not restarted
