"""`ddpm serve` with nothing else set up: embedded Redis, one worker, the API, then a clean stop."""

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

import pytest

from service.embedded_redis import free_port

START_TIMEOUT_S = 90.0


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_ddpm_serve_starts_api_worker_and_embedded_redis(tmp_path: Path) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "DATA_DIR") and not k.startswith("DDPM_")
    }
    env["DDPM_DEVICE"] = "cpu"
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ddpm.cli",
            "--data-dir",
            str(tmp_path / "data"),
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    health: dict = {}
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S

        while not health.get("workers"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ddpm serve did not come up:\n{(tmp_path / 'serve.log').read_text()[-4000:]}")
            with contextlib.suppress(OSError):  # not listening yet
                _, health = _get(f"{base}/healthz")
            time.sleep(0.3)
        assert health["status"] == "ok" and health["redis"].startswith("redis://127.0.0.1:")
        assert health["data_dir"] == str(tmp_path / "data")
        assert health["workers"][0]["device"] == "cpu"
        status, archs = _get(f"{base}/archs")
        assert status == 200 and len(archs) == 9
        status, body = _get(f"{base}/samples?arch=biggan&seed=0&n=80")
        assert status == 409 and "POST /train" in body["detail"]
    finally:
        worker = _pids(f"ddpm-{process.pid}@")
        # redis-server shows itself as "redis-server 127.0.0.1:<port>" in the process table.
        redis_server = _pids(f"redis-server {health['redis'].split('//')[1].split('/')[0]}")
        process.send_signal(signal.SIGTERM)  # as `kill` or a process manager would
        code = process.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-4000:]
    # It stopped what it started: the worker and the embedded Redis, whose data stays on the volume.
    assert worker and redis_server
    assert _pids(f"ddpm-{process.pid}@") == []
    assert _pids(f"redis-server {health['redis'].split('//')[1].split('/')[0]}") == []
    assert (tmp_path / "data" / "redis" / "appendonly.aof").exists() or any(
        (tmp_path / "data" / "redis").iterdir()
    )


def _pids(pattern: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
