"""Studies (issue 17): the report's whole comparison as one request. A study's members are ordinary
train, sample and fid jobs (jobs/study_steps.py queues each stage when its turn comes); its report is
the engine's (ddpm/study/report.py) over what those jobs left."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import HTMLResponse, PlainTextResponse

from ddpm.study.spec import PRESETS
from jobs.settings import Settings
from jobs.studies import Study, StudyStore
from jobs.study_steps import StudySteps
from jobs.submit import PublishFailed
from service.deps import QueueDep, SettingsDep, StoreDep
from service.errors import Conflict, NotFound, Unavailable, low_space, redact
from service.study_plan import plan_study, read_spec
from service.study_view import detail, member_results, summary

router = APIRouter(tags=["studies"])

EXAMPLE = {"preset": "digits-smoke"}


def _steps(settings: SettingsDep, store: StoreDep, queue: QueueDep) -> StudySteps:
    return StudySteps(StudyStore(store, settings.data_dir), queue.enqueue, settings.data_dir)


@router.post(
    "/studies",
    status_code=202,
    summary="start a study: train every variant with one recipe, then sample and score each",
    responses={
        422: {"description": "a field that cannot run (named in loc), before anything is queued"},
        507: {"description": "the data volume has too little free space for new runs"},
    },
)
def create_study(
    body: Annotated[
        dict[str, Any],
        Body(
            description='{"preset": "digits-smoke"} (optionally with fields replaced: name, seeds, '
            "variants, attach; train and evaluation fields merged in), or a whole spec: name, variants, "
            "train, seeds, evaluation, attach (docs/api.md)",
            examples=[EXAMPLE],
        ),
    ],
    response: Response,
    settings: SettingsDep,
    store: StoreDep,
    queue: QueueDep,
) -> dict[str, Any]:
    if refused := low_space(settings.data_dir, settings.min_free_mb):
        raise refused
    spec = read_spec(body)
    plan = plan_study(spec, settings)
    plan["code_version"] = _code_version()  # the code that runs it, named in its report's recipe
    steps = _steps(settings, store, queue)
    study = steps.studies.create(spec.name, queue.settings.queue, spec.to_dict(), plan)
    study = _advance(steps, study.id, settings) or study  # queues every member's training
    response.headers["Location"] = f"/studies/{study.id}"
    return detail(steps, study, settings.data_dir)


@router.get("/studies/presets", summary="the ready-made studies: report-table1, digits-smoke")
def study_presets() -> dict[str, Any]:
    return {
        "presets": [
            {"name": name, "members": len(spec.members()), "spec": spec.to_dict()}
            for name, spec in PRESETS.items()
        ]
    }


@router.get("/studies", summary="every study, newest first, with its state")
def list_studies(settings: SettingsDep, store: StoreDep, queue: QueueDep) -> dict[str, Any]:
    steps = _steps(settings, store, queue)
    studies = [steps.studies.get(study_id) for study_id in steps.studies.ids()]
    return {"studies": [summary(steps, study) for study in studies if study is not None]}


@router.get(
    "/studies/{study_id}",
    summary="a study: state, each member's stages with their jobs and links, the table so far",
    responses={404: {"description": "no such study"}},
)
def get_study(study_id: str, settings: SettingsDep, store: StoreDep, queue: QueueDep) -> dict[str, Any]:
    steps = _steps(settings, store, queue)
    _find(steps, study_id)
    # Reading a study moves it on: a stage whose turn came while no worker told it is queued now.
    study = _advance(steps, study_id, settings) or _find(steps, study_id)
    return detail(steps, study, settings.data_dir)


@router.delete(
    "/studies/{study_id}",
    summary="cancel every member job that has not finished (finished results stay)",
    responses={404: {"description": "no such study"}},
)
def cancel_study(study_id: str, settings: SettingsDep, store: StoreDep, queue: QueueDep) -> dict[str, Any]:
    steps = _steps(settings, store, queue)
    stopped = steps.cancel(_find(steps, study_id))
    return {**summary(steps, _find(steps, study_id)), "cancelled_jobs": stopped}


@router.post(
    "/studies/{study_id}/retry",
    status_code=202,
    summary="queue again the failed or cancelled stages of each member, not the finished ones",
    responses={
        404: {"description": "no such study"},
        409: {"description": "nothing failed or was cancelled"},
    },
)
def retry_study(study_id: str, settings: SettingsDep, store: StoreDep, queue: QueueDep) -> dict[str, Any]:
    steps = _steps(settings, store, queue)
    study = _find(steps, study_id)
    try:
        retried = steps.retry(study)
    except PublishFailed as err:
        raise _unavailable(study.id, settings, err) from err
    if not retried and study.cancelled is None:
        raise Conflict(
            f"study {study_id!r} has no failed or cancelled member to retry", **summary(steps, study)
        )
    return {**summary(steps, _find(steps, study_id)), "retried": retried}


@router.get(
    "/studies/{study_id}/report",
    summary="the study's report: self-contained HTML, Markdown with its figures (zip), or the table (CSV)",
    response_class=Response,
    responses={
        200: {"content": {"text/html": {}, "application/zip": {}, "text/csv": {}}},
        404: {"description": "no such study"},
    },
)
def study_report(
    study_id: str,
    settings: SettingsDep,
    store: StoreDep,
    queue: QueueDep,
    format: Annotated[Literal["html", "zip", "csv"], Query()] = "html",
) -> Response:
    from ddpm.study.report import build_report  # matplotlib: only when a report is asked for
    from ddpm.study.spec import StudySpec

    steps = _steps(settings, store, queue)
    study = _find(steps, study_id)
    results = member_results(steps.members(study), settings.data_dir)
    report = build_report(StudySpec.from_dict(study.spec), results, study.plan.get("code_version", "unknown"))
    stem = f"study-{study.id[:8]}"
    if format == "zip":
        return Response(
            report.markdown_zip(),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{stem}.zip"'},
        )
    if format == "csv":
        return PlainTextResponse(
            report.csv(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{stem}.csv"'},
        )
    return HTMLResponse(report.html())


def _advance(steps: StudySteps, study_id: str, settings: Settings) -> Study | None:
    try:
        return steps.advance(study_id)
    except PublishFailed as err:
        raise _unavailable(study_id, settings, err) from err


def _unavailable(study_id: str, settings: Settings, err: Exception) -> Unavailable:
    return Unavailable(
        f"the job queue (broker at {redact(settings.redis_url)}) did not accept a job of study {study_id} "
        f"({err}); the study is kept: POST /studies/{study_id}/retry once the broker is back",
        links={"study": f"/studies/{study_id}"},
    )


@functools.cache
def _code_version() -> str:
    from ddpm.study.report import code_version

    return code_version()


def _find(steps: StudySteps, study_id: str) -> Study:
    study = steps.studies.get(study_id)
    if study is None:
        raise NotFound(f"no study {study_id!r}; GET /studies lists them", links={"studies": "/studies"})
    return study
