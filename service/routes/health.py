"""Probes, outside the API key: /healthz says the process serves requests, /readyz that jobs can run.

With API_KEY set, a caller without the key learns only up or down from /readyz; the details (Redis URL,
data path, free space, workers' hosts, PIDs and devices) need the key.
"""

from __future__ import annotations

import time
from typing import Any

import redis.exceptions
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ddpm.storage import MIB, free_bytes
from jobs.registry import WorkerRegistry
from jobs.settings import Settings
from jobs.store import JobStore
from service.deps import AuthorisedDep, SettingsDep, StoreDep
from service.errors import redact, redis_unavailable_message
from service.tidy import TidyJSONResponse

router = APIRouter(tags=["health"])

OK, UNAVAILABLE = "ok", "unavailable"  # all a caller without the key is told


@router.get("/healthz", summary="liveness: the API process answers (touches nothing else)")
def healthz() -> dict[str, str]:
    # Liveness must not depend on Redis: a Redis outage should not get the API container restarted.
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="readiness: Redis reachable and writable, space on the data volume, at least one worker "
    "(else 503, saying which; without the API key when one is set, only ok or unavailable)",
    responses={
        503: {
            "description": "Redis unreachable or refusing writes, the data volume nearly full, or no worker"
        }
    },
)
def readyz(settings: SettingsDep, store: StoreDep, allowed: AuthorisedDep) -> JSONResponse:
    body = readiness(settings, store)
    code = 200 if body["status"] == OK else 503
    if not allowed:
        return JSONResponse({"status": OK if code == 200 else UNAVAILABLE}, status_code=code)
    return TidyJSONResponse(body, status_code=code)  # workers' `seen` as ISO-8601, as every answer has it


def readiness(settings: Settings, store: JobStore) -> dict[str, Any]:
    """Everything /readyz reports; `status` is the first thing that keeps jobs from running, or ok."""
    free_mb = free_bytes(settings.data_dir) // MIB
    body: dict[str, Any] = {
        "redis": redact(settings.redis_url),
        "queue": settings.queue,
        "data_dir": str(settings.data_dir),
        "disk": {"free_mb": free_mb, "min_free_mb": settings.min_free_mb},
        "workers": [],
        "devices": [],  # the workers' resolved devices (cpu, cuda:0), for the page's header
    }
    try:
        # Reads only: a Redis that cannot save (its disk is full) still answers them, while it
        # refuses writes (and even PING) with MISCONF.
        body["workers"] = [
            _with_device(worker) for worker in WorkerRegistry(store.client, store.prefix).alive()
        ]
        body["devices"] = sorted({worker["device"] for worker in body["workers"]})
        store.client.set(f"{store.prefix}:readyz", str(time.time()), ex=60)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as err:
        detail = redis_unavailable_message(settings.redis_url, err)
        return {**body, "status": "redis_unavailable", "detail": detail}
    except redis.exceptions.RedisError as err:
        detail = (
            f"Redis at {redact(settings.redis_url)} refuses writes ({type(err).__name__}: {err}); jobs "
            "cannot be created or updated until it can save again (is its disk full?)"
        )
        return {**body, "status": "redis_cannot_write", "detail": detail}
    if free_mb < settings.min_free_mb:
        detail = (
            f"the data volume has {free_mb} MiB free, under the {settings.min_free_mb} MiB a job needs "
            "(DDPM_MIN_FREE_MB): new jobs are refused until space is freed"
        )
        return {**body, "status": "low_disk", "detail": detail}
    if not body["workers"]:
        detail = "no worker has reported in: start one (`ddpm worker`, or the compose worker service)"
        return {**body, "status": "no_workers", "detail": detail}
    return {**body, "status": OK}


def _with_device(heartbeat: dict[str, Any]) -> dict[str, Any]:
    """A worker's heartbeat with its resolved device (cpu, cuda:0) named, "unknown" for a heartbeat
    from a worker too old to carry one, so every entry answers "where do my jobs run"."""
    return {**heartbeat, "device": str(heartbeat.get("device") or "unknown")}
