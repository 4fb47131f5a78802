"""GET /metrics: Prometheus' text format (service/metrics.py computes it from Redis at each scrape)."""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import SettingsDep, StoreDep
from service.metrics import exposition

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics: jobs by kind and state, run times, queue depth, workers, throughput",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(settings: SettingsDep, store: StoreDep) -> Response:
    body = await anyio.to_thread.run_sync(exposition, store, settings)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
