from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Response
from fastapi.responses import PlainTextResponse

from ddpm.fid import results
from jobs.records import FID
from models import list_archs
from service.checkpoints import resolve_checkpoint
from service.deps import QueueDep, SettingsDep, StoreDep
from service.errors import NotFound
from service.fid_rows import markdown, result_rows
from service.schemas import Accepted, FidRequest, job_links
from service.submit import submit

router = APIRouter(tags=["fid"])


@router.post("/fid", status_code=202, summary="queue an FID evaluation of a checkpoint (or an N sweep)")
def create_fid(
    body: FidRequest, response: Response, settings: SettingsDep, store: StoreDep, queue: QueueDep
) -> Accepted:
    ref = resolve_checkpoint(settings.data_dir, body.arch, body.run, body.checkpoint, source="body")
    params = {"checkpoint": ref.to_dict(), "arch": ref.arch, **body.job_params()}
    job_id, _ = submit(store, queue, FID, params, run_id=ref.run_id)
    response.headers["Location"] = f"/jobs/{job_id}"
    return Accepted(
        job_id=job_id,
        state="queued",
        kind=FID,
        run_id=ref.run_id,
        message=f"FID of {ref.arch} (run {ref.run_id}, step {ref.step}) at N={params['n_samples']}",
        links={**job_links(job_id, ref.run_id), "job": f"/jobs/{job_id}", "results": "/fid"},
    )


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
