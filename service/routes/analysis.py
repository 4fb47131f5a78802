"""The classifier study's analyses (docs/analysis.md): queue one, list them, read one, its grid, and compare two.

Every check that needs stored runs or classifiers is made here, before anything is queued; the worker
(workers/classifier_jobs.py) runs the engine's analyse_checkpoint / analyse_real and stores the result.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse, PlainTextResponse

from ddpm.classifier import (
    check_analysis_options,
    check_classifier_for_run,
    check_real_analysis,
    grid_path,
    list_analyses,
    list_classifiers,
    read_analysis,
)
from ddpm.classifier.results import RESULT_ID_PATTERN
from ddpm.classifier.store import is_ready
from ddpm.errors import InvalidOption
from ddpm.limits import MIN_ANALYSIS_SAMPLES
from ddpm.runs import RunDir
from jobs.records import ANALYSIS
from service import analysis_rows
from service.analysis_schemas import AnalysisRequest
from service.checkpoints import resolve_checkpoint
from service.deps import QueueDep, SettingsDep, StoreDep
from service.errors import NotFound, invalid_field
from service.schemas import Accepted, RunId, job_links
from service.submit import submit

router = APIRouter(tags=["analysis"])

T = TypeVar("T")
ResultId = Annotated[
    str, Query(pattern=RESULT_ID_PATTERN.pattern, description="an analysis id (GET /analysis)")
]
OPTIONS = ("n", "seed", "threshold", "per_class", "batch_size")


def located(field: str, check: Callable[[], T], value: object) -> T:
    """check(), its InvalidOption answered as a 422 at the body's `field`."""
    try:
        return check()
    except InvalidOption as err:
        raise invalid_field(("body", field), str(err), value) from err


@router.post(
    "/analysis",
    status_code=202,
    summary="queue a classifier study of a checkpoint's samples, or of held-out real images",
)
def create_analysis(
    body: AnalysisRequest, response: Response, settings: SettingsDep, store: StoreDep, queue: QueueDep
) -> Accepted:
    data_dir = settings.data_dir
    located("n", lambda: check_analysis_options(body.n, body.threshold, body.per_class), body.n)
    options = body.model_dump(include=set(OPTIONS))
    if body.real:
        name = located("classifier", lambda: _real_classifier(data_dir, body.classifier), body.classifier)
        located("n", lambda: check_real_analysis(data_dir, name, body.n), body.n)
        params: dict[str, Any] = {"real": True, "classifier": name, **options}
        run_id, what = None, f"{body.n} held-out real images"
    else:
        ref = resolve_checkpoint(data_dir, body.arch, body.run, body.checkpoint, source="body")
        run_record = RunDir.of(data_dir, ref.run_id).read()
        classifier = located(
            "classifier",
            lambda: check_classifier_for_run(data_dir, body.classifier, run_record),
            body.classifier,
        )
        name = str(classifier["name"])
        params = {
            "real": False,
            "checkpoint": ref.to_dict(),
            "arch": ref.arch,
            "classifier": name,
            **options,
            # The sampler with every default filled in, so the record says what was run.
            **body.sampler_spec().to_params(),
        }
        run_id, what = ref.run_id, f"{body.n} samples of {ref.arch} (run {ref.run_id}, step {ref.step})"
    job_id, _ = submit(store, queue, ANALYSIS, params, run_id=run_id)
    response.headers["Location"] = f"/jobs/{job_id}"
    return Accepted(
        job_id=job_id,
        state="queued",
        kind=ANALYSIS,
        run_id=run_id,
        message=f"classifying {what} with classifier {name}",
        links={**job_links(job_id, run_id), "job": f"/jobs/{job_id}", "results": "/analysis"},
    )


def _real_classifier(data_dir: Path, name: str | None) -> str:
    """The classifier whose held-out images are analysed: the one named (checked), or the only ready
    classifier that has a held-out split."""
    if name is not None:
        check_real_analysis(data_dir, name, MIN_ANALYSIS_SAMPLES)  # exists, ready, holds enough out
        return name
    held_out = [
        str(r["name"])
        for r in list_classifiers(data_dir)
        if is_ready(r) and (r.get("split") or {}).get("n_holdout")
    ]
    if len(held_out) == 1:
        return held_out[0]
    valid = ", ".join(held_out) if held_out else "none yet; train one: POST /classifiers"
    raise InvalidOption(f"name the classifier whose held-out images to analyse; valid: {valid}")


@router.get(
    "/analysis",
    summary="stored analyses, newest first (headline numbers; GET /analysis/{id} has all of them)",
    responses={200: {"content": {"text/markdown": {}}}},
)
async def analyses(
    settings: SettingsDep,
    format: Annotated[Literal["json", "markdown"], Query()] = "json",
    run: Annotated[RunId | None, Query(description="only analyses of this run's checkpoints")] = None,
    classifier: Annotated[str | None, Query(max_length=128, description="only this classifier's")] = None,
) -> Any:
    records = await anyio.to_thread.run_sync(list_analyses, settings.data_dir)
    rows = [
        analysis_rows.row(record)
        for record in records
        if (run is None or record.get("run_id") == run)
        and (classifier is None or record.get("classifier") == classifier)
    ]
    if format == "markdown":
        return PlainTextResponse(analysis_rows.markdown(rows), media_type="text/markdown")
    return {"analyses": rows}


@router.get(
    "/analysis/compare", summary="how two analyses' class histograms differ (two variants, or epochs)"
)
async def compare(a: ResultId, b: ResultId, settings: SettingsDep) -> dict[str, Any]:
    first, second = _stored(settings.data_dir, a), _stored(settings.data_dir, b)
    try:  # the chi-square test imports scipy the first time: off the event loop
        return await anyio.to_thread.run_sync(analysis_rows.comparison, first, second)
    except InvalidOption as err:
        raise invalid_field(("query", "b"), str(err), b) from err


@router.get("/analysis/{result_id}", summary="one analysis: every number, per class, and the grid's cells")
def analysis(result_id: str, settings: SettingsDep) -> dict[str, Any]:
    return analysis_rows.detail(_stored(settings.data_dir, result_id), settings.data_dir)


@router.get(
    "/analysis/{result_id}/grid.png",
    summary="the most confident images of each class, one row per class",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "the grid"}},
)
def analysis_grid(result_id: str, settings: SettingsDep) -> FileResponse:
    _stored(settings.data_dir, result_id)
    path = grid_path(settings.data_dir, result_id)
    if not path.is_file():
        raise NotFound(f"analysis {result_id!r} has no grid file on the volume")
    # A stored analysis is never rewritten: its id names its grid for good.
    return FileResponse(
        path,
        media_type="image/png",
        headers={"ETag": f'"{result_id}"', "Cache-Control": "private, max-age=31536000, immutable"},
    )


def _stored(data_dir: Path, result_id: str) -> dict[str, Any]:
    if not RESULT_ID_PATTERN.match(result_id):
        raise NotFound(f"no analysis {result_id!r}; ids look like 20250101-120000-a1b2c3d4 (GET /analysis)")
    try:
        return read_analysis(data_dir, result_id)
    except InvalidOption as err:
        raise NotFound(str(err)) from None
