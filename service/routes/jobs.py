from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import redis.exceptions
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from ddpm.runs import RunDir
from jobs.records import CANCELLED, KINDS, STATES, TERMINAL_STATES, TRAIN
from jobs.store import JobStore
from service.deps import SettingsDep, StoreDep
from service.errors import Conflict, NotFound, redis_unavailable_message
from service.schemas import JobOut
from service.tidy import TidyJSONResponse, tidy

router = APIRouter(tags=["jobs"])


def _job_or_404(store: JobStore, job_id: str) -> dict:
    job = store.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r} (finished jobs expire after a while); GET /jobs lists them")
    return job


@router.get("/jobs", summary="jobs, newest first")
def list_jobs(
    store: StoreDep,
    kind: Annotated[str | None, Query(pattern="^(" + "|".join(KINDS) + ")$")] = None,
    state: Annotated[str | None, Query(pattern="^(" + "|".join(STATES) + ")$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, list[JobOut]]:
    return {"jobs": [JobOut.from_record(job) for job in store.list(limit, kind=kind, state=state)]}


@router.get("/jobs/{job_id}", summary="a job's state, progress, ETA, error and result links")
def get_job(job_id: str, store: StoreDep) -> JobOut:
    return JobOut.from_record(_job_or_404(store, job_id))


@router.delete(
    "/jobs/{job_id}",
    summary="cancel: a queued job never runs; a running one stops after its current step",
    responses={200: {"description": "cancelled"}, 202: {"description": "cancel requested"}},
)
def cancel_job(job_id: str, store: StoreDep, settings: SettingsDep) -> TidyJSONResponse:
    outcome = store.cancel(job_id)
    if outcome is None:
        raise NotFound(f"no job {job_id!r}; GET /jobs lists them")
    job = store.get(job_id) or {}
    if outcome == CANCELLED and job.get("kind") == TRAIN and job.get("run_id"):
        # A run that never started says so (its trainer would otherwise leave it 'queued' forever).
        RunDir.of(settings.data_dir, job["run_id"]).settle(CANCELLED)
    if outcome in ("succeeded", "failed"):
        raise Conflict(f"job {job_id!r} already {outcome}; nothing to cancel", job=_dump(job))
    status = 202 if outcome == "cancelling" else 200
    return TidyJSONResponse(_dump(job), status_code=status)


def _dump(job: dict) -> dict:
    return tidy(JobOut.from_record(job).model_dump(mode="json"))  # as the JSON answers have it


@router.get(
    "/jobs/{job_id}/events",
    summary="server-sent events: the job record on every change, until it finishes",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def job_events(job_id: str, store: StoreDep, settings: SettingsDep) -> StreamingResponse:
    first = _job_or_404(store, job_id)  # unknown ids get a plain 404, not an empty stream
    stream = _events(
        store, job_id, first, settings.events_poll_s, settings.events_keepalive_s, settings.redis_url
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _events(
    store: JobStore, job_id: str, job: dict | None, poll_s: float, keepalive_s: float, redis_url: str
) -> AsyncIterator[str]:
    """`progress` events while the job changes, one `done` event with its final record, then the end.

    Polling the record (rather than pub/sub) means a client that connects late or reconnects never
    misses the final state. Redis calls run in a thread so the event loop never blocks on them.
    """
    last, last_sent = None, time.monotonic()
    yield "retry: 2000\n\n"
    while True:
        if job is None:
            yield _event("error", {"detail": f"job {job_id!r} no longer exists (its record expired)"})
            return
        body = _dump(job)
        if job["state"] in TERMINAL_STATES:
            yield _event("done", body)
            return
        if body != last:
            yield _event("progress", body)
            last, last_sent = body, time.monotonic()
        elif time.monotonic() - last_sent > keepalive_s:
            yield ": keep-alive\n\n"  # a comment line: keeps proxies from closing an idle stream
            last_sent = time.monotonic()
        await asyncio.sleep(poll_s)
        try:
            job = await anyio.to_thread.run_sync(store.get, job_id)
        except redis.exceptions.RedisError as err:
            yield _event("error", {"detail": redis_unavailable_message(redis_url, err)})
            return
