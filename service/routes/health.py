from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.deps import SettingsDep, StoreDep
from service.errors import redact

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Redis reachable (else 503) and the workers that reported in")
def healthz(settings: SettingsDep, store: StoreDep) -> dict[str, Any]:
    store.client.ping()  # a ConnectionError becomes the 503 of service.errors
    workers = store.workers()
    return {
        "status": "ok" if workers else "no_workers",
        "redis": redact(settings.redis_url),
        "queue": settings.queue,
        "workers": workers,
        "data_dir": str(settings.data_dir),
    }
