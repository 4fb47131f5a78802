"""A study as the API shows it: its state, each member's stages (job, progress, links), and the
results the engine's report reads (ddpm/study/results.py MemberResult) gathered from the runs, the
grids in the sample cache and the stored FID records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddpm.errors import DdpmError
from ddpm.fid.results import read_result
from ddpm.study.results import MemberResult, member_from_run
from ddpm.study.spec import StudySpec
from jobs.records import SUCCEEDED
from jobs.specs import SampleSpec
from jobs.studies import FID_STAGE, GRID_STAGE, STAGES, Study
from jobs.study_steps import ATTACHED, MemberView, StageView, StudySteps
from service.schemas import iso


def study_links(study_id: str) -> dict[str, str]:
    base = f"/studies/{study_id}"
    return {
        "self": base,
        "report": f"{base}/report?format=html",
        "report_zip": f"{base}/report?format=zip",
        "report_csv": f"{base}/report?format=csv",
        "retry": f"{base}/retry",
    }


def summary(steps: StudySteps, study: Study, members: list[MemberView] | None = None) -> dict[str, Any]:
    """One line of GET /studies (`members`: as already read, so that one answer is one snapshot)."""
    members = steps.members(study) if members is None else members
    spec = study.spec
    return {
        "id": study.id,
        "name": study.name,
        "preset": spec.get("preset"),
        "state": steps.state(study, members),
        "created": iso(study.created),
        "cancelled": iso(study.cancelled),
        "members": len(members),
        "done": sum(m.state == "done" for m in members),
        "variants": spec["variants"],
        "links": study_links(study.id),
    }


def detail(steps: StudySteps, study: Study, data_dir: Path) -> dict[str, Any]:
    """GET /studies/{id}: the summary, the spec, every member's stages, and the table so far."""
    from ddpm.study.report import build_report  # matplotlib: only when a study is shown

    members = steps.members(study)
    results = member_results(members, data_dir)
    spec = StudySpec.from_dict(study.spec)
    table = build_report(spec, results, study.plan.get("code_version", "unknown")).table()
    return {
        **summary(steps, study, members),
        "spec": study.spec,
        "member_states": [_member(m) for m in members],
        "table": table,
    }


def _member(member: MemberView) -> dict[str, Any]:
    plan = member.plan
    return {
        "key": member.key,
        "variant": plan["variant"],
        "seed": plan["seed"],
        "run_id": plan["run_id"],
        "attached": plan["attached"],
        "state": member.state,
        "error": member.error,
        "stages": {stage: _stage(stage, member.stages[stage]) for stage in STAGES},
        "links": {"run": f"/runs/{plan['run_id']}"},
    }


def _stage(stage: str, view: StageView) -> dict[str, Any]:
    job = view.job or {}
    links = {"job": f"/jobs/{view.job_id}"} if view.job_id else {}
    links.update((view.result or {}).get("links") or {})
    if stage == GRID_STAGE and view.params:
        links["image"] = SampleSpec.from_params(view.params).url()
    return {
        "job_id": view.job_id,
        "state": view.state,
        "progress": job.get("progress", 1.0 if view.state in (SUCCEEDED, ATTACHED) else 0.0),
        "message": job.get("message"),
        "error": job.get("error"),
        "links": links,
    }


def member_results(members: list[MemberView], data_dir: Path) -> list[MemberResult]:
    """What the report reads, for every member, finished or not."""
    return [_result(member, data_dir) for member in members]


def _result(member: MemberView, data_dir: Path) -> MemberResult:
    plan = member.plan
    grid = _grid_png(member.stages[GRID_STAGE], data_dir)
    fid = _fid_record(member.stages[FID_STAGE], data_dir)
    run_dir = data_dir / "runs" / plan["run_id"]
    try:
        result = member_from_run(run_dir, plan["variant"], plan["seed"], grid, fid, member.state)
    except (OSError, DdpmError):  # no run.json yet (queued), or unreadable: what the study knows
        result = MemberResult(plan["variant"], plan["seed"], plan["run_id"], member.state)
    if member.error:
        result.error = member.error
    return result


def _grid_png(view: StageView, data_dir: Path) -> Path | None:
    if view.state != SUCCEEDED or not view.params:
        return None
    png = SampleSpec.from_params(view.params).png_path(data_dir)
    return png if png.is_file() else None


def _fid_record(view: StageView, data_dir: Path) -> dict[str, Any] | None:
    result_id = (view.result or {}).get("result_id") if view.state == SUCCEEDED else None
    return read_result(data_dir, result_id) if result_id else None
