from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Annotated

import anyio
import redis
from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from jobs.batching import BatchableJobs, batch_key
from jobs.publish import JobQueue
from jobs.records import CANCELLED, FAILED, SAMPLE, SUCCEEDED, TERMINAL_STATES
from jobs.settings import Settings
from jobs.specs import SampleSpec
from jobs.store import JobStore
from service.checkpoints import resolve_checkpoint
from service.deps import QueueDep, SettingsDep, StoreDep
from service.errors import Conflict, JobFailed, invalid_field
from service.schemas import Accepted, SampleQuery, job_links
from service.submit import submit
from service.tidy import TidyJSONResponse

log = logging.getLogger("service")

router = APIRouter(tags=["samples"])

WAIT_POLL_S = 0.2
# The cache file is written before the job is marked succeeded; joinable = a job whose file may come.
JOINABLE = ("queued", "running", SUCCEEDED)


@router.get(
    "/samples",
    summary="a seeded PNG grid: 200 from the cache, else 202 and a job to poll",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "the grid"},
        202: {"model": Accepted, "description": "queued (or joined) a sampling job; poll Location"},
        409: {"description": "the arch has no finished checkpoint yet"},
    },
)
async def samples(
    query: Annotated[SampleQuery, Query()], settings: SettingsDep, store: StoreDep, queue: QueueDep
) -> Response:
    if query.n > settings.sample_max_n:
        raise invalid_field(
            ("query", "n"),
            f"n={query.n} is more than this service draws in one grid ({settings.sample_max_n}); "
            "POST /fid scores larger sample sets",
            query.n,
        )
    if query.wait > settings.max_wait_s:
        raise invalid_field(
            ("query", "wait"),
            f"wait must be at most {settings.max_wait_s:g} seconds, got {query.wait:g}",
            query.wait,
        )
    # Everything below touches files or Redis: run it in a thread, keeping the event loop free.
    spec = await anyio.to_thread.run_sync(_spec, settings, query)
    found = await anyio.to_thread.run_sync(_cached_or_job, settings, store, queue, spec)
    if isinstance(found, Response):
        return found
    job_id, created = found

    deadline = time.monotonic() + query.wait
    while time.monotonic() < deadline:
        job = await anyio.to_thread.run_sync(store.get, job_id)
        if job is None or job["state"] in TERMINAL_STATES:
            break
        await asyncio.sleep(WAIT_POLL_S)
    job = await anyio.to_thread.run_sync(store.get, job_id) or {}
    png = spec.png_path(settings.data_dir)
    if png.is_file():
        return _png(spec, settings)
    if job.get("state") == FAILED:
        raise JobFailed(f"sampling job {job_id} failed: {job.get('error')}", job_id=job_id)
    if job.get("state") == CANCELLED:
        raise Conflict(f"sampling job {job_id} was cancelled; ask again to start a new one", job_id=job_id)
    return _accepted(spec, job_id, job.get("state", "queued"), joined=not created)


def _spec(settings: Settings, query: SampleQuery) -> SampleSpec:
    ref = resolve_checkpoint(settings.data_dir, query.arch, query.run, query.checkpoint)
    return SampleSpec(ref, query.seed, query.n, query.nrow, query.sampler_spec())


def _cached_or_job(
    settings: Settings, store: JobStore, queue: JobQueue, spec: SampleSpec
) -> Response | tuple[str, bool]:
    """The cached grid, or (id, created) of the one job that makes it.

    The lock on the cache key makes identical requests join one job. A lock held by a job that
    succeeded although its file is gone (deleted by hand) is replaced once, by compare-and-set.
    """
    if spec.png_path(settings.data_dir).is_file():
        return _png(spec, settings)
    lock = f"sample:{spec.key}"
    params = {**spec.to_params(), "arch": spec.checkpoint.arch}
    run_id = spec.checkpoint.run_id
    offer = _batch_offer(store, spec)
    job_id, created = submit(
        store, queue, SAMPLE, params, run_id=run_id, lock=lock, join_states=JOINABLE, before_publish=offer
    )
    if not created and (store.get(job_id) or {}).get("state") == SUCCEEDED:
        if spec.png_path(settings.data_dir).is_file():  # it finished between our two looks
            return _png(spec, settings)
        job_id, created = submit(
            store,
            queue,
            SAMPLE,
            params,
            run_id=run_id,
            lock=lock,
            join_states=JOINABLE,
            replace=job_id,
            before_publish=offer,
        )
    return job_id, created


def _batch_offer(store: JobStore, spec: SampleSpec) -> Callable[[str], None]:
    """Announce a new job to workers that may sample it with others (jobs/batching.py). Only a
    hint: if it is lost, the job's own message still runs it alone."""

    def offer(job_id: str) -> None:
        try:
            BatchableJobs(store.client, store.prefix).offer(batch_key(spec), job_id)
        except redis.RedisError as err:
            log.warning("sampling job %s not offered for batching: %s", job_id, err)

    return offer


def _png(spec: SampleSpec, settings: Settings) -> FileResponse:
    ref = spec.checkpoint
    return FileResponse(
        spec.png_path(settings.data_dir),
        media_type="image/png",
        headers={
            "ETag": f'"{spec.key}"',
            "X-Run-Id": ref.run_id,
            "X-Checkpoint-Step": str(ref.step),
            "X-Arch": ref.arch,
            "Content-Location": spec.url(),  # the same grid with the checkpoint pinned
        },
    )


def _accepted(spec: SampleSpec, job_id: str, state: str, joined: bool) -> TidyJSONResponse:
    ref = spec.checkpoint
    body = Accepted(
        job_id=job_id,
        state=state,
        kind=SAMPLE,
        run_id=ref.run_id,
        joined=joined,
        message=(
            f"sampling {spec.n} images from {ref.arch} (run {ref.run_id}, step {ref.step}); "
            "poll links.job, then GET links.result (or repeat this request)"
        ),
        links={**job_links(job_id, ref.run_id), "job": f"/jobs/{job_id}", "result": spec.url()},
    )
    return TidyJSONResponse(
        body.model_dump(mode="json"), status_code=202, headers={"Location": f"/jobs/{job_id}"}
    )
