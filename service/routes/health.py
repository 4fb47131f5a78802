"""Probes, outside the API key: /healthz says the process serves requests, /readyz that jobs can run."""

from __future__ import annotations

from typing import Any

import redis.exceptions
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from jobs.registry import WorkerRegistry
from service.deps import SettingsDep, StoreDep
from service.errors import redact, redis_unavailable_message

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="liveness: the API process answers (touches nothing else)")
def healthz() -> dict[str, str]:
    # Liveness must not depend on Redis: a Redis outage should not get the API container restarted.
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="readiness: Redis reachable and at least one worker seen (else 503, saying which)",
    responses={503: {"description": "Redis unreachable, or no worker has reported in"}},
)
def readyz(settings: SettingsDep, store: StoreDep) -> JSONResponse:
    body: dict[str, Any] = {
        "redis": redact(settings.redis_url),
        "queue": settings.queue,
        "data_dir": str(settings.data_dir),
        "workers": [],
    }
    try:
        store.client.ping()
        body["workers"] = WorkerRegistry(store.client, store.prefix).alive()
    except redis.exceptions.RedisError as err:
        detail = redis_unavailable_message(settings.redis_url, err)
        return JSONResponse({**body, "status": "redis_unavailable", "detail": detail}, status_code=503)
    if not body["workers"]:
        detail = "no worker has reported in: start one (`ddpm worker`, or the compose worker service)"
        return JSONResponse({**body, "status": "no_workers", "detail": detail}, status_code=503)
    return JSONResponse({**body, "status": "ok"})
