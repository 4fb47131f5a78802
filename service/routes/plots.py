"""Figures as PNG (loss curves, FID against N) and the raw loss log as CSV, for pages and for curl.

Rendering is CPU work in matplotlib, so it runs in a worker thread. Every answer carries an ETag made
from the files it was drawn from (and the query), so a page polling a finished run gets 304s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ddpm.fid import results
from ddpm.runs import RunDir
from jobs.settings import Settings
from service import figures, plots
from service.checkpoints import existing_run
from service.deps import SettingsDep
from service.schemas import ArchName, RunId

router = APIRouter(tags=["plots"])

# Bump when the drawing changes, so cached figures are redrawn though their data did not change.
RENDER_VERSION = "1"
# Clients revalidate every time (a training run's loss changes every step); unchanged data is a 304.
CACHE_CONTROL = "no-cache"
MAX_COMPARED_RUNS = 9  # besides the run itself: ten colours

PNG_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "the figure"},
    304: {"description": "not modified since the ETag sent in If-None-Match"},
}
Width = Annotated[int, Query(ge=200, le=2400, description="image width in pixels")]
Height = Annotated[int, Query(ge=150, le=1600, description="image height in pixels")]


def _etag(*parts: object) -> str:
    return '"' + hashlib.sha256(repr((RENDER_VERSION, *parts)).encode()).hexdigest()[:32] + '"'


def _stamp(path: Path) -> tuple[int, int] | None:
    """What changes when a file is rewritten or appended to: (mtime in ns, size)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _not_modified(request: Request, etag: str) -> Response | None:
    sent = request.headers.get("if-none-match", "")
    tags = {tag.strip().removeprefix("W/") for tag in sent.split(",")}
    if etag in tags or "*" in tags:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
    return None


def _cached(body: bytes, media_type: str, etag: str, **headers: str) -> Response:
    return Response(
        body, media_type=media_type, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL, **headers}
    )


# ---- a run's loss


def _loss_etag(runs: Sequence[RunDir], *query: object) -> str:
    stamps = [(run.run_id, _stamp(run.loss_path), _stamp(run.record_path)) for run in runs]
    return _etag("loss", stamps, *query)


@router.get(
    "/runs/{run_id}/loss.png",
    summary="the run's training loss per step: raw and smoothed (PNG), optionally beside other runs",
    response_class=Response,
    responses={**PNG_RESPONSES, 404: {"description": "no such run"}},
)
async def loss_plot(
    run_id: str,
    request: Request,
    settings: SettingsDep,
    smooth: Annotated[
        float, Query(ge=0, le=0.999, description="exponential smoothing weight, as TensorBoard's slider")
    ] = 0.6,
    log: Annotated[bool, Query(description="logarithmic loss axis")] = False,
    compare: Annotated[
        list[RunId] | None,
        Query(max_length=MAX_COMPARED_RUNS, description="other runs drawn on the same axes (repeatable)"),
    ] = None,
    width: Width = 800,
    height: Height = 450,
) -> Response:
    others = [r for r in dict.fromkeys(compare or []) if r != run_id]
    runs = [existing_run(settings.data_dir, r) for r in [run_id, *others]]
    etag = _loss_etag(runs, smooth, log, width, height)
    if cached := _not_modified(request, etag):
        return cached
    png = await anyio.to_thread.run_sync(figures.loss_png, runs, smooth, log, plots.Size(width, height))
    return _cached(png, "image/png", etag)


@router.get(
    "/runs/{run_id}/loss.csv",
    summary="the run's loss log: step,epoch,loss,lr,seconds, one row per optimizer step",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}}, "description": "the log (a header line only before step 1)"},
        304: PNG_RESPONSES[304],
        404: {"description": "no such run"},
    },
)
async def loss_csv(run_id: str, request: Request, settings: SettingsDep) -> Response:
    run = existing_run(settings.data_dir, run_id)
    etag = _loss_etag([run], "csv")
    if cached := _not_modified(request, etag):
        return cached
    text = await anyio.to_thread.run_sync(run.complete_loss_csv)
    return _cached(
        (text or "step,epoch,loss,lr,seconds\n").encode(),
        "text/csv; charset=utf-8",
        etag,
        **{"Content-Disposition": f'inline; filename="{run.run_id}-loss.csv"'},
    )


# ---- FID against N


def _results_stamp(settings: Settings) -> tuple[Any, ...]:
    """Result files are written once each (new name per evaluation): their names and stamps say it all."""
    folder = results.results_dir(settings.data_dir)
    if not folder.is_dir():
        return ()
    return tuple(sorted((path.name, _stamp(path)) for path in folder.glob("[!.]*.json")))


@router.get(
    "/fid/plot.png",
    summary="FID against the number of samples N per evaluated checkpoint, with the report's figures (PNG)",
    response_class=Response,
    responses=PNG_RESPONSES,
)
async def fid_plot(
    request: Request,
    settings: SettingsDep,
    arch: Annotated[list[ArchName] | None, Query(description="only these archs (repeatable)")] = None,
    dataset: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Za-z0-9_.:/-]{1,256}$", description="only results on this dataset (cifar10, digits)"
        ),
    ] = None,
    report: Annotated[bool, Query(description="draw the report's Table 1 figures (N=4096)")] = True,
    width: Width = 800,
    height: Height = 450,
) -> Response:
    archs = sorted(set(arch)) if arch else None
    stamp = await anyio.to_thread.run_sync(_results_stamp, settings)
    etag = _etag("fid", stamp, archs, dataset, report, width, height)
    if cached := _not_modified(request, etag):
        return cached
    png = await anyio.to_thread.run_sync(
        figures.fid_png, settings, archs, dataset, report, plots.Size(width, height)
    )
    return _cached(png, "image/png", etag)
