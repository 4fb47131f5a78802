"""The FastAPI app: `uvicorn service.app:app`, or `ddpm serve` for API + worker + Redis in one command.

This module imports no torch (tests/service/test_isolation.py and tests/test_layers.py check it in a fresh interpreter).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from jobs.mirror import JobMirror, restore_if_lost
from jobs.publish import JobQueue
from jobs.settings import Settings
from jobs.store import JobStore
from service.deps import require_api_key
from service.errors import install_handlers
from service.middleware import BodySizeLimit
from service.routes import (
    analysis,
    archs,
    classifiers,
    datasets,
    fid,
    health,
    jobs,
    metrics,
    plots,
    runs,
    samples,
    studies,
    train,
)
from service.tidy import TidyJSONResponse
from service.web import install_web

DESCRIPTION = """Train, sample and score (FID) the DDPM UNet variants of *Newer Architectures for Diffusion*.

Requests are validated here and run as jobs on GPU workers; follow a job at `/jobs/{id}` or as
server-sent events at `/jobs/{id}/events`. See docs/api.md.
"""

log = logging.getLogger("service")


def _restore_job_records(app: FastAPI) -> None:
    """Put back job records Redis lost while no worker ran to do it (docs/reliability.md). Best effort:
    with Redis down at start, the workers' heartbeat does it once Redis is back."""
    try:
        restore_if_lost(app.state.store, app.state.queue.enqueue, app.state.settings.lease_s)
    except Exception as err:
        log.warning("job records not checked against the volume at start: %s", err)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await anyio.to_thread.run_sync(_restore_job_records, app)
    yield


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="ddpm-arch-bench",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=_lifespan,
        default_response_class=TidyJSONResponse,  # one shape for times, steps and floats (service/tidy.py)
    )
    app.state.settings = settings
    app.state.store = JobStore.from_url(
        settings.redis_url,
        settings.key_prefix,
        settings.job_ttl_s,
        settings.redis_timeout_s,
        mirror=JobMirror.of(settings.data_dir),
    )
    app.state.queue = JobQueue(settings)
    install_handlers(app, settings.redis_url, settings.data_dir)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    if settings.cors_origins:  # off unless an operator names the browser origins to allow
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization"],
        )
    guarded = [Depends(require_api_key)]
    for module in (archs, datasets, train, jobs, runs, samples, fid, plots, metrics, studies):
        app.include_router(module.router, dependencies=guarded)
    for module in (analysis, classifiers):  # the classifier study (docs/analysis.md)
        app.include_router(module.router, dependencies=guarded)
    app.include_router(health.router)  # probes carry no key
    install_web(app)  # the page at / (no key: it holds no data; its requests carry the key)
    logging.getLogger("service").setLevel(logging.INFO)
    return app


app = create_app()
