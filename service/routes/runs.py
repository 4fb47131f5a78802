from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ddpm.checkpoint_schedule import effective_epochs
from ddpm.runs import UNREADABLE, RunDir, UnreadableRun, readable_runs
from jobs.records import RUNNING, TRAIN, decode_job
from jobs.settings import MAX_LOSS_POINTS
from jobs.specs import checkpoint_samples_link
from jobs.store import JobStore
from service.checkpoints import existing_run
from service.deps import SettingsDep, StoreDep
from service.schemas import iso

router = APIRouter(tags=["runs"])

SUMMARY_FIELDS = (
    "run_id",
    "arch",
    "status",
    "step",
    "total_steps",
    "device",
    "effective_epochs",
    "limited_by",
)


def _summary(
    run_id: str, record: dict[str, Any], job_id: str | None, job: dict[str, Any] | None = None
) -> dict[str, Any]:
    config = record.get("train_config") or {}
    out = {key: record.get(key) for key in SUMMARY_FIELDS}
    out.update(
        run_id=run_id,  # the folder's name is the run's id, whatever its record says
        dataset=config.get("dataset"),
        width=config.get("width"),
        checkpoints=len(record.get("checkpoints", [])),
        created=iso(record.get("created")),
        updated=iso(record.get("updated")),
        job_id=job_id,
        links={"self": f"/runs/{run_id}", **({"job": f"/jobs/{job_id}"} if job_id else {})},
    )
    out.update(_trained_epochs(record))
    out.update(live_fields(record, job))
    return out


def _trained_epochs(record: dict[str, Any]) -> dict[str, Any]:
    """effective_epochs and limited_by for runs recorded before run.json had them (from its totals)."""
    total, per_epoch = record.get("total_steps"), record.get("steps_per_epoch")
    asked = (record.get("train_config") or {}).get("epochs")
    if (
        record.get("effective_epochs") is not None
        or not isinstance(total, int)
        or not isinstance(per_epoch, int)
    ):
        return {}
    if per_epoch <= 0:
        return {}
    limited = "max_steps" if isinstance(asked, int) and total < asked * per_epoch else "epochs"
    return {"effective_epochs": effective_epochs(total, per_epoch), "limited_by": limited}


def live_fields(record: dict[str, Any], job: dict[str, Any] | None) -> dict[str, Any]:
    """The running training job's step, loss and time, where they are ahead of run.json.

    run.json is rewritten at each epoch end and kept checkpoint (a rewrite every step would cost a file
    write per step), while the job's record in Redis follows every progress report: a run being trained
    shows the job's step, so /runs/{id} never lags /jobs/{id}.
    """
    if not job or job.get("kind") != TRAIN or job.get("state") != RUNNING:
        return {}
    step = job.get("step")
    if not isinstance(step, int) or step <= (record.get("step") or 0):
        return {}
    live: dict[str, Any] = {"step": step, "status": RUNNING, "step_from": "job"}
    if isinstance(job.get("total"), int):
        live["total_steps"] = job["total"]
    if job.get("updated"):
        live["updated"] = iso(job["updated"])
    return live


@router.get("/runs", summary="training runs, newest first (a run whose run.json is unreadable is left out)")
def runs(settings: SettingsDep, store: StoreDep) -> dict[str, list[dict[str, Any]]]:
    found = readable_runs(settings.data_dir)
    owners = _job_ids(store, [run.run_id for run, _ in found])
    jobs = _jobs(store, list(owners.values()))
    return {
        "runs": [
            _summary(run.run_id, record, owners.get(run.run_id), jobs.get(owners.get(run.run_id, "")))
            for run, record in found
        ]
    }


@router.get("/runs/{run_id}", summary="a run: config, checkpoints by step and epoch, loss history")
def run_detail(
    run_id: str,
    settings: SettingsDep,
    store: StoreDep,
    points: Annotated[
        int | None,
        Query(ge=2, le=MAX_LOSS_POINTS, description="thin the loss history to this many points"),
    ] = None,
) -> dict[str, Any]:
    run = existing_run(settings.data_dir, run_id)
    job_id = store.lock_owner(f"run:{run_id}")
    try:
        record = run.read()
    except UnreadableRun as err:
        return _unreadable(run, job_id, err)
    on_disk = {step for step, _ in run.kept_checkpoints()}
    checkpoints = [
        {
            **entry,
            "time": iso(entry.get("time")),
            "links": {"samples": checkpoint_samples_link(run_id, entry["step"])},
        }
        for entry in record.get("checkpoints", [])
        if entry.get("step") in on_disk
    ]
    summary = _summary(run_id, record, job_id, store.get(job_id) if job_id else None)
    # The run's figures and raw log (service/routes/plots.py).
    summary["links"].update(loss_plot=f"/runs/{run_id}/loss.png", loss_csv=f"/runs/{run_id}/loss.csv")
    return {
        **summary,
        "train_config": record.get("train_config"),
        "model_config": record.get("model_config"),
        "steps_per_epoch": record.get("steps_per_epoch"),
        "checkpoints": checkpoints,
        "loss_history": run.loss_history(points or settings.loss_history_points),
    }


def _unreadable(run: RunDir, job_id: str | None, err: UnreadableRun) -> dict[str, Any]:
    """A run whose record cannot be read, shown as such: what its folder still says."""
    return {
        "run_id": run.run_id,
        "status": UNREADABLE,
        "error": str(err),
        "job_id": job_id,
        "checkpoints": [{"step": step} for step, _ in run.kept_checkpoints()],
        "links": {"self": f"/runs/{run.run_id}", **({"job": f"/jobs/{job_id}"} if job_id else {})},
    }


def _job_ids(store: JobStore, run_ids: list[str]) -> dict[str, str]:
    if not run_ids:
        return {}
    owners = store.client.mget([store.lock_key(f"run:{r}") for r in run_ids])
    return {r: owner for r, owner in zip(run_ids, owners, strict=True) if owner}


def _jobs(store: JobStore, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The records of these jobs in one round trip (expired ones left out)."""
    if not job_ids:
        return {}
    pipe = store.client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hgetall(store.job_key(job_id))
    return {job_id: decode_job(raw) for job_id, raw in zip(job_ids, pipe.execute(), strict=True) if raw}
