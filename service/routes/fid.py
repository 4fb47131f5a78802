from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Response
from fastapi.responses import PlainTextResponse

from ddpm.fid import results
from ddpm.fid.reference_cache import cached_references
from ddpm.runs import RunDir
from jobs import fid_reference
from jobs.fid_reference import ReferenceRequest, waiting_message
from jobs.publish import JobQueue
from jobs.records import FID, FID_REFERENCE, QUEUED, RUNNING
from jobs.settings import Settings
from jobs.store import JobStore
from jobs.submit import PublishFailed
from models import list_archs
from service.checkpoints import resolve_checkpoint
from service.deps import QueueDep, SettingsDep, StoreDep
from service.errors import NotFound, Unavailable, redact
from service.fid_rows import markdown, result_rows
from service.schemas import (
    Accepted,
    FidRequest,
    JobOut,
    ReferenceOut,
    ReferenceRequestBody,
    iso,
    job_links,
)
from service.submit import submit

router = APIRouter(tags=["fid"])


@router.post("/fid", status_code=202, summary="queue an FID evaluation of a checkpoint (or an N sweep)")
def create_fid(
    body: FidRequest, response: Response, settings: SettingsDep, store: StoreDep, queue: QueueDep
) -> Accepted:
    ref = resolve_checkpoint(settings.data_dir, body.arch, body.run, body.checkpoint, source="body")
    params = {"checkpoint": ref.to_dict(), "arch": ref.arch, **body.job_params()}
    # Statistics not cached yet: the one job computing them (queued now, or joined) goes first, and this
    # job records that it waits on it.
    image_size = int(
        RunDir.of(settings.data_dir, ref.run_id).read().get("train_config", {}).get("image_size", 32)
    )
    reference_id, _ = _reference_job(settings, store, queue, ReferenceRequest(body.dataset, image_size))
    waits = (
        {"reference_job": reference_id, "message": waiting_message(reference_id)} if reference_id else None
    )
    job_id, _ = submit(store, queue, FID, params, run_id=ref.run_id, extra=waits)
    response.headers["Location"] = f"/jobs/{job_id}"
    links = {**job_links(job_id, ref.run_id), "job": f"/jobs/{job_id}", "results": "/fid"}
    message = f"FID of {ref.arch} (run {ref.run_id}, step {ref.step}) at N={params['n_samples']}"
    if reference_id:
        links["reference_job"] = f"/jobs/{reference_id}"
        message += f"; {waiting_message(reference_id)} first"
    return Accepted(job_id=job_id, state="queued", kind=FID, run_id=ref.run_id, message=message, links=links)


def _reference_job(
    settings: Settings,
    store: JobStore,
    queue: JobQueue,
    request: ReferenceRequest,
    refresh: bool = False,
    batch_size: int = fid_reference.DEFAULT_BATCH,
) -> tuple[str | None, bool]:
    try:
        return fid_reference.reference_job(
            store,
            queue.enqueue,
            settings.queue,
            settings.data_dir,
            request,
            refresh=refresh,
            batch_size=batch_size,
        )
    except PublishFailed as err:
        raise Unavailable(
            f"the job queue (broker at {redact(settings.redis_url)}) did not accept the job: {err}"
        ) from err


@router.post(
    "/fid/reference",
    status_code=202,
    summary="compute a data set's reference statistics now (one job per data set and size, shared)",
    responses={200: {"description": "already cached (and no refresh asked for)"}},
)
def create_reference(
    body: ReferenceRequestBody, response: Response, settings: SettingsDep, store: StoreDep, queue: QueueDep
) -> ReferenceOut:
    request = ReferenceRequest(body.dataset, body.image_size)
    job_id, created = _reference_job(settings, store, queue, request, body.refresh, body.batch_size)
    common = {"key": request.key, "dataset": body.dataset, "image_size": body.image_size}
    if job_id is None:
        response.status_code = 200
        return ReferenceOut(
            **common,
            state="cached",
            message=f"the reference statistics of {request.describe()} are cached",
            links={"references": "/fid/reference"},
        )
    job = store.get(job_id) or {}
    response.headers["Location"] = f"/jobs/{job_id}"
    verb = "queued" if created else "already being computed by"
    return ReferenceOut(
        **common,
        state=job.get("state", QUEUED),
        job_id=job_id,
        joined=not created,
        message=f"reference statistics of {request.describe()}: {verb} job {job_id}",
        links={**job_links(job_id), "job": f"/jobs/{job_id}", "references": "/fid/reference"},
    )


@router.get(
    "/fid/reference", summary="the reference statistics cached on the volume, and those being computed"
)
def list_references(settings: SettingsDep, store: StoreDep) -> dict[str, Any]:
    cached = [
        {**entry.to_dict(), "modified": iso(entry.modified)} for entry in cached_references(settings.data_dir)
    ]
    computing = [
        JobOut.from_record(job)
        for state in (RUNNING, QUEUED)
        for job in store.list(100, kind=FID_REFERENCE, state=state)
    ]
    return {"cached": cached, "computing": computing}


@router.get(
    "/fid",
    summary="stored FID results beside the report's figures",
    responses={200: {"content": {"text/markdown": {}}}},
)
async def fid_table(
    settings: SettingsDep, format: Annotated[Literal["json", "markdown"], Query()] = "json"
) -> Any:
    rows = await anyio.to_thread.run_sync(result_rows, settings)
    report = [
        {"arch": a["name"], "report_name": a["report_name"], "report_fid": a["report_fid"]}
        for a in list_archs()
    ]
    if format == "markdown":
        return PlainTextResponse(markdown(rows), media_type="text/markdown")
    return {"rows": rows, "report": report}


@router.get(
    "/fid/results/{result_id}",
    summary="one stored evaluation: every metric per N, FID-infinity's points and fit, timings, warnings",
    responses={404: {"description": "no such result"}},
)
async def fid_result(result_id: str, settings: SettingsDep) -> dict[str, Any]:
    record = await anyio.to_thread.run_sync(results.read_result, settings.data_dir, result_id)
    if record is None:
        raise NotFound(f"no FID result {result_id!r}; GET /fid lists them")
    return record
