"""A worker configured for a GPU it cannot have exits at start-up with the reason; its heartbeat carries
the device it resolved; its health probe fails when it was configured for a GPU and has none."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import torch

from jobs.registry import WorkerRegistry
from jobs.settings import Settings
from workers.app import DEVICE_UNAVAILABLE_EXIT
from workers.health import assess

HOST = "gpu-host"


def _worker(hostname: str = "w@gpu-host", **info: Any) -> dict[str, Any]:
    return {"hostname": hostname, "host": HOST, **info}


def test_health_fails_for_a_gpu_worker_without_a_gpu() -> None:
    healthy = _worker(device="cuda:0", device_requested="cuda")
    assert assess([healthy], HOST, "cuda", ["/dev/nvidia0"]) == (True, "ok: w@gpu-host on cuda:0")
    ok, message = assess([_worker(device="cpu", device_requested="cuda")], HOST, "cuda", ["/dev/nvidia0"])
    assert not ok and "configured for cuda but runs on cpu" in message
    ok, message = assess([healthy], HOST, "cuda", [])
    assert not ok and "sees no GPU" in message and "/dev/nvidia" in message
    ok, message = assess([], HOST, "cuda", ["/dev/nvidia0"])
    assert not ok and "no worker heartbeat" in message
    # A CPU worker, or one that was free to choose (auto), needs no GPU.
    assert assess([_worker(device="cpu", device_requested="auto")], HOST, "auto", [])[0]
    assert assess([_worker(device="cpu", device_requested="cpu")], HOST, "cpu", [])[0]


def test_health_probe_exits_1_for_a_worker_that_was_asked_for_cuda_and_runs_on_cpu(
    settings: Settings,
) -> None:
    prefix = f"{settings.key_prefix}-health"
    registry = WorkerRegistry(redis.Redis.from_url(settings.redis_url, decode_responses=True), prefix)
    info = {"host": socket.gethostname(), "device": "cpu", "device_requested": "cuda", "queue": "q"}
    registry.beat("stray@here", {"hostname": "stray@here", **info}, ttl_s=30)
    try:
        env = {
            **os.environ,
            "REDIS_URL": settings.redis_url,
            "DDPM_KEY_PREFIX": prefix,
            "DDPM_DEVICE": "auto",
        }
        result = subprocess.run(
            [sys.executable, "-m", "workers.health"], env=env, capture_output=True, text=True
        )
    finally:
        registry.forget("stray@here")
    assert result.returncode == 1
    assert "stray@here was configured for cuda but runs on cpu" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure on a machine without CUDA")
def test_a_worker_asked_for_cuda_without_cuda_exits_with_the_reason(
    settings: Settings, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "DDPM_KEY_PREFIX": f"{settings.key_prefix}-nocuda",
        "DDPM_QUEUE": f"{settings.key_prefix}-nocuda",
    }
    command = [
        sys.executable, "-m", "ddpm.cli", "--data-dir", str(tmp_path),
        "worker", "--device", "cuda", "--name", "nocuda@localhost",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == DEVICE_UNAVAILABLE_EXIT, result.stderr[-2000:]
    line = next(line for line in result.stderr.splitlines() if line.startswith("worker not started"))
    assert "DDPM_DEVICE=cuda: device 'cuda' requested but CUDA is not available" in line
    assert "needs NVIDIA driver >=" in line or "no CUDA support" in line
    client = redis.Redis.from_url(settings.redis_url)
    assert not client.exists(f"{settings.key_prefix}-nocuda:worker:nocuda@localhost")  # it never beat


def test_the_heartbeat_carries_the_resolved_device(settings: Settings, worker: dict[str, Any]) -> None:
    raw = redis.Redis.from_url(settings.redis_url).get(f"{settings.key_prefix}:worker:{worker['name']}")
    info = json.loads(raw)
    assert info["device"] == "cpu" and info["device_requested"] == "cpu" and info["device_name"] == "cpu"
    assert info["torch"] == torch.__version__.split("+")[0]


def test_a_bad_device_name_is_refused_before_anything_starts(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "ddpm.cli", "--data-dir", str(tmp_path), "worker", "--device", "gpu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "argument --device: device 'gpu' is not valid; use auto, cpu or cuda[:N]" in result.stderr
