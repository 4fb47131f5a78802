from __future__ import annotations

import importlib
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Response
from fastapi.responses import PlainTextResponse

from jobs.records import FID
from jobs.settings import Settings
from models import list_archs
from service.checkpoints import resolve_checkpoint
from service.deps import QueueDep, SettingsDep, StoreDep
from service.errors import Unavailable
from service.schemas import Accepted, FidRequest, iso, job_links
from service.submit import submit

router = APIRouter(tags=["fid"])

# ddpm/fid/results.py is torch-free (its contract); ddpm/fid/__init__ may not be, so this route loads
# the results module only when asked, and tests/service check that torch stays out of the API.
RESULTS_MODULE = "ddpm.fid.results"


@router.post("/fid", status_code=202, summary="queue an FID evaluation of a checkpoint (or an N sweep)")
def create_fid(
    body: FidRequest, response: Response, settings: SettingsDep, store: StoreDep, queue: QueueDep
) -> Accepted:
    ref = resolve_checkpoint(settings.data_dir, body.arch, body.run, body.checkpoint, source="body")
    params = {
        "checkpoint": ref.to_dict(),
        "arch": ref.arch,
        **body.model_dump(include={"n_samples", "sampler", "steps", "eta", "seed", "dataset", "batch_size"}),
    }
    if params["sampler"] == "ddim" and params["steps"] is None:
        params["steps"] = 50  # recorded explicitly so the results table says what was run
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
        return PlainTextResponse(_markdown(rows), media_type="text/markdown")
    return {"rows": rows, "report": report}


def result_rows(settings: Settings) -> list[dict[str, Any]]:
    """One row per (stored result, N), newest result first, with the report's figure beside it."""
    try:
        results = importlib.import_module(RESULTS_MODULE)
    except ModuleNotFoundError as err:
        if err.name not in ("ddpm.fid", RESULTS_MODULE):
            raise
        raise Unavailable(
            "FID results are not available: this build has no ddpm.fid package (the FID evaluator)"
        ) from err
    report = {a["name"]: a for a in list_archs()}
    rows = []
    for record in results.list_results(settings.data_dir):
        spec = report.get(record.get("arch"), {})
        for n, value in _scores(record):
            rows.append(
                {
                    "result_id": record.get("id"),
                    **{key: record.get(key) for key in ROW_FIELDS},
                    "n": n,
                    "fid": value,
                    "report_name": spec.get("report_name"),
                    "report_fid": spec.get("report_fid"),
                    "created": iso(record.get("created")),
                }
            )
    return rows


ROW_FIELDS = ("arch", "run_id", "step", "epoch", "weights", "sampler", "steps", "seed", "dataset", "warnings")


def _scores(record: dict[str, Any]) -> list[tuple[int, float]]:
    """(N, FID) pairs: the evaluator stores `scores` rows; a `fid` mapping is read as well."""
    if isinstance(record.get("scores"), list):
        return [(int(s["n"]), float(s["fid"])) for s in record["scores"]]
    return sorted((int(n), float(v)) for n, v in (record.get("fid") or {}).items())


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| arch | report name | run | step | epoch | sampler | steps | N | FID | report FID (N=4096, 100 epochs) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        epoch = row.get("epoch")
        lines.append(
            f"| {row['arch']} | {row['report_name']} | {row['run_id']} | {row['step']} "
            f"| {'' if epoch is None else f'{epoch:.2f}'} | {row['sampler']} | {row['steps'] or ''} | {row['n']} "
            f"| {row['fid']:.3f} | {'' if row['report_fid'] is None else row['report_fid']} |"
        )
    if not rows:
        lines.append("| (no results yet: POST /fid) | | | | | | | | | |")
    return "\n".join(lines) + "\n"
